//! Issue 7: `wal_checksum` chooses the checksum of the WAL records a real mantisd writes from
//! then on, and every WAL chunk header records it (format v2, byte 6: 1 CRC32, 2 MD5, 3
//! SHA-256). A log written under one choice replays under another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Daemon, Options};

/// The WAL chunk magic ("MWAL") as stored, little-endian.
const WAL_CHUNK_MAGIC_LE: [u8; 4] = 0x4d57_414cu32.to_le_bytes();
const BLOCK_BYTES: usize = 4096;

/// The checksum ids of every chunk header in the live WAL files (chunks of an earlier life of a
/// recycled file carry another segment LSN and are skipped).
fn wal_checksum_ids(dir: &Path) -> Vec<u8> {
    let mut found = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap() {
        let wal_dir = shard.unwrap().path().join("wal");
        let Ok(files) = std::fs::read_dir(&wal_dir) else {
            continue;
        };
        for f in files {
            let path = f.unwrap().path();
            let Some(first_lsn) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = std::fs::read(&path).unwrap();
            for block in bytes.chunks(BLOCK_BYTES) {
                if block.len() >= 40
                    && block[0..4] == WAL_CHUNK_MAGIC_LE
                    && block[8..16] == first_lsn.to_le_bytes()
                {
                    assert_eq!(block[4..6], 2u16.to_le_bytes(), "{}", path.display());
                    found.push(block[6]);
                }
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

fn write(d: &Daemon, from: usize) {
    for i in from..from + 100 {
        let r = d.http(
            "PUT",
            &format!("/api/v1/kv/w{i:04}"),
            &[],
            format!("v{i}").as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", r.text());
    }
}

/// SIGKILL: the records stay in the WAL only (no flush), so the next start must replay them.
fn kill(d: &mut Daemon) {
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(30));
}

#[test]
fn wal_checksum_is_chosen_by_config_and_recorded_per_chunk() {
    let data = common::data_tempdir();
    let dir = data.path().join("data");
    let sha = Options {
        extra_args: vec!["--wal-checksum".into(), "sha256".into()],
        ..Options::default()
    };
    let mut d = Daemon::start_in(&dir, sha);
    write(&d, 0);
    kill(&mut d);
    assert_eq!(wal_checksum_ids(&dir), vec![3], "SHA-256 chunks");

    // Default (CRC32) replays the SHA-256 chunks, and writes CRC32 ones after them.
    let mut d = Daemon::start_in(&dir, Options::default());
    for i in [0, 99] {
        let r = d.http("GET", &format!("/api/v1/kv/w{i:04}"), &[], b"");
        assert_eq!(r.status, 200, "w{i:04} after replay");
        assert_eq!(r.text(), format!("v{i}"));
    }
    write(&d, 100);
    kill(&mut d);
    assert_eq!(
        wal_checksum_ids(&dir),
        vec![1, 3],
        "both kinds side by side"
    );

    let md5 = Options {
        extra_args: vec!["--wal-checksum".into(), "md5".into()],
        ..Options::default()
    };
    let d = Daemon::start_in(&dir, md5);
    for i in [0, 99, 100, 199] {
        let r = d.http("GET", &format!("/api/v1/kv/w{i:04}"), &[], b"");
        assert_eq!(r.status, 200, "w{i:04}");
        assert_eq!(r.text(), format!("v{i}"));
    }
}
