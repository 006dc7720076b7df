#![allow(clippy::unwrap_used)]
//! Torn tails at random byte offsets: recovery keeps every whole chunk before the damage,
//! zeroes the rest, counts it, and the log goes on cleanly.

mod common;

use std::path::PathBuf;

use common::*;
use mantis_storage::{align_up, OpenMode, SimStorage, BLOCK_SIZE};
use mantis_wal::{segment_file_name, WalConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn cfg() -> WalConfig {
    WalConfig {
        segment_size_bytes: 1 << 20,
        ..small_cfg()
    }
}

/// Appends records of `sizes` one at a time (one chunk each) and returns each chunk's end
/// offset in the single segment.
fn write_log(seed: u64, sim: &SimStorage, sizes: &[usize]) -> Vec<u64> {
    let sim = sim.clone();
    let sizes = sizes.to_vec();
    run(move || async move {
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), cfg(), 0)
            .await
            .unwrap();
        let mut ends = Vec::new();
        let mut pos = 0u64;
        for (i, &n) in sizes.iter().enumerate() {
            wal.append(0, payload(seed, i as u64, n)).await.unwrap();
            pos += align_up(40 + 17 + n.max(8)) as u64;
            ends.push(pos);
        }
        assert_eq!(wal.stats().current_segment_offset_bytes, pos, "seed {seed}");
        wal.close().await.unwrap();
        ends
    })
}

/// Reopens, checks the replay is exactly the first `keep` records, and the torn bytes.
fn reopen_and_check(seed: u64, sim: &SimStorage, keep: usize, torn_expected: bool) {
    let sim = sim.clone();
    run(move || async move {
        let (wal, replayed, report) = open_collect(sim.handle(), &wal_path(), cfg(), 0)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(replayed.len(), keep, "seed {seed}: records kept");
        for (i, r) in replayed.iter().enumerate() {
            assert_eq!(r.lsn, i as u64 + 1, "seed {seed}");
            assert_eq!(
                check_payload(seed, &r.payload),
                Some(i as u64),
                "seed {seed}"
            );
        }
        assert_eq!(
            report.torn_tail_bytes > 0,
            torn_expected,
            "seed {seed}: {report:?}"
        );
        assert_eq!(
            wal.stats().torn_tails_truncated,
            u64::from(torn_expected),
            "seed {seed}"
        );
        let lsn = wal.append(1, payload(seed, 999, 50)).await.unwrap();
        assert_eq!(lsn, keep as u64 + 1, "seed {seed}");
        wal.close().await.unwrap();
        drop(wal);
        let (_wal, replayed, report) = open_collect(sim.handle(), &wal_path(), cfg(), 0)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: second reopen: {e}"));
        assert_eq!(
            report.torn_tail_bytes, 0,
            "seed {seed}: tail was not zeroed"
        );
        assert_eq!(replayed.len(), keep + 1, "seed {seed}");
        assert_eq!(
            check_payload(seed, &replayed[keep].payload),
            Some(999),
            "seed {seed}"
        );
    });
}

fn segment() -> PathBuf {
    wal_path().join(segment_file_name(1))
}

#[test]
fn truncation_at_random_offsets() {
    for seed in 0..60u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let sizes: Vec<usize> = (0..rng.gen_range(1..25))
            .map(|_| rng.gen_range(0..12_000))
            .collect();
        let sim = SimStorage::new(seed);
        let ends = write_log(seed, &sim, &sizes);
        let total = *ends.last().unwrap();
        let cut = rng.gen_range(0..total);
        sim.truncate_file(&segment(), cut).unwrap();
        let keep = ends.iter().filter(|&&e| e <= cut).count();
        let boundary = if keep == 0 { 0 } else { ends[keep - 1] };
        reopen_and_check(seed, &sim, keep, cut > boundary);
    }
}

#[test]
fn lost_blocks_in_the_last_chunk() {
    for seed in 100..160u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut sizes: Vec<usize> = (0..rng.gen_range(0..10))
            .map(|_| rng.gen_range(0..5000))
            .collect();
        // The last chunk spans several blocks; one of them never reached the disk.
        sizes.push(rng.gen_range(9000..30_000));
        let sim = SimStorage::new(seed);
        let ends = write_log(seed, &sim, &sizes);
        let start = if ends.len() > 1 {
            ends[ends.len() - 2]
        } else {
            0
        };
        let blocks = (ends[ends.len() - 1] - start) / BLOCK_SIZE as u64;
        let lost = start + rng.gen_range(0..blocks) * BLOCK_SIZE as u64;
        let s2 = sim.clone();
        run(move || async move {
            let f = s2
                .handle()
                .open(&segment(), OpenMode::ReadWrite)
                .await
                .unwrap();
            f.write_at(lost, &[0u8; BLOCK_SIZE]).await.unwrap();
            f.sync().await.unwrap();
        });
        reopen_and_check(seed, &sim, sizes.len() - 1, true);
    }
}
