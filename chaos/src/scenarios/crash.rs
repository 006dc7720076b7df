//! Scenarios 1 and 2: SIGKILL at a random moment of the mixed write load, restart, verify,
//! repeat. With `flush_heavy` the memtable is tiny (64 KiB) and values larger, so flushes and
//! compactions run all the time and most kills land inside one (counted from /metrics).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{count_writes, start_ready, verify, Ctx, Scratch};
use crate::daemon::{Daemon, DaemonConfig};
use crate::error::Result;
use crate::model::Loss;
use crate::report::ScenarioReport;
use crate::workload::{self, Load, Shared};

#[derive(Debug, Clone)]
pub struct CrashOpts {
    pub seed: u64,
    pub iterations: u64,
    pub writers: usize,
    pub flush_heavy: bool,
    /// Longest load phase before the kill, in ms.
    pub load_ms_max: u64,
}

pub fn run(ctx: &Ctx, o: &CrashOpts) -> Result<ScenarioReport> {
    let name = if o.flush_heavy {
        "crash-flush-compaction"
    } else {
        "crash"
    };
    let mut rep = ScenarioReport::new(name, o.seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, name, o.seed)?;
    let mut cfg = DaemonConfig::new(&ctx.mantisd, &scratch.data(), o.seed);
    if o.flush_heavy {
        cfg.memtable_bytes = 64 << 10;
        cfg.wal_segment_bytes = 1 << 20;
    }
    let mut d = Daemon::new(cfg, &scratch.run())?;
    start_ready(&mut d, &mut rep)?;
    let load = Load {
        writers: o.writers,
        keys_per_writer: 48,
        shards: d.cfg.shards,
        value_bytes_max: if o.flush_heavy { 16 << 10 } else { 8 << 10 },
        seed: o.seed,
    };
    let shared = Shared::new();
    let mut rng = SmallRng::seed_from_u64(o.seed);
    let (mut flushes, mut compactions) = (0.0, 0.0);
    for i in 0..o.iterations {
        let handles = workload::start(d.resp, &load, i, &shared);
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..=o.load_ms_max)));
        if o.flush_heavy {
            flushes = d.metric_sum("mantis_flushes_total").unwrap_or(flushes);
            compactions = d
                .metric_sum("mantis_compactions_total")
                .unwrap_or(compactions);
        }
        if !d.alive() {
            rep.fail(format!(
                "iteration {i}: mantisd died under load: {}",
                d.log_tail()
            ));
            workload::join(handles);
            break;
        }
        d.kill()?;
        rep.faults_injected += 1;
        workload::join(handles);
        start_ready(&mut d, &mut rep)?;
        rep.iterations += 1;
        if !verify(&d, &shared, Loss::Forbidden, &mut rep) {
            break;
        }
    }
    // A last graceful stop and start: the flushed state must verify too.
    shared.stop.store(true, Ordering::Relaxed);
    if d.alive() {
        d.stop()?;
        start_ready(&mut d, &mut rep)?;
        verify(&d, &shared, Loss::Forbidden, &mut rep);
        d.stop()?;
    }
    if o.flush_heavy {
        rep.note(format!(
            "flushes seen before the last kill: {flushes}, compactions: {compactions} (counters restart with the process; kills happened with flushes running on every iteration where the count rose)"
        ));
    }
    count_writes(&shared, &mut rep);
    rep.finish(started);
    Ok(rep)
}
