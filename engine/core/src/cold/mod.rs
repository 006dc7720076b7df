//! Cold-data detection and recompression. Point reads mark the block they read in the
//! shard's [`AccessTracker`]; every `epoch_secs` the epoch closes (its set frozen into a
//! filter) and each live segment whose blocks all went untouched for `cold_after_epochs`
//! epochs is rewritten with the cold codec (ZSTD), in a low-share task queue and under a byte
//! rate. Data that turns hot again is rewritten with the hot codec (`EngineConfig::compression`,
//! LZ4 by default) the next time compaction merges it.

pub mod tracker;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{Latency, Shares};
use mantis_table::Codec;

pub use tracker::{block_id, AccessTracker, EPOCH_HISTORY_MAX, TOUCHED_PER_EPOCH_MAX};

use crate::compaction::CompactionPlan;
use crate::error::{EngineError, Result};
use crate::scrub::RateLimiter;
use crate::shard::Shard;

/// Same share as the scrubber: recompression is the least urgent work there is.
const COLD_SHARES: usize = 25;
pub const RECOMPRESS_RATE_DEFAULT_BYTES_PER_SEC: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdConfig {
    /// Length of an access epoch (0: epochs close only on request, see
    /// `EngineHandle::cold_tick`).
    pub epoch_secs: u64,
    /// Untouched for this many closed epochs → cold.
    pub cold_after_epochs: usize,
    pub cold_codec: Codec,
    /// Bytes of cold segments rewritten per second, at most (0: unlimited).
    pub recompress_rate_bytes_per_sec: u64,
}

impl Default for ColdConfig {
    fn default() -> Self {
        ColdConfig {
            epoch_secs: 3600,
            cold_after_epochs: 24,
            cold_codec: Codec::Zstd { level: 6 },
            recompress_rate_bytes_per_sec: RECOMPRESS_RATE_DEFAULT_BYTES_PER_SEC,
        }
    }
}

/// Compression of a shard's live segments and the cold-data machinery's work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompressionStats {
    /// Data block bytes before compression and as stored.
    pub raw_data_bytes: u64,
    pub stored_data_bytes: u64,
    /// Data blocks per codec actually used: none, lz4, snappy, zstd.
    pub blocks_by_codec: [u64; 4],
    /// Stored data bytes per configured segment codec: none, lz4, snappy, zstd.
    pub stored_bytes_by_codec: [u64; 4],
    pub raw_bytes_by_codec: [u64; 4],
    pub blocks_total: u64,
    pub cold_blocks: u64,
    pub epoch: u64,
    pub history_bytes: u64,
    pub recompressions: u64,
    pub recompressed_bytes_in: u64,
    pub recompressed_bytes_out: u64,
    pub recompress_time_us: u64,
}

pub const CODEC_NAMES: [&str; 4] = ["none", "lz4", "snappy", "zstd"];

pub fn codec_index(c: Codec) -> usize {
    match c {
        Codec::None => 0,
        Codec::Lz4 => 1,
        Codec::Snappy => 2,
        Codec::Zstd { .. } => 3,
    }
}

/// The shard's tracker and counters.
#[derive(Default)]
pub(crate) struct ShardCold {
    pub tracker: RefCell<AccessTracker>,
    pub recompressions: Cell<u64>,
    pub recompressed_bytes_in: Cell<u64>,
    pub recompressed_bytes_out: Cell<u64>,
    pub recompress_time_us: Cell<u64>,
}

pub(crate) fn start(shard: &Rc<Shard>) -> Result<()> {
    register_segments(shard);
    if shard.cfg.cold.epoch_secs == 0 {
        return Ok(());
    }
    let tq = glommio::executor().create_task_queue(
        Shares::Static(COLD_SHARES),
        Latency::NotImportant,
        &format!("cold-{}", shard.id),
    );
    let s = shard.clone();
    glommio::spawn_local_into(
        async move {
            let epoch = Duration::from_secs(s.cfg.cold.epoch_secs);
            while !s.closing.get() {
                glommio::timer::sleep(epoch).await;
                if s.closing.get() {
                    return;
                }
                if let Err(e) = tick(&s).await {
                    tracing::warn!(shard = s.id, error = %e, "cold recompression failed");
                }
            }
        },
        tq,
    )
    .map_err(|e| EngineError::Startup {
        shard: shard.id,
        reason: format!("spawn cold-data task: {e}"),
    })?
    .detach();
    Ok(())
}

