//! Waiting for background work (flushes, compactions) to finish before a read figure, so the
//! figure is of the engine at rest, not of reads racing a compaction for the disk.

use std::time::{Duration, Instant};

use mantis_engine::{EngineHandle, ShardStats};
use serde::Serialize;
use tracing::info;

use crate::engine::writes::stats;
use crate::error::BenchError;

/// How often the stats are read while waiting.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    pub waited_s: f64,
    /// false when the deadline passed with background work still going on.
    pub settled: bool,
}

/// What changes while background work runs.
fn fingerprint(stats: &[ShardStats]) -> Vec<(u64, u64, u64, u64)> {
    stats
        .iter()
        .map(|s| (s.segments, s.flushes, s.compactions, s.memtables_frozen))
        .collect()
}

/// Polls until no flush or compaction has started or finished for `quiet`, or `timeout`.
pub fn wait_for_quiet(
    h: &EngineHandle,
    quiet: Duration,
    timeout: Duration,
) -> Result<Settled, BenchError> {
    let started = Instant::now();
    let mut last = fingerprint(&stats(h, "settle: stats")?);
    let mut last_change = Instant::now();
    loop {
        if last_change.elapsed() >= quiet {
            return Ok(Settled {
                waited_s: started.elapsed().as_secs_f64(),
                settled: true,
            });
        }
        if started.elapsed() >= timeout {
            info!(
                waited_s = started.elapsed().as_secs(),
                "background work still running; measuring anyway"
            );
            return Ok(Settled {
                waited_s: started.elapsed().as_secs_f64(),
                settled: false,
            });
        }
        std::thread::sleep(POLL);
        let now = fingerprint(&stats(h, "settle: stats")?);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
}
