//! Issue 10: backups to S3, GCS and Azure Blob over TLS. A CA and a server certificate are
//! made here (rcgen); SeaweedFS, fake-gcs-server and Azurite serve HTTPS with that certificate
//! on loopback.
//! - with `ca_file` naming that CA, a backup goes up, verifies and restores over TLS;
//! - trusting only another CA (or only the public web PKI), the connection is refused with a
//!   [`BackupError::Tls`] at once (no retries, no fallback to plain HTTP);
//! - a `ca_file` with a plain `http://` endpoint is refused when the destination is opened.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::servers::{TlsFiles, Weed};
use mantis_backup::dest::azure::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use mantis_backup::{Azure, AzureConfig, BackupError, Destination, Gcs, GcsConfig, S3Config, S3};

const S3_KEY: &str = "mantis-tls-key";
const S3_SECRET: &str = "mantis-tls-secret";

fn s3(endpoint: &str, ca_file: Option<&Path>, backoff_base_ms: u64) -> Result<S3, BackupError> {
    let mut cfg = S3Config::new(endpoint, S3_KEY, S3_SECRET);
    cfg.bucket = "mantis-tls".into();
    cfg.prefix = "site".into();
    cfg.part_size_bytes = mantis_backup::dest::s3::PART_SIZE_BYTES_MIN;
    cfg.retries_max = 3;
    cfg.backoff_base_ms = backoff_base_ms;
    cfg.ca_file = ca_file.map(Path::to_path_buf);
    S3::new(cfg)
}

fn gcs(endpoint: &str, ca_file: Option<&Path>, backoff_base_ms: u64) -> Result<Gcs, BackupError> {
    let mut cfg = GcsConfig::new(endpoint, None);
    cfg.bucket = "mantis-tls".into();
    cfg.prefix = "site".into();
    cfg.chunk_size_bytes = mantis_backup::dest::gcs::CHUNK_QUANTUM_BYTES;
    cfg.retries_max = 3;
    cfg.backoff_base_ms = backoff_base_ms;
    cfg.ca_file = ca_file.map(Path::to_path_buf);
    Gcs::new(cfg)
}

fn azure(
    endpoint: &str,
    ca_file: Option<&Path>,
    backoff_base_ms: u64,
) -> Result<Azure, BackupError> {
    let mut cfg = AzureConfig::new(DEV_ACCOUNT, DEV_ACCOUNT_KEY);
    cfg.endpoint = endpoint.into();
    cfg.container = "mantis-tls".into();
    cfg.prefix = "site".into();
    cfg.block_size_bytes = 1 << 20;
    cfg.retries_max = 3;
    cfg.backoff_base_ms = backoff_base_ms;
    cfg.ca_file = ca_file.map(Path::to_path_buf);
    Azure::new(cfg)
}

/// Backoff of the destinations whose handshake must fail: one retry would wait this long.
const REFUSED_BACKOFF_MS: u64 = 3000;

/// A refused handshake: typed, about TLS and the certificate, and not retried (it fails in
/// well under one backoff of [`REFUSED_BACKOFF_MS`]).
fn assert_tls_refused(dest: &dyn Destination) {
    let started = Instant::now();
    let e = dest.put("probe/x", b"x").unwrap_err();
    assert!(matches!(e, BackupError::Tls { .. }), "{e}");
    let text = e.to_string();
    eprintln!("refused as expected: {text}");
    assert!(
        text.contains("TLS") && text.to_lowercase().contains("certificate"),
        "a clear error: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(REFUSED_BACKOFF_MS),
        "refused at once, not retried: {:?}",
        started.elapsed()
    );
    let e = dest.get("probe/x").unwrap_err();
    assert!(matches!(e, BackupError::Tls { .. }), "{e}");
}

