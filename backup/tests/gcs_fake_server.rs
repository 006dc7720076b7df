//! Backups to Google Cloud Storage: a real fake-gcs-server (the JSON API, in memory) on
//! loopback. It does not check tokens; the MD5s it computes are checked on every upload and
//! download.
#![allow(clippy::unwrap_used)]

mod common;

use mantis_backup::{BackupError, Destination, Gcs, GcsConfig};

fn gcs(port: u16, bucket: &str, prefix: &str) -> Gcs {
    let mut cfg = GcsConfig::new(
        &format!("http://127.0.0.1:{port}"),
        Some("test-token".into()),
    );
    cfg.bucket = bucket.into();
    cfg.prefix = prefix.into();
    // The smallest chunk the API allows, so the probe below is a resumable upload of 5 chunks.
    cfg.chunk_size_bytes = mantis_backup::dest::gcs::CHUNK_QUANTUM_BYTES;
    cfg.retries_max = 4;
    cfg.backoff_base_ms = 50;
    Gcs::new(cfg).unwrap()
}

#[test]
fn backup_verify_restore_and_refusals_on_fake_gcs_server() {
    let server = common::servers::start_fake_gcs();
    let dest = gcs(server.port, "mantis-backups", "site/a");
    dest.create_bucket("mantis-test").unwrap();
    dest.create_bucket("mantis-test").unwrap();
    // A resumable upload across chunks (the last one partial), and a one-shot one.
    let big: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
    dest.put("probe/big", &big).unwrap();
    dest.put("probe/small", b"small").unwrap();
    assert_eq!(dest.get("probe/big").unwrap(), big);
    assert_eq!(dest.get("probe/small").unwrap(), b"small");
    assert_eq!(dest.list("probe/").unwrap(), ["probe/big", "probe/small"]);
    // Another prefix of the same bucket is invisible from ours.
    let other = gcs(server.port, "mantis-backups", "site/b");
    other.put("probe/x", b"x").unwrap();
    assert_eq!(dest.list("").unwrap().len(), 2);
    dest.delete("probe/big").unwrap();
    dest.delete("probe/big").unwrap();
    dest.delete("probe/small").unwrap();
    let e = dest.get("probe/big").unwrap_err();
    assert!(matches!(e, BackupError::NotFound { .. }), "{e}");
    assert!(dest.list("probe/").unwrap().is_empty());
    // A bucket that does not exist is an HTTP error naming the object, not a silent success.
    let missing = gcs(server.port, "no-such-bucket", "");
    let e = missing.put("x", b"x").unwrap_err();
    assert!(matches!(e, BackupError::Http { status: 404, .. }), "{e}");
    common::scenario(&dest);
}
