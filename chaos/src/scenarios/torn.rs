//! Scenario 3: torn WAL tails, written while the daemon is stopped (after a SIGKILL).
//!
//! Two kinds, alternating:
//! - `garbage`: random bytes (sometimes a chunk magic with a wrong checksum) in the zeroed
//!   blocks right after the last chunk of the newest segment, as a chunk write that was in
//!   flight at a power cut would leave. Nothing acknowledged may be lost.
//! - `tear`: zero the last chunk from a random offset inside it. That chunk was synced, and
//!   maybe acknowledged: destroying it is data loss the harness causes, so those losses are
//!   counted apart (`acked_destroyed_by_injection`) while everything else stays strict: the
//!   daemon must start (a torn tail is not corruption), no torn or wrong value, no partial
//!   batch, nothing older than the chunk lost.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use super::walfile::{chunks, newest_segments};
use super::{count_writes, ms, start, start_ready, verify, Ctx, Scratch};
use crate::daemon::{Daemon, DaemonConfig, Start};
use crate::error::{io_err, Result};
use crate::model::Loss;
use crate::report::ScenarioReport;
use crate::workload::{self, Load, Shared};

pub fn run(ctx: &Ctx, seed: u64, iterations: u64) -> Result<ScenarioReport> {
    let mut rep = ScenarioReport::new("torn-wal-tail", seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, "torn", seed)?;
    let cfg = DaemonConfig::new(&ctx.mantisd, &scratch.data(), seed);
    let mut d = Daemon::new(cfg, &scratch.run())?;
    start_ready(&mut d, &mut rep)?;
    let load = Load {
        writers: 3,
        keys_per_writer: 32,
        shards: d.cfg.shards,
        value_bytes_max: 12 << 10,
        seed,
    };
    let shared = Shared::new();
    let mut rng = SmallRng::seed_from_u64(seed);
    for i in 0..iterations {
        let handles = workload::start(d.resp, &load, i, &shared);
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..=300)));
        d.kill()?;
        workload::join(handles);
        let tear = i % 2 == 1;
        let injected = inject(&scratch.data(), tear, &mut rng, &mut rep)?;
        rep.faults_injected += injected;
        match start(&mut d, &mut rep)? {
            Start::Ready { recovery } => rep.recovery_ms.push(ms(recovery)),
            Start::Refused { status, log_tail } => {
                rep.fail(format!(
                    "iteration {i}: mantisd refused a torn tail ({status}): {log_tail}"
                ));
                break;
            }
        }
        rep.iterations += 1;
        let loss = if tear {
            Loss::Injected
        } else {
            Loss::Forbidden
        };
        if !verify(&d, &shared, loss, &mut rep) {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    d.stop()?;
    count_writes(&shared, &mut rep);
    rep.note("odd iterations zero the last (synced) chunk from a random offset: acknowledged writes in it are counted under 'destroyed by the injection', not as losses".to_string());
    rep.finish(started);
    Ok(rep)
}

/// Damages the newest WAL segment of every shard; returns how many faults were written.
fn inject(
    data: &std::path::Path,
    tear: bool,
    rng: &mut SmallRng,
    rep: &mut ScenarioReport,
) -> Result<u64> {
    let mut n = 0;
    for seg in newest_segments(data) {
        let bytes = std::fs::read(&seg).map_err(io_err(&seg))?;
        let cs = chunks(&bytes);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .map_err(io_err(&seg))?;
        if tear {
            let Some(&(start, end)) = cs.last() else {
                continue;
            };
            let from = rng.gen_range(start + 1..end);
            let zeros = vec![0u8; (end - from) as usize];
            f.write_all_at(&zeros, from).map_err(io_err(&seg))?;
            rep.note(format!("tear {}: zeroed [{from}, {end})", seg.display()));
        } else {
            let from = cs.last().map_or(0, |c| c.1);
            let room = (bytes.len() as u64).saturating_sub(from).min(16 << 10);
            if room == 0 {
                continue;
            }
            let mut junk = vec![0u8; rng.gen_range(1..=room) as usize];
            rng.fill_bytes(&mut junk);
            if rng.gen_bool(0.5) && junk.len() >= 4 {
                junk[..4].copy_from_slice(&0x4d57_414cu32.to_le_bytes());
            }
            f.write_all_at(&junk, from).map_err(io_err(&seg))?;
        }
        f.sync_all().map_err(io_err(&seg))?;
        n += 1;
    }
    Ok(n)
}