/// Servers listen before they serve: retry the first call until it answers.
fn until_ready(what: &str, f: impl Fn() -> Result<(), BackupError>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline && !matches!(e, BackupError::Tls { .. }) => {
                eprintln!("waiting for {what}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn gcs_backup_round_trip_over_tls_and_untrusted_certificates_refused() {
    let pki = common::pki::pki();
    let server = common::servers::start_fake_gcs_tls(TlsFiles {
        cert: &pki.cert_file,
        key: &pki.key_file,
    });
    let endpoint = format!("https://127.0.0.1:{}", server.port);
    let dest = gcs(&endpoint, Some(&pki.ca_file), 50).unwrap();
    until_ready("fake-gcs-server", || dest.create_bucket("mantis-test"));
    // A resumable upload over TLS (the session URI the server hands back is https too).
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    dest.put("probe/big", &big).unwrap();
    assert_eq!(dest.get("probe/big").unwrap(), big);
    common::round_trip(&dest);

    assert_tls_refused(&gcs(&endpoint, Some(&pki.rogue_ca_file), REFUSED_BACKOFF_MS).unwrap());
    assert_tls_refused(&gcs(&endpoint, None, REFUSED_BACKOFF_MS).unwrap());
    let plain = format!("http://127.0.0.1:{}", server.port);
    let e = gcs(&plain, Some(&pki.ca_file), 50).err().unwrap();
    assert!(matches!(e, BackupError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("not https"), "{e}");
}

#[test]
fn azure_backup_round_trip_over_tls_and_untrusted_certificates_refused() {
    let pki = common::pki::pki();
    let server = common::servers::start_azurite_tls(TlsFiles {
        cert: &pki.cert_file,
        key: &pki.key_file,
    });
    let endpoint = format!("https://127.0.0.1:{}/{DEV_ACCOUNT}", server.port);
    let dest = azure(&endpoint, Some(&pki.ca_file), 50).unwrap();
    until_ready("Azurite", || dest.create_container());
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    dest.put("probe/big", &big).unwrap();
    assert_eq!(dest.get("probe/big").unwrap(), big);
    common::round_trip(&dest);

    assert_tls_refused(&azure(&endpoint, Some(&pki.rogue_ca_file), REFUSED_BACKOFF_MS).unwrap());
    assert_tls_refused(&azure(&endpoint, None, REFUSED_BACKOFF_MS).unwrap());
    // A CA file that holds no certificate is refused when the destination is opened.
    let e = azure(&endpoint, Some(&pki.key_file), 50).err().unwrap();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
}

#[test]
fn s3_backup_round_trip_over_tls_and_untrusted_certificates_refused() {
    let pki = common::pki::pki();
    let weed = Weed::start_tls(
        S3_KEY,
        S3_SECRET,
        TlsFiles {
            cert: &pki.cert_file,
            key: &pki.key_file,
        },
    );
    let endpoint = weed.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let dest = s3(&endpoint, Some(&pki.ca_file), 50).unwrap();
    common::servers::create_bucket_when_up(&dest);
    // Above the part size: a multipart upload (Content-MD5 on each part) over TLS, signed.
    let big: Vec<u8> = (0..(mantis_backup::dest::s3::PART_SIZE_BYTES_MIN * 2 + 4096) as u32)
        .map(|i| (i % 251) as u8)
        .collect();
    dest.put("probe/big", &big).unwrap();
    assert_eq!(dest.get("probe/big").unwrap(), big);
    common::round_trip(&dest);

    assert_tls_refused(&s3(&endpoint, Some(&pki.rogue_ca_file), REFUSED_BACKOFF_MS).unwrap());
    assert_tls_refused(&s3(&endpoint, None, REFUSED_BACKOFF_MS).unwrap());
    // The same server asked for in plain HTTP with a CA: refused before any request.
    let plain = endpoint.replacen("https://", "http://", 1);
    let e = s3(&plain, Some(&pki.ca_file), 50).err().unwrap();
    assert!(matches!(e, BackupError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("not https"), "{e}");
}
