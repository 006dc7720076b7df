//! Issue 10: measured RPO exposure under a sustained write load.
//!
//! `cargo run -p mantis-backup --example rpo_exposure -- LEVEL SECONDS`
//! (LEVEL: zero|minimal|low|medium|high). A 2-shard engine on O_DIRECT files in /var/tmp,
//! one writer thread putting 1 KiB values as fast as it can, the archiver shipping to a
//! local directory on the same disk. The archiver's status is sampled every 10 ms; the
//! output is the exposure's median, p99 and maximum, the share of samples in breach,
//! writes/s and what was archived.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mantis_backup::archive::{Archiver, ArchiverConfig, RpoLevel, ShardLink};
use mantis_backup::LocalDir;
use mantis_engine::{Engine, EngineConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let level = RpoLevel::parse(args.get(1).map_or("minimal", |s| s))
        .ok_or("level: zero, minimal, low, medium or high")?;
    let seconds: u64 = match args.get(2) {
        Some(s) => s.parse()?,
        None => 10,
    };
    let tmp = tempfile::tempdir_in("/var/tmp")?;
    let engine = Engine::open(EngineConfig {
        data_dir: tmp.path().join("data"),
        shards: 2,
        pin_cpus: false,
        ..EngineConfig::default()
    })?;
    let h = engine.handle();
    let links = futures::executor::block_on(h.attach_archive_gates(&[0, 0]))?
        .into_iter()
        .map(|(gate, wal_dir)| ShardLink { gate, wal_dir })
        .collect();
    let archiver = Archiver::start(
        ArchiverConfig::new(level),
        Box::new(LocalDir::new(tmp.path().join("archive"))),
        links,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (h, stop, written) = (h.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let value = vec![b'v'; 1024];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                futures::executor::block_on(h.put(
                    format!("k{i:012}").into_bytes(),
                    value.clone(),
                    None,
                ))
                .map_err(|e| format!("write {i}: {e}"))?;
                written.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        })
    };
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut breached = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        let s = archiver.status();
        samples.push(s.exposure_max_ms);
        breached += usize::from(s.state == "breached");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().map_err(|_| "writer thread panicked")??;
    let s = archiver.status();
    samples.sort_unstable();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let writes = written.load(Ordering::Relaxed);
    println!(
        "level={:?} target_ms={} seconds={seconds} writes={writes} writes_per_s={:.0} \
         exposure_ms p50={} p99={} max={} samples={} breached_samples={breached} \
         pieces={} archived_mib={:.1} breaches_total={}",
        level,
        level.target_ms(),
        writes as f64 / seconds as f64,
        pick(0.5),
        pick(0.99),
        samples.last().copied().unwrap_or(0),
        samples.len(),
        s.shards.iter().map(|x| x.pieces_archived).sum::<u64>(),
        s.shards.iter().map(|x| x.bytes_archived).sum::<u64>() as f64 / (1 << 20) as f64,
        s.compliance.breaches_total,
    );
    archiver.stop();
    engine.shutdown()?;
    Ok(())
}
