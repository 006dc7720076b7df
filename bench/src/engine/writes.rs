//! Durable write figures: one writer (interleaved op by op with raw write + fdatasync on the
//! same executor, so both see the same disk at the same moment), and many writers per shard
//! (group commit).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mantis_engine::{EngineHandle, ShardStats};
use serde::Serialize;

use crate::disk::{self, WARMUP_OPS};
use crate::engine::keys;
use crate::engine::task::{self, engine_err, on_every_shard, owned_index, start_on};
use crate::error::BenchError;
use crate::hist::{LatencyHist, LatencySummary};

const SOLO_PREFIX: &[u8; 4] = b"solo";
const CONC_PREFIX: &[u8; 4] = b"conc";
/// Size of the raw file the interleaved raw writes cycle through (preallocated, zero-filled).
const RAW_WRITE_FILE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct SingleWriterFigures {
    pub shard: usize,
    /// Engine `put` (durable), measured on the owning shard.
    pub put: LatencySummary,
    /// Raw 4 KiB O_DIRECT write + fdatasync, alternating op by op with the puts.
    pub raw_write_fdatasync: LatencySummary,
    /// One writer's throughput: puts / time spent in puts.
    pub put_ops_per_sec: f64,
}

/// One writer on shard 0, alternating raw write + fdatasync and engine put.
pub fn single_writer(
    h: &EngineHandle,
    raw_dir: PathBuf,
    ops: usize,
    value_bytes: usize,
) -> Result<SingleWriterFigures, BenchError> {
    let shard = 0;
    let hc = h.clone();
    start_on(h, shard, "single writer", move || async move {
        single_writer_on_shard(hc, shard, raw_dir, ops, value_bytes).await
    })?
    .wait()
}

