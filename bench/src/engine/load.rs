//! Bulk load: N keys through the ordinary durable write path (write_batch), every shard
//! loading its own keys on its own executor, with progress on the terminal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use mantis_engine::{BatchOp, EngineHandle};
use serde::Serialize;
use tracing::info;

use crate::engine::task::{engine_err, start_on};
use crate::engine::{keys, memory};
use crate::error::BenchError;

pub const LOAD_PREFIX: &[u8; 4] = b"load";
/// How often the terminal progress is refreshed while the shards load.
const PROGRESS_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    pub keys: u64,
    pub value_bytes: usize,
    pub writers_per_shard: usize,
    pub batch_ops: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    pub keys: u64,
    pub value_bytes: usize,
    pub writers_per_shard: usize,
    pub batch_ops: usize,
    pub seconds: f64,
    pub keys_per_sec: f64,
    /// Largest VmRSS and heap in use seen while loading (sampled every 250 ms).
    pub vm_rss_max_bytes: u64,
    pub heap_in_use_max_bytes: u64,
}

pub fn load(h: &EngineHandle, cfg: LoadConfig) -> Result<LoadFigures, BenchError> {
    assert!(cfg.writers_per_shard > 0 && cfg.batch_ops > 0);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = (0..h.shard_count())
        .map(|shard| {
            let (h2, done) = (h.clone(), done.clone());
            start_on(h, shard, "load", move || async move {
                load_shard(h2, shard, cfg, done).await
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bar = ProgressBar::new(cfg.keys);
    bar.set_style(
        ProgressStyle::with_template("load {bar:40} {pos}/{len} keys {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut loaded = 0u64;
    let (mut vm_rss_max_bytes, mut heap_in_use_max_bytes) = (0, 0);
    let mut next_log = cfg.keys / 10;
    while !tasks.is_empty() {
        let mut still_running = Vec::with_capacity(tasks.len());
        for t in tasks {
            match t.wait_timeout(PROGRESS_POLL)? {
                Some(n) => loaded += n,
                None => still_running.push(t),
            }
        }
        tasks = still_running;
        let m = memory::sample();
        vm_rss_max_bytes = vm_rss_max_bytes.max(m.vm_rss_bytes);
        heap_in_use_max_bytes = heap_in_use_max_bytes.max(m.heap_in_use_bytes);
        let pos = done.load(Ordering::Relaxed);
        bar.set_position(pos);
        if pos >= next_log && next_log > 0 {
            info!(keys = pos, secs = started.elapsed().as_secs(), "loading");
            next_log += cfg.keys / 10;
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(loaded, cfg.keys, "every index belongs to exactly one shard");
    Ok(LoadFigures {
        keys: loaded,
        value_bytes: cfg.value_bytes,
        writers_per_shard: cfg.writers_per_shard,
        batch_ops: cfg.batch_ops,
        seconds,
        keys_per_sec: loaded as f64 / seconds.max(1e-9),
        vm_rss_max_bytes,
        heap_in_use_max_bytes,
    })
}

async fn load_shard(
    h: EngineHandle,
    shard: usize,
    cfg: LoadConfig,
    done: Arc<AtomicU64>,
) -> Result<u64, BenchError> {
    let tasks: Vec<_> = (0..cfg.writers_per_shard)
        .map(|w| {
            let (h, done) = (h.clone(), done.clone());
            glommio::spawn_local(async move { load_writer(h, shard, w as u64, cfg, done).await })
        })
        .collect();
    let mut loaded = 0;
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(n) => loaded += n,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(loaded), Err)
}

/// One durable write: a plain put for a single op (the path clients use most), a batch otherwise.
async fn write(h: &EngineHandle, mut ops: Vec<BatchOp>) -> Result<(), BenchError> {
    let res = match (ops.len(), ops.pop()) {
        (
            1,
            Some(BatchOp::Put {
                key,
                value,
                expires_at_ms,
            }),
        ) => h.put_expiring_at(key, value, expires_at_ms).await,
        (_, Some(last)) => {
            ops.push(last);
            h.write_batch(ops).await
        }
        (_, None) => Ok(()),
    };
    res.map_err(engine_err("load"))
}

/// Writer `w` of a shard: indexes `w`, `w + writers`, ... below `cfg.keys` whose key lives on
/// `shard`, in batches of `cfg.batch_ops`.
async fn load_writer(
    h: EngineHandle,
    shard: usize,
    w: u64,
    cfg: LoadConfig,
    done: Arc<AtomicU64>,
) -> Result<u64, BenchError> {
    let mut batch = Vec::with_capacity(cfg.batch_ops);
    let mut loaded = 0;
    let mut i = w;
    while i < cfg.keys {
        let key = keys::key(LOAD_PREFIX, i);
        if h.shard_for(&key) == shard {
            batch.push(BatchOp::Put {
                key,
                value: keys::value(i, cfg.value_bytes),
                expires_at_ms: None,
            });
        }
        i += cfg.writers_per_shard as u64;
        if batch.len() == cfg.batch_ops || (i >= cfg.keys && !batch.is_empty()) {
            let n = batch.len() as u64;
            write(
                &h,
                std::mem::replace(&mut batch, Vec::with_capacity(cfg.batch_ops)),
            )
            .await?;
            loaded += n;
            done.fetch_add(n, Ordering::Relaxed);
        }
        glommio::yield_if_needed().await;
    }
    Ok(loaded)
}
