//! The background scrubber: walks every live segment block by block (bypassing the cache)
//! and then the WAL, in its own low-share task queue and under a byte-rate limit, so that
//! foreground requests keep the disk and the CPU. Runs every `interval_secs` and on demand.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{Latency, Shares};
use mantis_storage::format::WAL_DIR;

use super::{CorruptionEvent, RateLimiter, Site};
use crate::error::{EngineError, Result};
use crate::event::{now_ms, Event};
use crate::shard::Shard;

/// Default scrub rate: a full pass over 100 GiB takes about 3.5 h at this rate.
pub const SCRUB_RATE_DEFAULT_BYTES_PER_SEC: u64 = 8 << 20;
/// Against the maintenance queue's 100 and the default queue's 1000: the scrubber gets what is
/// left over.
const SCRUB_SHARES: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Start a pass every this many seconds (0: only on demand).
    pub interval_secs: u64,
    /// Read budget (0: unlimited; tests only).
    pub rate_bytes_per_sec: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            interval_secs: 6 * 3600,
            rate_bytes_per_sec: SCRUB_RATE_DEFAULT_BYTES_PER_SEC,
        }
    }
}

/// Progress and history of one shard's scrubber.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubStats {
    pub running: bool,
    pub passes_completed: u64,
    pub pass_bytes_done: u64,
    pub pass_bytes_total: u64,
    pub bytes_scrubbed_total: u64,
    pub blocks_scrubbed_total: u64,
    pub wal_records_scrubbed_total: u64,
    /// End of the last complete pass (unix ms; 0 = never).
    pub last_full_pass_end_unix_ms: u64,
    pub last_full_pass_duration_ms: u64,
    /// Damage found by the scrubber (each is also a corruption event).
    pub corruptions_found: u64,
}

/// Per-shard integrity state: scrubber stats and trigger, and the corruption events seen.
#[derive(Default)]
pub(crate) struct ShardIntegrity {
    pub stats: RefCell<ScrubStats>,
    pub requested: Cell<bool>,
    pub wake: Event,
    pub corruption_events: Cell<u64>,
    /// The same events by [`Site::index`], for the per-component metric.
    pub events_by_site: RefCell<[u64; Site::COUNT]>,
    pub last_event: RefCell<Option<CorruptionEvent>>,
}

impl ShardIntegrity {
    /// Logs a corruption event and keeps it for the stats (health turns degraded).
    pub fn record(&self, event: CorruptionEvent) {
        tracing::error!(
            shard = event.shard,
            site = event.site.as_str(),
            file = %event.file.display(),
            offset = event.offset,
            expected_crc = ?event.expected_crc,
            found_crc = ?event.found_crc,
            detail = %event.detail,
            "corruption event"
        );
        self.corruption_events.set(self.corruption_events.get() + 1);
        self.events_by_site.borrow_mut()[event.site.index()] += 1;
        *self.last_event.borrow_mut() = Some(event);
    }

    /// Asks for a pass now (ignored while one runs: that pass is the answer).
    pub fn request(&self) {
        self.requested.set(true);
        self.wake.notify_all();
    }
}

pub(crate) fn start(shard: &Rc<Shard>) -> Result<()> {
    let tq = glommio::executor().create_task_queue(
        Shares::Static(SCRUB_SHARES),
        Latency::NotImportant,
        &format!("scrub-{}", shard.id),
    );
    let s = shard.clone();
    glommio::spawn_local_into(async move { scrub_loop(s).await }, tq)
        .map_err(|e| EngineError::Startup {
            shard: shard.id,
            reason: format!("spawn scrubber: {e}"),
        })?
        .detach();
    Ok(())
}

async fn scrub_loop(shard: Rc<Shard>) {
    loop {
        while !shard.integrity.requested.get() {
            if shard.closing.get() {
                return;
            }
            let interval_secs = shard.cfg.scrub.interval_secs;
            let wake = async {
                shard.integrity.wake.wait().await;
                false
            };
            let timer = async {
                if interval_secs == 0 {
                    std::future::pending::<()>().await;
                }
                glommio::timer::sleep(Duration::from_secs(interval_secs)).await;
                true
            };
            if futures_lite::future::or(wake, timer).await {
                break;
            }
        }
        shard.integrity.requested.set(false);
        if shard.closing.get() {
            return;
        }
        run_pass(&shard).await;
    }
}

