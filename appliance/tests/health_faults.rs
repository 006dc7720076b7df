//! Issue 8's health tests with a real fault: a full disk. mantisd runs on a small
//! loop-mounted ext4 (root needed: CI runs as root; the test fails rather than skips without
//! it); a ballast file takes most of the space and incompressible writes fill the rest. Writes
//! then fail with 507 `disk_full`, `/health` turns degraded with the `disk` check warning, and
//! once the ballast is gone writes succeed again and health returns to healthy. The mount is
//! undone by a guard that runs even when an assertion fails. (The corrupt-block case is in
//! `corruption.rs`: the `integrity` check turns `warn`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, Daemon, Options};

/// A loop-mounted ext4 image in /var/tmp; unmounted (and its loop device released, which
/// `mount -o loop` ties to the mount) on drop, lazily if files are still open.
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

/// 64 KiB that do not compress (segment blocks are compressed).
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
fn a_full_disk_degrades_health_and_fails_writes_clearly_then_recovers() {
    // Declared first: dropped last, after the daemon has exited.
    let m = LoopMount::new(128);
    let config = m.mnt.join("mantisd.toml");
    std::fs::write(
        &config,
        "[monitor]\ndisk_free_bytes_min = 1048576\nalerts_eval_interval_ms = 60000\n",
    )
    .unwrap();
    let mut d = Daemon::start_in(
        &m.mnt.join("data"),
        Options {
            shards: 1,
            extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
            ..Options::default()
        },
    );
    let health = d.http("GET", "/health", &[], b"").json();
    assert_eq!(health["status"], "healthy", "{health}");

    let ballast = m.mnt.join("ballast");
    let ballast_len = free_bytes(&m.mnt).saturating_sub(24 << 20);
    run(
        "fallocate",
        &["-l", &ballast_len.to_string(), ballast.to_str().unwrap()],
    );
    let mut full = None;
    for i in 0..2000u64 {
        let r = d.http("PUT", &format!("/api/v1/kv/fill{i:05}"), &[], &value(i));
        match r.status {
            204 => continue,
            _ => {
                full = Some(r);
                break;
            }
        }
    }
    let r = full.expect("the filesystem never filled up");
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(r.error_code(), "disk_full");
    assert!(r.text().contains("disk full"), "{}", r.text());
    // RESP says so too.
    let reply = d.cli(&["SET", "one-more", "x"]);
    assert!(reply.starts_with("DISKFULL"), "{reply}");

    let health = d.http("GET", "/health", &[], b"").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["disk"]["status"], "warn", "{health}");
    // Reads still work.
    assert_eq!(d.http("GET", "/api/v1/kv/fill00000", &[], b"").status, 200);

    // Space back: writes succeed without a restart and health recovers.
    std::fs::remove_file(&ballast).unwrap();
    eventually(Duration::from_secs(30), "writes resume", || {
        d.http("PUT", "/api/v1/kv/after", &[], b"ok").status == 204
    });
    eventually(Duration::from_secs(30), "health back to healthy", || {
        d.http("GET", "/health", &[], b"").json()["status"] == "healthy"
    });
    assert!(d.stop().success(), "{}", d.log());
}
