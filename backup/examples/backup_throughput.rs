//! Rough throughput of checkpoint, backup to a local directory, verify and restore:
//! `cargo run --release -p mantis-backup --example backup_throughput -- [MiB]` (default 256).
//! Data and backup live under /var/tmp (ext4); both are removed at the end.

use std::time::Instant;

use mantis_backup::{create_backup, restore, verify, BackupOptions, LocalDir};
use mantis_engine::checkpoint::{self, CheckpointKind};
use mantis_engine::{Engine, EngineConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(256);
    let work = tempfile::tempdir_in("/var/tmp")?;
    let data = work.path().join("data");
    let cfg = EngineConfig {
        data_dir: data.clone(),
        shards: 2,
        pin_cpus: false,
        ..EngineConfig::default()
    };
    let engine = Engine::open(cfg)?;
    let h = engine.handle();
    let value_bytes = 1024usize;
    let n = mib * 1024 * 1024 / value_bytes as u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in 0..n / 100 {
        let ops = (0..100)
            .map(|j| {
                let value: Vec<u8> = (0..value_bytes)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Text-like: a small alphabet, so it compresses like real values.
                        b'a' + (x % 16) as u8
                    })
                    .collect();
                mantis_engine::BatchOp::Put {
                    key: format!("key{:010}", chunk * 100 + j).into_bytes(),
                    value,
                    expires_at_ms: None,
                }
            })
            .collect();
        futures::executor::block_on(h.write_batch(ops))?;
    }
    let root = checkpoint::checkpoints_dir(&data);
    let t = Instant::now();
    let cp = futures::executor::block_on(h.checkpoint(&root, CheckpointKind::Full, None))?;
    let cp_s = t.elapsed().as_secs_f64();
    let raw = cp.total_bytes() as f64 / (1 << 20) as f64;
    let dest = LocalDir::new(work.path().join("backups"));
    let t = Instant::now();
    let m = create_backup(&dest, &root, &cp, &BackupOptions::default(), &mut |_| {})?;
    let backup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    verify(&dest, Some(&m.id), &mut |_| {})?;
    let verify_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    restore(
        &dest,
        Some(&m.id),
        &work.path().join("restored"),
        &mut |_| {},
    )?;
    let restore_s = t.elapsed().as_secs_f64();
    engine.shutdown()?;
    println!(
        "{raw:.0} MiB of segments ({} files), stored {:.0} MiB (zstd 3)",
        m.files.len(),
        m.uploaded_bytes() as f64 / (1 << 20) as f64
    );
    println!("checkpoint (flush + links): {cp_s:.2} s");
    println!("backup:  {backup_s:.2} s, {:.0} MiB/s", raw / backup_s);
    println!("verify:  {verify_s:.2} s, {:.0} MiB/s", raw / verify_s);
    println!("restore: {restore_s:.2} s, {:.0} MiB/s", raw / restore_s);
    Ok(())
}
