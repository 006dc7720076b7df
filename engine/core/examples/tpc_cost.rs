//! Issue 9: the cost of a 2-shard batch (two-phase commit) against a 2-key batch on one shard
//! (the fast path), on the real disk (DmaStorage under /var/tmp), one client, interleaved.
//! `cargo run --release -p mantis-engine --example tpc_cost [batches]`
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use mantis_engine::{BatchOp, Engine, EngineConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batches: usize = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 300,
    };
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let engine = Engine::open(EngineConfig {
        data_dir: dir.path().to_path_buf(),
        shards: 2,
        pin_cpus: false,
        ..EngineConfig::default()
    })?;
    let h = engine.handle();
    // Two keys on one shard, and two keys on different shards.
    let key = |i: usize| format!("key/{i}").into_bytes();
    let same: Vec<Vec<u8>> = (0..)
        .map(key)
        .filter(|k| h.shard_for(k) == 0)
        .take(2)
        .collect();
    let a = (0..)
        .map(key)
        .find(|k| h.shard_for(k) == 0)
        .ok_or("no key on shard 0")?;
    let b = (0..)
        .map(key)
        .find(|k| h.shard_for(k) == 1)
        .ok_or("no key on shard 1")?;
    let cross = vec![a, b];
    let batch = |keys: &[Vec<u8>], i: usize| -> Vec<BatchOp> {
        keys.iter()
            .map(|k| BatchOp::Put {
                key: k.clone(),
                value: format!("value {i}").into_bytes(),
                expires_at_ms: None,
            })
            .collect()
    };
    let (mut one_us, mut two_us) = (Vec::new(), Vec::new());
    for i in 0..batches {
        let t = Instant::now();
        futures::executor::block_on(h.write_batch(batch(&same, i)))?;
        one_us.push(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        futures::executor::block_on(h.write_batch(batch(&cross, i)))?;
        two_us.push(t.elapsed().as_micros() as u64);
    }
    let pct = |v: &mut Vec<u64>, p: f64| {
        v.sort_unstable();
        v[((v.len() - 1) as f64 * p) as usize]
    };
    for (name, v) in [
        ("1-shard batch", &mut one_us),
        ("2-shard batch (2PC)", &mut two_us),
    ] {
        println!(
            "{name}: {} batches, p50 {} us, p99 {} us",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    engine.shutdown()?;
    Ok(())
}