async fn single_writer_on_shard(
    h: EngineHandle,
    shard: usize,
    raw_dir: PathBuf,
    ops: usize,
    value_bytes: usize,
) -> Result<SingleWriterFigures, BenchError> {
    let raw_path = raw_dir.join("raw-write.dat");
    let raw = disk::create_filled(&raw_path, RAW_WRITE_FILE_BYTES, 0).await?;
    let raw_blocks = RAW_WRITE_FILE_BYTES / disk::IO_BYTES as u64;
    let mut put_hist = LatencyHist::new();
    let mut raw_hist = LatencyHist::new();
    let mut put_time = Duration::ZERO;
    let mut index = 0u64;
    let mut result = Ok(());
    for op in 0..(WARMUP_OPS + ops) {
        let t = match disk::write_sync_once(&raw, &raw_path, op as u64 % raw_blocks, op as u8).await
        {
            Ok(t) => t,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        index = owned_index(&h, SOLO_PREFIX, shard, index + 1, 1);
        let key = keys::key(SOLO_PREFIX, index);
        let value = keys::value(index, value_bytes);
        let t0 = Instant::now();
        if let Err(e) = h.put(key, value, None).await {
            result = Err(engine_err("single writer put")(e));
            break;
        }
        let elapsed = t0.elapsed();
        if op >= WARMUP_OPS {
            raw_hist.record(t.write + t.sync);
            put_hist.record(elapsed);
            put_time += elapsed;
        }
        glommio::yield_if_needed().await;
    }
    disk::close_and_remove(raw, &raw_path).await?;
    result?;
    Ok(SingleWriterFigures {
        shard,
        put: put_hist.summary(),
        raw_write_fdatasync: raw_hist.summary(),
        put_ops_per_sec: ops as f64 / put_time.as_secs_f64().max(1e-9),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ConcurrentFigures {
    pub shards: usize,
    pub writers_per_shard: usize,
    pub duration_s: f64,
    pub puts: u64,
    /// All shards together.
    pub ops_per_sec: f64,
    pub ops_per_sec_per_shard: Vec<f64>,
    pub put: LatencySummary,
    /// fdatasyncs issued by the WALs during the phase, and records per sync: the group commit.
    pub wal_syncs: u64,
    pub wal_records: u64,
    pub records_per_sync: f64,
}

struct ShardRun {
    puts: u64,
    elapsed: Duration,
    hist: LatencyHist,
}

/// `writers_per_shard` writers on every shard, each putting in a loop for `duration`.
pub fn concurrent_writers(
    h: &EngineHandle,
    writers_per_shard: usize,
    duration: Duration,
    value_bytes: usize,
) -> Result<ConcurrentFigures, BenchError> {
    assert!(writers_per_shard > 0);
    let before = stats(h, "concurrent writers: stats")?;
    let hc = h.clone();
    let runs = on_every_shard(h, "concurrent writers", move |shard| {
        let h = hc.clone();
        async move { writers_on_shard(h, shard, writers_per_shard, duration, value_bytes).await }
    })?;
    let after = stats(h, "concurrent writers: stats")?;
    let mut hist = LatencyHist::new();
    let mut puts = 0;
    let mut elapsed_max = Duration::ZERO;
    for r in &runs {
        hist.merge(&r.hist);
        puts += r.puts;
        elapsed_max = elapsed_max.max(r.elapsed);
    }
    let sum = |f: fn(&ShardStats) -> u64, s: &[ShardStats]| s.iter().map(f).sum::<u64>();
    let wal_syncs = sum(|s| s.wal_syncs, &after).saturating_sub(sum(|s| s.wal_syncs, &before));
    let wal_records =
        sum(|s| s.wal_records, &after).saturating_sub(sum(|s| s.wal_records, &before));
    Ok(ConcurrentFigures {
        shards: runs.len(),
        writers_per_shard,
        duration_s: elapsed_max.as_secs_f64(),
        puts,
        ops_per_sec: puts as f64 / elapsed_max.as_secs_f64().max(1e-9),
        ops_per_sec_per_shard: runs
            .iter()
            .map(|r| r.puts as f64 / r.elapsed.as_secs_f64().max(1e-9))
            .collect(),
        put: hist.summary(),
        wal_syncs,
        wal_records,
        records_per_sync: wal_records as f64 / wal_syncs.max(1) as f64,
    })
}

pub fn stats(h: &EngineHandle, phase: &'static str) -> Result<Vec<ShardStats>, BenchError> {
    task::call(h, phase, |h| async move { h.stats().await })
}

async fn writers_on_shard(
    h: EngineHandle,
    shard: usize,
    writers: usize,
    duration: Duration,
    value_bytes: usize,
) -> Result<ShardRun, BenchError> {
    let hist = Rc::new(RefCell::new(LatencyHist::new()));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (h, hist) = (h.clone(), hist.clone());
            glommio::spawn_local(async move {
                writer_loop(
                    h,
                    shard,
                    w as u64,
                    writers as u64,
                    deadline,
                    value_bytes,
                    hist,
                )
                .await
            })
        })
        .collect();
    let mut puts = 0;
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(n) => puts += n,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    let hist = std::mem::take(&mut *hist.borrow_mut());
    Ok(ShardRun {
        puts,
        elapsed,
        hist,
    })
}

/// One writer: keys `w`, `w + writers`, ... that live on `shard`, until `deadline`.
async fn writer_loop(
    h: EngineHandle,
    shard: usize,
    w: u64,
    writers: u64,
    deadline: Instant,
    value_bytes: usize,
    hist: Rc<RefCell<LatencyHist>>,
) -> Result<u64, BenchError> {
    let mut puts = 0;
    let mut index = owned_index(&h, CONC_PREFIX, shard, w, writers);
    while Instant::now() < deadline {
        let key = keys::key(CONC_PREFIX, index);
        let value = keys::value(index, value_bytes);
        let t0 = Instant::now();
        h.put(key, value, None)
            .await
            .map_err(engine_err("concurrent writers put"))?;
        hist.borrow_mut().record(t0.elapsed());
        puts += 1;
        index = owned_index(&h, CONC_PREFIX, shard, index + writers, writers);
        glommio::yield_if_needed().await;
    }
    Ok(puts)
}
