//! Engine figures, in-process, each next to the raw disk figure of the same run.
//!
//! Phases, in this order (one process):
//! 1. load: a fresh engine with a small block cache takes N keys; resident memory is read
//!    after the load and after flush + compaction, then uncached gets over the whole data set
//!    alternate with raw random reads on shard 0;
//! 2. a fresh engine with default caches: single-writer durable puts alternating with raw
//!    write + fdatasync on shard 0, then W writers per shard for a fixed time, then cached gets
//!    of a flushed hot set, on the owning shard and from an outside thread.
//!
//! The load runs first so its memory figure is not inflated by what earlier phases left in
//! the allocator.

pub mod keys;
mod load;
mod memory;
mod reads;
mod settle;
mod task;
mod writes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mantis_engine::{Engine, EngineConfig, EngineHandle, ShardStats};
use serde::Serialize;
use tracing::info;

use crate::disk::DiskFigures;
use crate::error::BenchError;
use crate::report::TargetCheck;
use task::engine_err;
pub use task::engine_err as task_engine_err;

pub use load::LoadFigures;
pub use memory::MemorySample;
pub use reads::{CachedGetFigures, UncachedGetFigures};
pub use writes::{ConcurrentFigures, SingleWriterFigures};

#[derive(Debug, Clone)]
pub struct EngineBenchConfig {
    pub dir: PathBuf,
    pub keys: u64,
    pub value_bytes: usize,
    /// 0: one shard per allowed CPU (the engine's default).
    pub shards: usize,
    pub writers_per_shard: usize,
    pub concurrent_duration: Duration,
    pub single_writer_ops: usize,
    pub hot_keys_per_shard: usize,
    pub cached_get_ops_per_shard: usize,
    pub outside_get_ops: usize,
    pub uncached_get_ops: usize,
    /// Block cache per shard of the load engine: small, so that gets miss.
    pub load_block_cache_bytes: usize,
    /// Memtable budget per shard of both engines.
    pub memtable_bytes_max: usize,
    pub load_writers_per_shard: usize,
    pub load_batch_ops: usize,
    pub raw_read_file_bytes: u64,
    pub compact_after_load: bool,
    pub keep_data: bool,
    pub seed: u64,
}

impl EngineBenchConfig {
    pub fn new(dir: PathBuf, short: bool) -> Self {
        EngineBenchConfig {
            dir,
            keys: if short { 500_000 } else { 10_000_000 },
            value_bytes: 100,
            shards: 0,
            writers_per_shard: 64,
            concurrent_duration: Duration::from_secs(if short { 3 } else { 10 }),
            single_writer_ops: if short { 500 } else { 2_000 },
            hot_keys_per_shard: 10_000,
            cached_get_ops_per_shard: if short { 50_000 } else { 200_000 },
            outside_get_ops: if short { 5_000 } else { 20_000 },
            uncached_get_ops: if short { 2_000 } else { 10_000 },
            load_block_cache_bytes: 8 << 20,
            memtable_bytes_max: EngineConfig::default().memtable_bytes_max,
            load_writers_per_shard: 64,
            // Single-key puts: what a client does, and group commit makes them cheap enough
            // to load 10 M keys in a few minutes.
            load_batch_ops: 1,
            raw_read_file_bytes: if short { 256 << 20 } else { 1 << 30 },
            // Off by default: the figures are of the engine as background compaction leaves it
            // ("at rest"); --compact adds an explicit full compaction first.
            compact_after_load: false,
            keep_data: false,
            seed: 0x6d61_6e74_6973,
        }
    }
}

/// The parts of a shard's stats a memory figure needs to be read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsSummary {
    pub live_keys_estimate: u64,
    pub memtable_bytes: u64,
    pub memtables_frozen: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub cache_bytes: u64,
    pub flushes: u64,
    pub compactions: u64,
    pub wal_syncs: u64,
}

