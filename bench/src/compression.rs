//! `mantis-bench compression` (issue 7): on a generated dataset of realistic JSON documents,
//! the bytes stored with each codec (none, LZ4, Snappy, ZSTD), the cached point-get p99 with
//! LZ4 against no compression, and the foreground get p99 with the scrubber and cold
//! recompression running at their default rates against without. Rounds alternate the
//! variants, because the disk of these machines drifts between runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use mantis_engine::cold::{ColdConfig, CompressionStats};
use mantis_engine::scrub::ScrubConfig;
use mantis_engine::{Codec, Engine, EngineConfig, EngineHandle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::BenchError;
use crate::hist::LatencyHist;

#[derive(Args, Debug, Clone)]
pub struct CompressionArgs {
    /// Directory for the engine data; must be on a real filesystem (not tmpfs).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 50_000)]
    pub documents: usize,
    /// Point gets per measurement.
    #[arg(long, default_value_t = 100_000)]
    pub gets: usize,
    /// Rounds of each A/B comparison (alternating).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "shipped",
    "pending",
    "delivered",
    "returned",
    "premium",
    "standard",
    "express",
    "berlin",
    "paris",
    "london",
    "madrid",
    "rome",
    "vienna",
    "warsaw",
    "prague",
    "lisbon",
    "dublin",
];

fn word(rng: &mut SmallRng) -> &'static str {
    WORDS[rng.gen_range(0..WORDS.len())]
}

/// An order document of about 1 KiB: nested objects, arrays, timestamps, ids, free text.
pub fn document(i: usize, rng: &mut SmallRng) -> Vec<u8> {
    let items: Vec<String> = (0..rng.gen_range(2..6))
        .map(|n| {
            format!(
                r#"{{"sku":"SKU-{:06}","name":"{} {}","qty":{},"unit_price":{}.{:02},"category":"{}"}}"#,
                rng.gen_range(0..50_000),
                word(rng),
                word(rng),
                n + 1,
                rng.gen_range(1..500),
                rng.gen_range(0..100),
                word(rng)
            )
        })
        .collect();
    format!(
        r#"{{"_id":"order-{i:08}","customer":{{"id":"cust-{:06}","name":"{} {}","email":"{}.{}@example.com","address":{{"street":"{} street {}","city":"{}","zip":"{:05}","country":"EU"}}}},"status":"{}","created_at":"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z","items":[{}],"payment":{{"method":"card","currency":"EUR","total":{}.{:02}}},"notes":"{} {} {} {}","version":{}}}"#,
        rng.gen_range(0..100_000),
        word(rng),
        word(rng),
        word(rng),
        rng.gen_range(0..1000),
        word(rng),
        rng.gen_range(1..300),
        word(rng),
        rng.gen_range(10_000..99_999),
        word(rng),
        rng.gen_range(1..13),
        rng.gen_range(1..29),
        rng.gen_range(0..24),
        rng.gen_range(0..60),
        rng.gen_range(0..60),
        items.join(","),
        rng.gen_range(10..5000),
        rng.gen_range(0..100),
        word(rng),
        word(rng),
        word(rng),
        word(rng),
        rng.gen_range(1..20)
    )
    .into_bytes()
}

fn key(i: usize) -> Vec<u8> {
    format!("order-{i:08}").into_bytes()
}

fn engine_err(phase: &'static str) -> impl Fn(mantis_engine::EngineError) -> BenchError {
    move |e| BenchError::Engine {
        phase,
        cause: e.to_string(),
    }
}

fn open(dir: &Path, codec: Codec, background: bool) -> Result<Engine, BenchError> {
    open_with(dir, codec, background, 16 << 20)
}

/// Issue 7 interference runs use smaller memtables: more, smaller segments, so that cold
/// recompression (rate-limited per segment) works through the whole measurement window.
const INTERFERENCE_MEMTABLE_BYTES: usize = 4 << 20;

