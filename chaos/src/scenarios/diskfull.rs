//! Scenario 4: the data directory on a small loop-mounted ext4 image (created here; needs
//! root, losetup, mkfs.ext4). A ballast file takes most of the space, the load fills the rest
//! until writes get DISKFULL; then: the process is up, reads verify, /health is degraded;
//! the ballast is removed and writes must succeed again without a restart; finally SIGKILL,
//! restart, verify.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{count_writes, verify, Ctx, Scratch, CLIENT_TIMEOUT};
use crate::daemon::{Daemon, DaemonConfig};
use crate::error::{io_err, ChaosError, Result};
use crate::model::Loss;
use crate::report::ScenarioReport;
use crate::resp::Client;
use crate::value;
use crate::workload::{self, Load, Shared};

const IMAGE_BYTES: u64 = 160 << 20;
/// Space left free for the load after the ballast is written.
const HEADROOM_BYTES: u64 = 12 << 20;
const FILL_TIMEOUT: Duration = Duration::from_secs(90);

fn sh(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| ChaosError::Host {
        what: what.into(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ChaosError::Host {
            what: what.into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The mounted image; unmounted and detached on drop.
struct LoopFs {
    mount: std::path::PathBuf,
    device: String,
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn mount_image(scratch: &Scratch) -> Result<LoopFs> {
    let image = scratch.path.join("disk.img");
    let mount = scratch.path.join("mnt");
    std::fs::create_dir_all(&mount).map_err(io_err(&mount))?;
    let f = std::fs::File::create(&image).map_err(io_err(&image))?;
    f.set_len(IMAGE_BYTES).map_err(io_err(&image))?;
    let device = sh(
        "losetup",
        Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image),
    )?;
    let fs = LoopFs {
        mount: mount.clone(),
        device: device.clone(),
    };
    sh(
        "mkfs.ext4",
        Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&device),
    )?;
    sh("mount", Command::new("mount").arg(&device).arg(&mount))?;
    Ok(fs)
}

fn free_bytes(path: &std::path::Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| io_err(path)(e.into()))?;
    Ok(s.blocks_available() * s.fragment_size())
}

pub fn run(ctx: &Ctx, seed: u64) -> Result<ScenarioReport> {
    let mut rep = ScenarioReport::new("disk-full", seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, "diskfull", seed)?;
    let fs = match mount_image(&scratch) {
        Ok(fs) => fs,
        Err(e) => {
            rep.host_limits
                .push(format!("no loop-mounted ext4 image: {e}"));
            rep.fail("disk-full scenario could not run on this host");
            rep.finish(started);
            return Ok(rep);
        }
    };
    let data = fs.mount.join("data");
    let mut cfg = DaemonConfig::new(&ctx.mantisd, &data, seed);
    cfg.memtable_bytes = 1 << 20;
    cfg.wal_segment_bytes = 2 << 20;
    let mut d = Daemon::new(cfg, &scratch.run())?;
    super::start_ready(&mut d, &mut rep)?;
    let ballast = fs.mount.join("ballast");
    let ballast_bytes = free_bytes(&fs.mount)?.saturating_sub(HEADROOM_BYTES);
    write_ballast(&ballast, ballast_bytes)?;
    rep.faults_injected += 1;
    let load = Load {
        writers: 3,
        keys_per_writer: 4096,
        shards: d.cfg.shards,
        value_bytes_max: 256 << 10,
        seed,
    };
    let shared = Shared::new();
    let handles = workload::start(d.resp, &load, 0, &shared);
    let deadline = Instant::now() + FILL_TIMEOUT;
    while shared.errors_of("DISKFULL") == 0 && Instant::now() < deadline && d.alive() {
        std::thread::sleep(Duration::from_millis(50));
    }
    shared.stop.store(true, Ordering::Relaxed);
    workload::join(handles);
    let diskfull = shared.errors_of("DISKFULL");
    if diskfull == 0 {
        rep.fail(format!(
            "no DISKFULL reply within {FILL_TIMEOUT:?}; errors: {:?}",
            shared
                .error_replies
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default()
        ));
    } else {
        rep.faults_detected += 1;
        rep.note(format!("{diskfull} writes refused with DISKFULL"));
    }
    if !d.alive() {
        rep.fail(format!("mantisd died on a full disk: {}", d.log_tail()));
        rep.finish(started);
        return Ok(rep);
    }
    // Reads go on while the disk is full.
    verify(&d, &shared, Loss::Forbidden, &mut rep);
    match d.http_get("/health") {
        Ok((code, body)) => {
            rep.note(format!(
                "/health on a full disk: {code} {}",
                body.chars().take(200).collect::<String>()
            ));
            if !body.contains("degraded") {
                rep.fail(format!(
                    "/health does not say degraded on a full disk: {code} {body}"
                ));
            }
        }
        Err(e) => rep.fail(format!("/health unreachable on a full disk: {e}")),
    }
    std::fs::remove_file(&ballast).map_err(io_err(&ballast))?;
    resume_writes(&d, &shared, &mut rep);
    d.kill()?;
    super::start_ready(&mut d, &mut rep)?;
    rep.iterations += 1;
    verify(&d, &shared, Loss::Forbidden, &mut rep);
    d.stop()?;
    drop(d);
    count_writes(&shared, &mut rep);
    rep.finish(started);
    Ok(rep)
}

fn write_ballast(path: &std::path::Path, bytes: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io_err(path))?;
    let block = vec![0x5au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).map_err(io_err(path))?;
        left -= n as u64;
    }
    f.sync_all().map_err(io_err(path))
}

/// After space is freed, a write must succeed again (polled with a deadline: the daemon
/// notices free space on its next write attempt).
fn resume_writes(d: &Daemon, shared: &Shared, rep: &mut ScenarioReport) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = b"w999:resume".to_vec();
    let mut version = shared.version.fetch_add(1, Ordering::Relaxed);
    loop {
        let val = value::encode(&key, version, false, 100);
        shared.model().attempt(std::slice::from_ref(&key), version);
        let reply =
            Client::connect(d.resp, CLIENT_TIMEOUT).and_then(|mut c| c.call(&[b"SET", &key, &val]));
        match reply {
            Ok(r) if r.is_ok() => {
                shared.model().resolve(
                    std::slice::from_ref(&key),
                    version,
                    crate::model::Outcome::Acked,
                );
                rep.note(
                    "writes resumed after the ballast was removed, without a restart".to_string(),
                );
                return;
            }
            Ok(r) => {
                shared.model().resolve(
                    std::slice::from_ref(&key),
                    version,
                    crate::model::Outcome::Refused,
                );
                if Instant::now() > deadline {
                    rep.fail(format!(
                        "writes did not resume within 30 s of freeing space: {}",
                        r.describe()
                    ));
                    return;
                }
            }
            Err(e) => {
                rep.fail(format!("connection failed after freeing space: {e}"));
                return;
            }
        }
        version = shared.version.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }
}
