//! `mantisctl backup list|verify` and `mantisctl restore` on a local backup of a real engine:
//! a clean backup verifies and restores into a data directory that serves every key; a
//! corrupted object makes verify exit 1 naming it, and restore refuses it.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use mantis_backup::{create_backup, BackupOptions, LocalDir};
use mantis_engine::checkpoint::{self, CheckpointKind};
use mantis_engine::{Engine, EngineConfig};

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        shards: 2,
        pin_cpus: false,
        wal_segment_bytes: 1 << 20,
        ..EngineConfig::default()
    }
}

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mantisctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_verify_and_restore_from_the_command_line() {
    let data = tempfile::tempdir_in("/var/tmp").unwrap();
    let dest_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let dest = dest_dir.path().to_str().unwrap();
    let engine = Engine::open(config(data.path())).unwrap();
    let h = engine.handle();
    for i in 0..500u32 {
        let v = format!("value-{i}").into_bytes();
        futures::executor::block_on(h.put(format!("key{i:04}").into_bytes(), v, None)).unwrap();
    }
    let root = checkpoint::checkpoints_dir(data.path());
    let cp = futures::executor::block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    engine.shutdown().unwrap();
    let local = LocalDir::new(dest_dir.path());
    let m = create_backup(&local, &root, &cp, &BackupOptions::default(), &mut |_| {}).unwrap();

    let (code, out, err) = ctl(&["backup", "list", dest]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&m.id) && out.contains("full"), "{out}");
    let (code, out, err) = ctl(&["backup", "verify", dest]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");

    let target = tempfile::tempdir_in("/var/tmp").unwrap();
    let restored = target.path().join("data");
    let restored_s = restored.to_str().unwrap();
    let (code, out, err) = ctl(&["restore", "--from", dest, "--data-dir", restored_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&m.id), "{out}");
    let engine = Engine::open(config(&restored)).unwrap();
    for i in (0..500u32).step_by(7) {
        let got = futures::executor::block_on(engine.handle().get(format!("key{i:04}").as_bytes()));
        assert_eq!(got.unwrap(), Some(format!("value-{i}").into_bytes()));
    }
    engine.shutdown().unwrap();
    // Restoring over a data directory is refused.
    let (code, _, err) = ctl(&["restore", "--from", dest, "--data-dir", restored_s]);
    assert_eq!(code, 1);
    assert!(err.contains("not empty"), "{err}");

    let victim = m.files.iter().find(|f| f.path.ends_with(".seg")).unwrap();
    let path = local.path_of(&victim.object);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (code, _, err) = ctl(&["backup", "verify", dest, &m.id]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&victim.object),
        "verify names the object: {err}"
    );
    let fresh = target.path().join("again");
    let (code, _, err) = ctl(&[
        "restore",
        "--from",
        dest,
        "--data-dir",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(&victim.object), "{err}");
    assert_eq!(std::fs::read_dir(&fresh).map(|d| d.count()).unwrap_or(0), 0);
}