/// Tracks every live segment (new ones start their window now) and forgets removed ones.
fn register_segments(shard: &Shard) {
    let ids: Vec<u64> = shard
        .state
        .borrow()
        .segments
        .iter()
        .map(|s| s.r.id)
        .collect();
    let mut t = shard.cold.tracker.borrow_mut();
    for &id in &ids {
        t.segment_added(id);
    }
    t.retain_segments(&ids);
}

/// Closes the access epoch and rewrites every cold segment not yet in the cold codec.
pub(crate) async fn tick(shard: &Rc<Shard>) -> Result<()> {
    register_segments(shard);
    shard.cold.tracker.borrow_mut().close_epoch();
    let cold_codec = shard.cfg.cold.cold_codec;
    let window = shard.cfg.cold.cold_after_epochs;
    let candidates: Vec<u64> = {
        let st = shard.state.borrow();
        let t = shard.cold.tracker.borrow();
        st.segments
            .iter()
            .filter(|s| codec_index(s.seg.properties().codec) != codec_index(cold_codec))
            .filter(|s| (0..s.seg.blocks().len()).all(|b| t.is_cold(s.r.id, b, window)))
            .map(|s| s.r.id)
            .collect()
    };
    let mut limiter = RateLimiter::new(shard.cfg.cold.recompress_rate_bytes_per_sec);
    for id in candidates {
        if shard.closing.get() {
            break;
        }
        let started = Instant::now();
        let Some((bytes_in, bytes_out)) = rewrite_segment(shard, id, cold_codec).await? else {
            continue;
        };
        let c = &shard.cold;
        c.recompressions.set(c.recompressions.get() + 1);
        c.recompressed_bytes_in
            .set(c.recompressed_bytes_in.get() + bytes_in);
        c.recompressed_bytes_out
            .set(c.recompressed_bytes_out.get() + bytes_out);
        c.recompress_time_us
            .set(c.recompress_time_us.get() + started.elapsed().as_micros() as u64);
        limiter.consume(bytes_in).await;
    }
    register_segments(shard);
    Ok(())
}

/// Rewrites segment `id` alone with `codec` (a compaction of a run of one, tombstones kept).
/// Returns (bytes before, bytes after), or `None` when the segment is gone meanwhile.
async fn rewrite_segment(shard: &Rc<Shard>, id: u64, codec: Codec) -> Result<Option<(u64, u64)>> {
    let _permit = shard
        .compaction_lock
        .acquire_permit(1)
        .await
        .map_err(|e| EngineError::Invalid(format!("compaction lock: {e}")))?;
    let (plan, start, bytes_in) = {
        let st = shard.state.borrow();
        let Some(start) = st.segments.iter().position(|s| s.r.id == id) else {
            return Ok(None);
        };
        let plan = CompactionPlan {
            start,
            count: 1,
            drop_tombstones: false,
        };
        (plan, start, st.segments[start].r.size_bytes)
    };
    shard.merge(plan, codec).await?;
    let bytes_out = {
        let st = shard.state.borrow();
        st.segments.get(start).map_or(0, |s| s.r.size_bytes)
    };
    Ok(Some((bytes_in, bytes_out)))
}

/// The compression half of the shard's stats.
pub(crate) fn stats(shard: &Shard) -> CompressionStats {
    let st = shard.state.borrow();
    let t = shard.cold.tracker.borrow();
    let window = shard.cfg.cold.cold_after_epochs;
    let mut out = CompressionStats {
        epoch: t.epoch(),
        history_bytes: t.history_bytes() as u64,
        recompressions: shard.cold.recompressions.get(),
        recompressed_bytes_in: shard.cold.recompressed_bytes_in.get(),
        recompressed_bytes_out: shard.cold.recompressed_bytes_out.get(),
        recompress_time_us: shard.cold.recompress_time_us.get(),
        ..CompressionStats::default()
    };
    for s in &st.segments {
        let p = s.seg.properties();
        let c = &p.codec_stats;
        out.raw_data_bytes += c.raw_data_bytes;
        out.stored_data_bytes += c.stored_data_bytes;
        for (i, n) in c.blocks_by_codec.iter().enumerate().take(4) {
            out.blocks_by_codec[i] += n;
        }
        out.stored_bytes_by_codec[codec_index(p.codec)] += c.stored_data_bytes;
        out.raw_bytes_by_codec[codec_index(p.codec)] += c.raw_data_bytes;
        let blocks = s.seg.blocks().len();
        out.blocks_total += blocks as u64;
        out.cold_blocks += (0..blocks)
            .filter(|&b| t.is_cold(s.r.id, b, window))
            .count() as u64;
    }
    out
}
