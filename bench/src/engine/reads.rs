//! Point-read figures: cached gets of a hot set (on the owning shard, and from an outside
//! thread), and uncached gets over a data set far bigger than the block cache, interleaved op
//! by op with raw O_DIRECT random reads on the same executor.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mantis_engine::{EngineHandle, ShardStats};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::disk::{self, WARMUP_OPS};
use crate::engine::keys;
use crate::engine::task::{self, engine_err, on_every_shard, owned_index, start_on};
use crate::engine::writes::stats;
use crate::error::BenchError;
use crate::hist::{LatencyHist, LatencySummary};

const HOT_PREFIX: &[u8; 4] = b"hot:";
/// Concurrent writers per shard when writing the hot set.
const HOT_WRITERS: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct CachedGetFigures {
    pub hot_keys: usize,
    /// Gets on the owning shard's executor (engine time), all shards merged.
    pub on_shard: LatencySummary,
    /// Gets from a plain thread through the handle (two cross-thread hops each).
    pub outside_thread: LatencySummary,
    /// Block-cache hits and misses during the on-shard measurement.
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// Writes `per_shard` hot keys on every shard, flushes them to segments, warms the block
/// cache, then measures gets of random hot keys.
pub fn cached_gets(
    h: &EngineHandle,
    per_shard: usize,
    ops_per_shard: usize,
    outside_ops: usize,
    value_bytes: usize,
    seed: u64,
) -> Result<CachedGetFigures, BenchError> {
    let hc = h.clone();
    let hot: Vec<Vec<u64>> = on_every_shard(h, "cached gets: write hot set", move |shard| {
        let h = hc.clone();
        async move { write_hot_set(h, shard, per_shard, value_bytes).await }
    })?;
    task::call(h, "cached gets: flush", |h| async move { h.flush().await })?;
    let before = stats(h, "cached gets: stats")?;
    let hc = h.clone();
    let hot_c = hot.clone();
    let hists = on_every_shard(h, "cached gets: on shard", move |shard| {
        let (h, indexes) = (hc.clone(), hot_c[shard].clone());
        async move { gets_on_shard(h, indexes, ops_per_shard, value_bytes, seed).await }
    })?;
    let after = stats(h, "cached gets: stats")?;
    let mut on_shard = LatencyHist::new();
    hists.iter().for_each(|x| on_shard.merge(x));
    let outside = gets_from_outside(h, &hot, outside_ops, value_bytes, seed)?;
    let (cache_hits, cache_misses) = cache_delta(&before, &after);
    Ok(CachedGetFigures {
        hot_keys: hot.iter().map(Vec::len).sum(),
        on_shard: on_shard.summary(),
        outside_thread: outside.summary(),
        cache_hits,
        cache_misses,
    })
}

pub fn cache_delta(before: &[ShardStats], after: &[ShardStats]) -> (u64, u64) {
    let sum = |s: &[ShardStats], f: fn(&ShardStats) -> u64| s.iter().map(f).sum::<u64>();
    (
        sum(after, |s| s.cache_hits).saturating_sub(sum(before, |s| s.cache_hits)),
        sum(after, |s| s.cache_misses).saturating_sub(sum(before, |s| s.cache_misses)),
    )
}

async fn write_hot_set(
    h: EngineHandle,
    shard: usize,
    per_shard: usize,
    value_bytes: usize,
) -> Result<Vec<u64>, BenchError> {
    let mut indexes = Vec::with_capacity(per_shard);
    let mut i = 0;
    while indexes.len() < per_shard {
        i = owned_index(&h, HOT_PREFIX, shard, i, 1);
        indexes.push(i);
        i += 1;
    }
    // Concurrent single-key puts: they share WAL syncs through group commit.
    let indexes = std::rc::Rc::new(indexes);
    let tasks: Vec<_> = (0..HOT_WRITERS)
        .map(|w| {
            let (h, indexes) = (h.clone(), indexes.clone());
            glommio::spawn_local(async move {
                for &i in indexes.iter().skip(w).step_by(HOT_WRITERS) {
                    h.put(keys::key(HOT_PREFIX, i), keys::value(i, value_bytes), None)
                        .await
                        .map_err(engine_err("cached gets: write hot set"))?;
                }
                Ok::<(), BenchError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let indexes = std::rc::Rc::try_unwrap(indexes).unwrap_or_else(|rc| rc.as_ref().clone());
    Ok(indexes)
}

/// Checks one get's answer: a benchmark that reads nothing would be fast and worthless.
fn check_value(
    phase: &'static str,
    i: u64,
    value_bytes: usize,
    got: Option<Vec<u8>>,
) -> Result<(), BenchError> {
    match got {
        Some(v) if keys::value_matches(i, value_bytes, &v) => Ok(()),
        other => Err(BenchError::Engine {
            phase,
            cause: format!(
                "key index {i}: expected a {value_bytes}-byte value, got {:?} bytes",
                other.map(|v| v.len())
            ),
        }),
    }
}

async fn gets_on_shard(
    h: EngineHandle,
    indexes: Vec<u64>,
    ops: usize,
    value_bytes: usize,
    seed: u64,
) -> Result<LatencyHist, BenchError> {
    const PHASE: &str = "cached gets: on shard";
    // Warm-up: every hot key twice, so every block is in the cache before we measure.
    for _ in 0..2 {
        for &i in &indexes {
            let got = h.get(&keys::key(HOT_PREFIX, i)).await;
            check_value(PHASE, i, value_bytes, got.map_err(engine_err(PHASE))?)?;
            glommio::yield_if_needed().await;
        }
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut hist = LatencyHist::new();
    for _ in 0..ops {
        let i = indexes[rng.gen_range(0..indexes.len())];
        let key = keys::key(HOT_PREFIX, i);
        let t0 = Instant::now();
        let got = h.get(&key).await;
        hist.record(t0.elapsed());
        check_value(PHASE, i, value_bytes, got.map_err(engine_err(PHASE))?)?;
        glommio::yield_if_needed().await;
    }
    Ok(hist)
}

fn gets_from_outside(
    h: &EngineHandle,
    hot: &[Vec<u64>],
    ops: usize,
    value_bytes: usize,
    seed: u64,
) -> Result<LatencyHist, BenchError> {
    const PHASE: &str = "cached gets: outside thread";
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut hist = LatencyHist::new();
    for op in 0..(WARMUP_OPS + ops) {
        let shard = rng.gen_range(0..hot.len());
        let i = hot[shard][rng.gen_range(0..hot[shard].len())];
        let key = keys::key(HOT_PREFIX, i);
        let t0 = Instant::now();
        let got = futures::executor::block_on(h.get(&key));
        let elapsed = t0.elapsed();
        if op >= WARMUP_OPS {
            hist.record(elapsed);
        }
        check_value(PHASE, i, value_bytes, got.map_err(engine_err(PHASE))?)?;
    }
    Ok(hist)
}

#[derive(Debug, Clone, Serialize)]
pub struct UncachedGetFigures {
    pub shard: usize,
    /// Keys the random gets choose from (the whole loaded data set).
    pub keys: u64,
    /// Engine `get` of a random loaded key, on the owning shard.
    pub get: LatencySummary,
    /// Raw 4 KiB O_DIRECT random read, alternating op by op with the gets.
    pub raw_random_read: LatencySummary,
    pub raw_read_file_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// What [`uncached_gets`] reads: random keys among `keys_loaded` loaded with `prefix`, on
/// shard 0, alternating with raw random reads of a `raw_file_bytes` file at `raw_path`.
pub struct UncachedRun {
    pub prefix: &'static [u8; 4],
    pub keys_loaded: u64,
    pub ops: usize,
    pub value_bytes: usize,
    pub raw_path: PathBuf,
    pub raw_file_bytes: u64,
    pub seed: u64,
}

pub fn uncached_gets(h: &EngineHandle, run: UncachedRun) -> Result<UncachedGetFigures, BenchError> {
    assert!(run.keys_loaded > 0 && run.raw_file_bytes >= disk::IO_BYTES as u64);
    let shard = 0;
    let (keys_loaded, raw_file_bytes) = (run.keys_loaded, run.raw_file_bytes);
    let before = stats(h, "uncached gets: stats")?;
    let hc = h.clone();
    let (get, raw) = start_on(h, shard, "uncached gets", move || async move {
        run.on_shard(hc, shard).await
    })?
    .wait()?;
    let after = stats(h, "uncached gets: stats")?;
    let (cache_hits, cache_misses) = cache_delta(&before, &after);
    Ok(UncachedGetFigures {
        shard,
        keys: keys_loaded,
        get: get.summary(),
        raw_random_read: raw.summary(),
        raw_read_file_bytes: raw_file_bytes,
        cache_hits,
        cache_misses,
    })
}

impl UncachedRun {
    async fn on_shard(
        self,
        h: EngineHandle,
        shard: usize,
    ) -> Result<(LatencyHist, LatencyHist), BenchError> {
        let raw = disk::create_filled(&self.raw_path, self.raw_file_bytes, 0x3c).await?;
        let res = self.measure(&h, shard, &raw).await;
        disk::close_and_remove(raw, &self.raw_path).await?;
        res
    }

    async fn measure(
        &self,
        h: &EngineHandle,
        shard: usize,
        raw: &glommio::io::DmaFile,
    ) -> Result<(LatencyHist, LatencyHist), BenchError> {
        const PHASE: &str = "uncached gets";
        let raw_blocks = self.raw_file_bytes / disk::IO_BYTES as u64;
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let (mut get_hist, mut raw_hist) = (LatencyHist::new(), LatencyHist::new());
        for op in 0..(WARMUP_OPS + self.ops) {
            let raw_elapsed =
                disk::read_once(raw, &self.raw_path, rng.gen_range(0..raw_blocks)).await?;
            let i = self.random_owned(h, shard, &mut rng);
            let key = keys::key(self.prefix, i);
            let t0 = Instant::now();
            let got = h.get(&key).await;
            let elapsed: Duration = t0.elapsed();
            check_value(PHASE, i, self.value_bytes, got.map_err(engine_err(PHASE))?)?;
            if op >= WARMUP_OPS {
                raw_hist.record(raw_elapsed);
                get_hist.record(elapsed);
            }
            glommio::yield_if_needed().await;
        }
        Ok((get_hist, raw_hist))
    }

    /// A uniformly random loaded index whose key lives on `shard`.
    fn random_owned(&self, h: &EngineHandle, shard: usize, rng: &mut SmallRng) -> u64 {
        loop {
            let i = rng.gen_range(0..self.keys_loaded);
            if h.shard_for(&keys::key(self.prefix, i)) == shard {
                return i;
            }
        }
    }
}
