//! Disk exhaustion on a real filesystem: a small ext4 image, loop-mounted by the test (root
//! needed: CI runs as root; without it the test fails, it does not skip). Writes must fail with
//! a clear disk-full error, reads keep working, nothing acknowledged is lost, and once space is
//! freed writes succeed again without a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::block_on;
use mantis_engine::{Engine, EngineConfig};

struct LoopMount {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} could not start ({e}); install e2fsprogs/util-linux"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopMount {
    fn new(size_mib: u64) -> LoopMount {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test mounts a loop filesystem and needs root (CI runs as root)"
        );
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let img = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
        run(
            "mount",
            &["-o", "loop", img.to_str().unwrap(), mnt.to_str().unwrap()],
        );
        LoopMount { dir, mnt }
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // Lazy unmount: a panicking test may still hold files open on it.
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = self.dir.path();
    }
}

fn free_bytes(p: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(p).unwrap();
    st.blocks_available() * st.fragment_size()
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

/// 64 KiB of incompressible bytes derived from `i` (segment blocks are compressed: a
/// repetitive value would never fill the disk).
fn value(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..(64 << 10) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

#[test]
fn disk_full_fails_writes_cleanly_and_recovers_without_restart() {
    let m = LoopMount::new(128);
    let data = m.mnt.join("data");
    let cfg = EngineConfig {
        data_dir: data.clone(),
        shards: 1,
        pin_cpus: false,
        memtable_bytes_max: 4 << 20,
        wal_segment_bytes: 4 << 20,
        ..EngineConfig::default()
    };
    let engine = Engine::open(cfg.clone()).unwrap();
    let h = engine.handle();
    // Leave about 24 MiB free: a ballast file takes the rest.
    let ballast = m.mnt.join("ballast");
    let ballast_len = free_bytes(&m.mnt).saturating_sub(24 << 20);
    run(
        "fallocate",
        &["-l", &ballast_len.to_string(), ballast.to_str().unwrap()],
    );

    let mut acked = Vec::new();
    let mut disk_full_seen = false;
    for i in 0..4000u64 {
        match block_on(h.put(key(i), value(i), None)) {
            Ok(()) => acked.push(i),
            Err(e) => {
                assert!(e.is_disk_full(), "expected a disk-full error, got: {e}");
                assert!(e.to_string().contains("disk full"), "clear message: {e}");
                disk_full_seen = true;
                break;
            }
        }
    }
    assert!(disk_full_seen, "the filesystem never filled up");
    assert!(!acked.is_empty());
    // Reads keep working while the disk is full, and return exactly what was acknowledged.
    for &i in &acked {
        assert_eq!(block_on(h.get(&key(i))).unwrap(), Some(value(i)), "key {i}");
    }
    // More writes keep failing cleanly (and nothing half-written appears).
    let probe = 1_000_000u64;
    assert!(block_on(h.put(key(probe), value(probe), None)).is_err());

    // Free the space: writes succeed again, without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = probe + 1;
    loop {
        match block_on(h.put(key(i), value(i), None)) {
            Ok(()) => {
                acked.push(i);
                break;
            }
            Err(e) => {
                assert!(
                    e.is_disk_full(),
                    "unexpected error after freeing space: {e}"
                );
                assert!(
                    Instant::now() < deadline,
                    "writes did not resume after space was freed"
                );
                std::thread::yield_now();
            }
        }
        i += 1;
    }
    for j in 0..50 {
        let k = 2_000_000 + j;
        block_on(h.put(key(k), value(k), None)).unwrap();
        acked.push(k);
    }
    engine.shutdown().unwrap();

    // After a restart, every acknowledged write is there.
    let engine = Engine::open(cfg).unwrap();
    let h = engine.handle();
    for &i in &acked {
        assert_eq!(
            block_on(h.get(&key(i))).unwrap(),
            Some(value(i)),
            "key {i} after restart"
        );
    }
    let _ = block_on(h.get(&key(probe))).unwrap();
    engine.shutdown().unwrap();
}