fn open_with(
    dir: &Path,
    codec: Codec,
    background: bool,
    memtable_bytes_max: usize,
) -> Result<Engine, BenchError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| BenchError::DataDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (scrub, cold) = if background {
        // Default rates; a pass is requested continuously and epochs are short so that
        // recompression has work during the whole measurement.
        let scrub = ScrubConfig {
            interval_secs: 1,
            ..ScrubConfig::default()
        };
        let cold = ColdConfig {
            epoch_secs: 1,
            cold_after_epochs: 1,
            ..ColdConfig::default()
        };
        (scrub, cold)
    } else {
        let scrub = ScrubConfig {
            interval_secs: 0,
            ..ScrubConfig::default()
        };
        let cold = ColdConfig {
            epoch_secs: 0,
            ..ColdConfig::default()
        };
        (scrub, cold)
    };
    let cfg = EngineConfig {
        data_dir: dir.to_path_buf(),
        shards: 1,
        compression: codec,
        memtable_bytes_max,
        block_cache_bytes: 256 << 20,
        segments_max: 64,
        scrub,
        cold,
        ..EngineConfig::default()
    };
    Engine::open(cfg).map_err(engine_err("open"))
}

fn load(h: &EngineHandle, documents: usize) -> Result<(), BenchError> {
    let mut rng = SmallRng::seed_from_u64(7);
    let batch_max = 256;
    let mut i = 0;
    while i < documents {
        let n = batch_max.min(documents - i);
        let ops = (i..i + n)
            .map(|j| mantis_engine::BatchOp::Put {
                key: key(j),
                value: document(j, &mut rng),
                expires_at_ms: None,
            })
            .collect();
        futures::executor::block_on(h.write_batch(ops)).map_err(engine_err("load"))?;
        i += n;
    }
    futures::executor::block_on(h.flush()).map_err(engine_err("flush"))
}

fn compression_stats(h: &EngineHandle) -> Result<CompressionStats, BenchError> {
    let s = futures::executor::block_on(h.stats()).map_err(engine_err("stats"))?;
    Ok(s.into_iter()
        .next()
        .map(|s| s.compression)
        .unwrap_or_default())
}

/// p99 of `gets` point gets over keys `0..hot_keys`, in µs.
fn get_p99_us(h: &EngineHandle, hot_keys: usize, gets: usize) -> Result<f64, BenchError> {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut hist = LatencyHist::new();
    for _ in 0..gets {
        let k = key(rng.gen_range(0..hot_keys));
        let t = Instant::now();
        let v = futures::executor::block_on(h.get(&k)).map_err(engine_err("get"))?;
        hist.record(t.elapsed());
        if v.is_none() {
            return Err(BenchError::Engine {
                phase: "get",
                cause: format!("{} missing", String::from_utf8_lossy(&k)),
            });
        }
    }
    Ok(hist.summary().p99_us)
}

