//! Backups to Azure Blob Storage: a real Azurite (blob service) on loopback, which checks
//! Shared Key signatures: a wrong key is refused, so a signing bug fails here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use mantis_backup::dest::azure::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use mantis_backup::{Azure, AzureConfig, BackupError, Destination};

fn azure(port: u16, container: &str, prefix: &str, key: &str) -> Azure {
    let mut cfg = AzureConfig::new(DEV_ACCOUNT, key);
    cfg.endpoint = format!("http://127.0.0.1:{port}/{DEV_ACCOUNT}");
    cfg.container = container.into();
    cfg.prefix = prefix.into();
    // Small blocks, so the probe below goes up as several blocks and a block list.
    cfg.block_size_bytes = 1 << 20;
    cfg.retries_max = 4;
    cfg.backoff_base_ms = 50;
    Azure::new(cfg).unwrap()
}

/// Azurite listens before it serves: create the container once it answers.
fn create_container(dest: &Azure) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match dest.create_container() {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for Azurite: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("create container: {e}"),
        }
    }
}

#[test]
fn backup_verify_restore_and_refusals_on_azurite() {
    let server = common::servers::start_azurite();
    let dest = azure(server.port, "mantis-backups", "site/a", DEV_ACCOUNT_KEY);
    create_container(&dest);
    dest.create_container().unwrap();
    // A wrong key is refused by the server: the signatures are really checked.
    let forged_key = "AAAA".repeat(22);
    let forged = azure(server.port, "mantis-backups", "site/a", &forged_key);
    let e = forged.put("probe/x", b"x").unwrap_err();
    assert!(matches!(e, BackupError::Http { status: 403, .. }), "{e}");
    // Blocks and a block list (the last block partial), and a single Put Blob.
    let big: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    dest.put("probe/big", &big).unwrap();
    dest.put("probe/small", b"small").unwrap();
    assert_eq!(dest.get("probe/big").unwrap(), big);
    assert_eq!(dest.get("probe/small").unwrap(), b"small");
    assert_eq!(dest.list("probe/").unwrap(), ["probe/big", "probe/small"]);
    let other = azure(server.port, "mantis-backups", "site/b", DEV_ACCOUNT_KEY);
    other.put("probe/x", b"x").unwrap();
    assert_eq!(dest.list("").unwrap().len(), 2);
    dest.delete("probe/big").unwrap();
    dest.delete("probe/big").unwrap();
    dest.delete("probe/small").unwrap();
    let e = dest.get("probe/big").unwrap_err();
    assert!(matches!(e, BackupError::NotFound { .. }), "{e}");
    assert!(dest.list("probe/").unwrap().is_empty());
    common::scenario(&dest);
}
