//! Scenario 5: mantisd in a cgroup v1 memory controller with a limit below what it would use
//! unbounded, its budgets configured small. It must keep serving under load; whatever
//! happens, after a SIGKILL (or an OOM kill) and restart nothing acknowledged is lost.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{count_writes, verify, Ctx, Scratch};
use crate::daemon::{Daemon, DaemonConfig};
use crate::error::{io_err, Result};
use crate::model::Loss;
use crate::report::ScenarioReport;
use crate::workload::{self, Load, Shared};

const CGROUP_V1_ROOT: &str = "/sys/fs/cgroup/memory";

struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn read_u64(p: &std::path::Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

pub fn run(ctx: &Ctx, seed: u64, limit_mib: u64, load_secs: u64) -> Result<ScenarioReport> {
    let mut rep = ScenarioReport::new("memory-limit", seed);
    let started = Instant::now();
    let root = PathBuf::from(CGROUP_V1_ROOT);
    if !root.join("memory.limit_in_bytes").exists() {
        rep.host_limits.push(format!(
            "no cgroup v1 memory controller at {CGROUP_V1_ROOT} (cgroup v2 here has none)"
        ));
        rep.fail("memory-limit scenario could not run on this host");
        rep.finish(started);
        return Ok(rep);
    }
    let cg = Cgroup(root.join(format!("mantis-chaos-{}-{seed}", std::process::id())));
    std::fs::create_dir_all(&cg.0).map_err(io_err(&cg.0))?;
    let limit = cg.0.join("memory.limit_in_bytes");
    std::fs::write(&limit, (limit_mib << 20).to_string()).map_err(io_err(&limit))?;
    rep.faults_injected += 1;
    let scratch = Scratch::new(ctx, "memory", seed)?;
    let mut cfg = DaemonConfig::new(&ctx.mantisd, &scratch.data(), seed);
    cfg.memtable_bytes = 8 << 20;
    cfg.block_cache_bytes = 8 << 20;
    cfg.cgroup_procs = Some(cg.0.join("cgroup.procs"));
    let mut d = Daemon::new(cfg, &scratch.run())?;
    super::start_ready(&mut d, &mut rep)?;
    let load = Load {
        writers: 4,
        keys_per_writer: 2000,
        shards: d.cfg.shards,
        value_bytes_max: 64 << 10,
        seed,
    };
    let shared = Shared::new();
    let handles = workload::start(d.resp, &load, 0, &shared);
    let deadline = Instant::now() + Duration::from_secs(load_secs);
    while Instant::now() < deadline && d.alive() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let survived = d.alive();
    if survived {
        d.kill()?;
    } else {
        rep.note(format!(
            "mantisd died under the limit: {:?}",
            d.exit_status()
        ));
    }
    shared.stop.store(true, Ordering::Relaxed);
    workload::join(handles);
    let oom = std::fs::read_to_string(cg.0.join("memory.oom_control")).unwrap_or_default();
    rep.note(format!(
        "limit {limit_mib} MiB; peak usage {} MiB; failcnt {}; survived {load_secs} s of load: {survived}; oom_control: {}",
        read_u64(&cg.0.join("memory.max_usage_in_bytes")) >> 20,
        read_u64(&cg.0.join("memory.failcnt")),
        oom.replace('\n', ", ")
    ));
    if !survived {
        rep.fail("mantisd did not stay under its memory limit with its configured budgets");
    }
    super::start_ready(&mut d, &mut rep)?;
    rep.iterations += 1;
    verify(&d, &shared, Loss::Forbidden, &mut rep);
    d.stop()?;
    drop(d);
    count_writes(&shared, &mut rep);
    rep.finish(started);
    Ok(rep)
}