pub fn run(args: &CompressionArgs) -> Result<(), BenchError> {
    let dir = args.dir.join("compression-bench");
    println!(
        "## Issue 7: compression ({} JSON documents)",
        args.documents
    );
    println!("\n| codec | raw data bytes | stored bytes | raw/stored |");
    println!("|---|---|---|---|");
    let codecs = [
        ("none", Codec::None),
        ("lz4", Codec::Lz4),
        ("snappy", Codec::Snappy),
        ("zstd-6 (cold)", Codec::Zstd { level: 6 }),
    ];
    for (name, codec) in codecs {
        let engine = open(&dir, codec, false)?;
        load(&engine.handle(), args.documents)?;
        let c = compression_stats(&engine.handle())?;
        let ratio = c.raw_data_bytes as f64 / c.stored_data_bytes.max(1) as f64;
        println!(
            "| {name} | {} | {} | {ratio:.2} |",
            c.raw_data_bytes, c.stored_data_bytes
        );
        engine.shutdown().map_err(engine_err("shutdown"))?;
    }

    // Cached point gets: every key read once first so every block is in the cache.
    println!("\n| round | cached get p99 none (µs) | cached get p99 lz4 (µs) |");
    println!("|---|---|---|");
    let hot = args.documents;
    let mut ratios = Vec::new();
    for round in 0..args.rounds {
        let mut p99 = [0.0f64; 2];
        for (slot, codec) in [Codec::None, Codec::Lz4].into_iter().enumerate() {
            let engine = open(&dir, codec, false)?;
            load(&engine.handle(), args.documents)?;
            get_p99_us(&engine.handle(), hot, hot)?;
            p99[slot] = get_p99_us(&engine.handle(), hot, args.gets)?;
            engine.shutdown().map_err(engine_err("shutdown"))?;
        }
        ratios.push(p99[1] / p99[0]);
        println!("| {round} | {:.1} | {:.1} |", p99[0], p99[1]);
    }
    println!("\nlz4/none cached p99 ratios: {ratios:.3?}");

    interference(&dir, args)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Latency figures of one measurement, in µs.
struct Arm {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    samples: u64,
    window_ms: u128,
    recompressed_bytes: u64,
    scrubbed_bytes: u64,
}

/// Gets of every key in `0..hot_keys` in order: fills the block cache and marks the hot blocks
/// as touched, so that both arms start from the same cache state and the hot data is not
/// taken for cold by the first epoch.
fn warm_up(h: &EngineHandle, hot_keys: usize) -> Result<(), BenchError> {
    for i in 0..hot_keys {
        futures::executor::block_on(h.get(&key(i))).map_err(engine_err("warm-up"))?;
    }
    Ok(())
}

fn background_work(h: &EngineHandle) -> Result<(u64, u64), BenchError> {
    let s = futures::executor::block_on(h.stats()).map_err(engine_err("stats"))?;
    Ok((
        s.iter()
            .map(|s| s.compression.recompressed_bytes_in)
            .sum::<u64>(),
        s.iter().map(|s| s.scrub.bytes_scrubbed_total).sum::<u64>(),
    ))
}

/// One arm: a fresh engine, the documents loaded, the hot keys warmed up, then `gets` gets
/// over the hot keys (the same seeded sequence in every arm).
fn measure_arm(
    dir: &Path,
    args: &CompressionArgs,
    hot_keys: usize,
    background: bool,
) -> Result<Arm, BenchError> {
    let engine = open_with(dir, Codec::Lz4, background, INTERFERENCE_MEMTABLE_BYTES)?;
    let h = engine.handle();
    load(&h, args.documents)?;
    warm_up(&h, hot_keys)?;
    if background {
        futures::executor::block_on(h.request_scrub()).map_err(engine_err("scrub"))?;
        // Wait for an epoch to close after the warm-up, so recompression has cold segments
        // (every segment but the hot one) when the measurement starts.
        let epoch_start = compression_stats(&h)?.epoch;
        let deadline = Instant::now() + Duration::from_secs(10);
        while compression_stats(&h)?.epoch <= epoch_start && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
    let work_before = background_work(&h)?;
    let mut rng = SmallRng::seed_from_u64(11);
    let mut hist = LatencyHist::new();
    let started = Instant::now();
    for _ in 0..args.gets {
        let k = key(rng.gen_range(0..hot_keys));
        let t = Instant::now();
        let v = futures::executor::block_on(h.get(&k)).map_err(engine_err("get"))?;
        hist.record(t.elapsed());
        if v.is_none() {
            return Err(BenchError::Engine {
                phase: "get",
                cause: format!("{} missing", String::from_utf8_lossy(&k)),
            });
        }
    }
    let window_ms = started.elapsed().as_millis();
    let work_after = background_work(&h)?;
    engine.shutdown().map_err(engine_err("shutdown"))?;
    let s = hist.summary();
    Ok(Arm {
        p50_us: s.p50_us,
        p99_us: s.p99_us,
        p999_us: s.p999_us,
        max_us: s.max_us,
        samples: s.count,
        window_ms,
        recompressed_bytes: work_after.0 - work_before.0,
        scrubbed_bytes: work_after.1 - work_before.1,
    })
}

/// Foreground gets over a hot tenth of the keys, with and without the scrubber and cold
/// recompression. The arms alternate, and their order flips every round (quiet first in even
/// rounds, busy first in odd ones), because the machine's load drifts.
fn interference(dir: &Path, args: &CompressionArgs) -> Result<(), BenchError> {
    println!(
        "\n| round | arm | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | gets | window (ms) | recompressed bytes | scrubbed bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let hot = (args.documents / 10).max(1);
    let mut ratios = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut p99 = [0.0f64; 2];
        for background in order {
            let a = measure_arm(dir, args, hot, background)?;
            let name = if background { "busy" } else { "quiet" };
            println!(
                "| {round} | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
                a.p50_us,
                a.p99_us,
                a.p999_us,
                a.max_us,
                a.samples,
                a.window_ms,
                a.recompressed_bytes,
                a.scrubbed_bytes
            );
            p99[usize::from(background)] = a.p99_us;
        }
        ratios.push(p99[1] / p99[0]);
    }
    println!("\nbusy/quiet p99 ratios: {ratios:.3?}");
    Ok(())
}