/// One full pass: every live segment, then the WAL.
pub(crate) async fn run_pass(shard: &Rc<Shard>) {
    let started = Instant::now();
    let segments = shard.state.borrow().segments.clone();
    {
        let mut st = shard.integrity.stats.borrow_mut();
        st.running = true;
        st.pass_bytes_done = 0;
        st.pass_bytes_total = segments.iter().map(|s| s.r.size_bytes).sum();
    }
    let mut limiter = RateLimiter::new(shard.cfg.scrub.rate_bytes_per_sec);
    for live in &segments {
        if shard.closing.get() {
            break;
        }
        scrub_segment(shard, &live.seg, &mut limiter).await;
    }
    scrub_wal(shard).await;
    let mut st = shard.integrity.stats.borrow_mut();
    st.running = false;
    st.passes_completed += 1;
    st.last_full_pass_end_unix_ms = now_ms();
    st.last_full_pass_duration_ms = started.elapsed().as_millis() as u64;
}

fn progress(shard: &Shard, bytes: u64, blocks: u64) {
    let mut st = shard.integrity.stats.borrow_mut();
    st.pass_bytes_done += bytes;
    st.bytes_scrubbed_total += bytes;
    st.blocks_scrubbed_total += blocks;
}

fn found(shard: &Shard, event: CorruptionEvent) {
    shard.integrity.stats.borrow_mut().corruptions_found += 1;
    shard.integrity.record(event);
}

async fn scrub_segment(shard: &Shard, seg: &mantis_table::Segment, limiter: &mut RateLimiter) {
    let mut pacer = mantis_storage::rt::BackgroundPacer::new();
    match seg.verify_meta().await {
        Ok(n) => {
            progress(shard, n, 0);
            limiter.consume(n).await;
        }
        Err(e) => {
            // Blocks are located through the index: with it damaged there is nothing to walk.
            found(shard, CorruptionEvent::from_table(shard.id, &e));
            return;
        }
    }
    for i in 0..seg.blocks().len() {
        if shard.closing.get() {
            return;
        }
        match seg.verify_block(i).await {
            Ok(n) => {
                progress(shard, n, 1);
                limiter.consume(n).await;
            }
            Err(e) => found(shard, CorruptionEvent::from_table(shard.id, &e)),
        }
        // Hand the CPU to a waiting foreground task within a short step (issue 7: a request
        // otherwise waited for the next 10 ms preemption tick; docs/benchmarks.md).
        pacer.step().await;
    }
}

/// Verifies the live WAL. Segments are recycled while we read, so a problem is reported only
/// when a second read finds it at the same place.
async fn scrub_wal(shard: &Shard) {
    let dir = shard.dir.join(WAL_DIR);
    let first = match mantis_wal::verify(shard.storage.as_ref(), &dir, shard.id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(shard = shard.id, error = %e, "wal scrub skipped (log changed under it)");
            return;
        }
    };
    shard
        .integrity
        .stats
        .borrow_mut()
        .wal_records_scrubbed_total += first.records_ok;
    if first.problems.is_empty() {
        return;
    }
    let Ok(second) = mantis_wal::verify(shard.storage.as_ref(), &dir, shard.id).await else {
        return;
    };
    for p in first.problems.iter().filter(|p| {
        second
            .problems
            .iter()
            .any(|q| q.file == p.file && q.offset == p.offset)
    }) {
        found(
            shard,
            CorruptionEvent {
                shard: shard.id,
                site: Site::Wal,
                file: p.file.clone(),
                offset: p.offset,
                expected_crc: None,
                found_crc: None,
                detail: format!("{} (LSN {})", p.reason, p.lsn),
                at_unix_ms: now_ms(),
            },
        );
    }
}