impl StatsSummary {
    fn of(stats: &[ShardStats]) -> Self {
        let mut s = StatsSummary::default();
        for x in stats {
            s.live_keys_estimate += x.live_keys_estimate;
            s.memtable_bytes += x.memtable_bytes;
            s.memtables_frozen += x.memtables_frozen;
            s.segments += x.segments;
            s.segment_bytes += x.segment_bytes;
            s.cache_bytes += x.cache_bytes;
            s.flushes += x.flushes;
            s.compactions += x.compactions;
            s.wal_syncs += x.wal_syncs;
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryFigures {
    pub shards: usize,
    pub block_cache_bytes_per_shard: usize,
    pub memtable_bytes_max_per_shard: usize,
    /// shards × (block cache + memtable budget) + 64 MiB.
    pub budget_bytes: u64,
    /// Before the load engine was opened.
    pub baseline: MemorySample,
    /// With the keys loaded: right after the load, after flushing the memtables, and after a
    /// full compaction (when run).
    pub points: Vec<MemoryPoint>,
    /// How long background compaction took to come to rest after the flush.
    pub settled: settle::Settled,
    /// After the uncached gets and a malloc_trim: not a budget figure, a diagnostic of how
    /// much resident memory was freed heap that glibc had kept.
    pub after_trim: MemorySample,
}

impl MemoryFigures {
    /// The largest VmRSS seen with the keys loaded: the figure the budget is checked against.
    pub fn rss_max_bytes(&self) -> u64 {
        self.points
            .iter()
            .map(|p| p.memory.vm_rss_bytes)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryPoint {
    pub label: &'static str,
    pub memory: MemorySample,
    /// What the engine accounts for at that moment (memtables, cache, segments).
    pub stats: StatsSummary,
}

fn memory_point(h: &EngineHandle, label: &'static str) -> Result<MemoryPoint, BenchError> {
    let memory = memory::sample();
    let stats = StatsSummary::of(&writes::stats(h, "memory: stats")?);
    info!(
        label,
        rss_mib = memory.vm_rss_bytes >> 20,
        memtable_mib = stats.memtable_bytes >> 20,
        "memory"
    );
    Ok(MemoryPoint {
        label,
        memory,
        stats,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineFigures {
    pub shards: usize,
    pub load: LoadFigures,
    pub memory: MemoryFigures,
    pub uncached_get: UncachedGetFigures,
    pub single_writer: SingleWriterFigures,
    pub concurrent: ConcurrentFigures,
    pub cached_get: CachedGetFigures,
}

/// Background work counts as finished after this long without a flush or compaction.
const SETTLE_QUIET: Duration = Duration::from_secs(3);
/// The longest we wait for it before measuring anyway (and saying so).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Slack allowed above the configured budgets: code, stacks, executors, the bench itself.
pub const MEMORY_SLACK_BYTES: u64 = 64 << 20;

pub fn run(cfg: &EngineBenchConfig) -> Result<EngineFigures, BenchError> {
    task::install_panic_watch();
    std::fs::create_dir_all(&cfg.dir).map_err(|e| BenchError::DataDir {
        path: cfg.dir.clone(),
        reason: e.to_string(),
    })?;
    let res = run_phases(cfg);
    // Every engine is dropped (stopped) by now, even after an error: its files can go. A
    // failed 10 M-key run leaves about 1 GiB behind otherwise.
    if !cfg.keep_data {
        let _ = std::fs::remove_dir_all(&cfg.dir);
    }
    res
}

fn run_phases(cfg: &EngineBenchConfig) -> Result<EngineFigures, BenchError> {
    let (load, memory, uncached_get) = load_phase(cfg)?;
    let (single_writer, concurrent, cached_get) = hot_phase(cfg)?;
    Ok(EngineFigures {
        shards: memory.shards,
        load,
        memory,
        uncached_get,
        single_writer,
        concurrent,
        cached_get,
    })
}

fn open(
    dir: &Path,
    cfg: &EngineBenchConfig,
    block_cache_bytes: usize,
) -> Result<Engine, BenchError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| BenchError::DataDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let engine_cfg = EngineConfig {
        data_dir: dir.to_path_buf(),
        shards: cfg.shards,
        memtable_bytes_max: cfg.memtable_bytes_max,
        block_cache_bytes,
        ..EngineConfig::default()
    };
    info!(dir = %dir.display(), block_cache_bytes, memtable_bytes_max = cfg.memtable_bytes_max, "opening engine");
    Engine::open(engine_cfg).map_err(engine_err("open"))
}

fn close(engine: Engine, dir: &Path, keep: bool) -> Result<(), BenchError> {
    engine.shutdown().map_err(engine_err("shutdown"))?;
    if !keep {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

fn load_phase(
    cfg: &EngineBenchConfig,
) -> Result<(LoadFigures, MemoryFigures, UncachedGetFigures), BenchError> {
    let dir = cfg.dir.join("load");
    let baseline = memory::sample();
    let engine = open(&dir, cfg, cfg.load_block_cache_bytes)?;
    let h = engine.handle();
    let shards = h.shard_count();
    info!(keys = cfg.keys, shards, "load phase");
    let load = load::load(
        &h,
        load::LoadConfig {
            keys: cfg.keys,
            value_bytes: cfg.value_bytes,
            writers_per_shard: cfg.load_writers_per_shard,
            batch_ops: cfg.load_batch_ops,
        },
    )?;
    let mut points = vec![memory_point(&h, "after load")?];
    task::call(&h, "load: flush", |h| async move { h.flush().await })?;
    points.push(memory_point(&h, "after flush")?);
    if cfg.compact_after_load {
        task::call(&h, "load: compact", |h| async move { h.compact().await })?;
        points.push(memory_point(&h, "after compaction")?);
    }
    let settled = settle::wait_for_quiet(&h, SETTLE_QUIET, SETTLE_TIMEOUT)?;
    points.push(memory_point(&h, "at rest")?);
    info!("uncached gets");
    let uncached = reads::uncached_gets(
        &h,
        reads::UncachedRun {
            prefix: load::LOAD_PREFIX,
            keys_loaded: cfg.keys,
            ops: cfg.uncached_get_ops,
            value_bytes: cfg.value_bytes,
            raw_path: cfg.dir.join("raw-read.dat"),
            raw_file_bytes: cfg.raw_read_file_bytes,
            seed: cfg.seed,
        },
    )?;
    // Diagnostic, after every figure of this engine: how much of VmRSS glibc kept as free heap.
    memory::trim_heap();
    let after_trim = memory::sample();
    close(engine, &dir, cfg.keep_data)?;
    let budget_bytes = shards as u64 * (cfg.load_block_cache_bytes + cfg.memtable_bytes_max) as u64
        + MEMORY_SLACK_BYTES;
    let memory = MemoryFigures {
        shards,
        block_cache_bytes_per_shard: cfg.load_block_cache_bytes,
        memtable_bytes_max_per_shard: cfg.memtable_bytes_max,
        budget_bytes,
        baseline,
        points,
        settled,
        after_trim,
    };
    Ok((load, memory, uncached))
}

fn hot_phase(
    cfg: &EngineBenchConfig,
) -> Result<(SingleWriterFigures, ConcurrentFigures, CachedGetFigures), BenchError> {
    let dir = cfg.dir.join("hot");
    let engine = open(&dir, cfg, EngineConfig::default().block_cache_bytes)?;
    let h = engine.handle();
    info!("single writer");
    let single =
        writes::single_writer(&h, cfg.dir.clone(), cfg.single_writer_ops, cfg.value_bytes)?;
    info!(
        writers_per_shard = cfg.writers_per_shard,
        "concurrent writers"
    );
    let concurrent = writes::concurrent_writers(
        &h,
        cfg.writers_per_shard,
        cfg.concurrent_duration,
        cfg.value_bytes,
    )?;
    info!("cached gets");
    let cached = reads::cached_gets(
        &h,
        cfg.hot_keys_per_shard,
        cfg.cached_get_ops_per_shard,
        cfg.outside_get_ops,
        cfg.value_bytes,
        cfg.seed,
    )?;
    close(engine, &dir, cfg.keep_data)?;
    Ok((single, concurrent, cached))
}

/// The issue-2 targets, each against the raw figure measured alongside it (interleaved on the
/// same executor); the stand-alone disk figures of the run are quoted in the rule for context.
pub fn targets(disk: &DiskFigures, e: &EngineFigures) -> Vec<TargetCheck> {
    let sw = &e.single_writer;
    let un = &e.uncached_get;
    let mem = &e.memory;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    vec![
        TargetCheck::at_most(
            "durable single-writer put p50",
            sw.put.p50_us,
            1.3 * sw.raw_write_fdatasync.p50_us,
            "µs",
            format!(
                "1.3 × interleaved raw write+fdatasync p50 {:.1} µs (stand-alone {:.1} µs)",
                sw.raw_write_fdatasync.p50_us, disk.write_fdatasync.p50_us
            ),
        ),
        TargetCheck::at_least(
            "64 writers/shard throughput",
            e.concurrent.ops_per_sec,
            20.0 * sw.put_ops_per_sec,
            "ops/s",
            format!("20 × single writer {:.0} ops/s", sw.put_ops_per_sec),
        ),
        TargetCheck::at_most(
            "cached get p99 (on shard)",
            e.cached_get.on_shard.p99_us,
            20.0,
            "µs",
            "fixed 20 µs".to_string(),
        ),
        TargetCheck::at_most(
            "uncached get p99",
            un.get.p99_us,
            2.0 * un.raw_random_read.p99_us,
            "µs",
            format!(
                "2 × interleaved raw 4 KiB random read p99 {:.1} µs (stand-alone {:.1} µs)",
                un.raw_random_read.p99_us, disk.random_read.p99_us
            ),
        ),
        TargetCheck::at_most(
            &format!("VmRSS with {} keys loaded", e.load.keys),
            mib(mem.rss_max_bytes()),
            mib(mem.budget_bytes),
            "MiB",
            format!(
                "{} shards × ({} MiB cache + {} MiB memtable) + 64 MiB; largest VmRSS of {}",
                mem.shards,
                mem.block_cache_bytes_per_shard >> 20,
                mem.memtable_bytes_max_per_shard >> 20,
                mem.points
                    .iter()
                    .map(|p| p.label)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        TargetCheck::at_most(
            "peak VmRSS while loading (info)",
            mib(e.load.vm_rss_max_bytes.max(mem.rss_max_bytes())),
            mib(mem.budget_bytes),
            "MiB",
            "same budget, applied to the largest VmRSS sampled during the load (stricter reading)"
                .to_string(),
        ),
    ]
}
