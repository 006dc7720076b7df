#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Power cuts during recovery itself — while a torn tail is zeroed, while a repair copies the
//! damaged part away and cuts the log — at every storage call in turn: the next recovery
//! still replays every good record, and the repair's copy of the cut bytes is never lost.

mod common;

use std::path::PathBuf;

use common::*;
use mantis_storage::{OpenMode, SimStorage, BLOCK_SIZE};
use mantis_wal::frame::ChunkHeader;
use mantis_wal::{verify, WalConfig, LOST_MAGIC};

const SEED: u64 = 51;
const RECORDS: u64 = 40;
const BAD_LSN: u64 = 20;
const CALLS_MAX: u64 = 5000;

fn repair_cfg() -> WalConfig {
    WalConfig {
        repair: true,
        ..small_cfg()
    }
}

fn find_chunk(sim: &SimStorage, lsn: u64) -> (PathBuf, u64) {
    for f in sim_segments(sim) {
        let data = sim.contents(&f).unwrap();
        for (i, b) in data.chunks(BLOCK_SIZE).enumerate() {
            if ChunkHeader::decode(b).is_ok_and(|h| h.first_lsn == lsn) {
                return (f, (i * BLOCK_SIZE) as u64);
            }
        }
    }
    panic!("no chunk for LSN {lsn}");
}

/// A log of 3 KB records over several segments, damaged as asked; returns where.
fn damaged_log(middle: bool) -> (SimStorage, PathBuf, u64) {
    let sim = SimStorage::new(SEED);
    let s = sim.clone();
    let (file, off) = run(move || async move {
        let (wal, _, _) = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        for i in 0..RECORDS {
            wal.append(3, payload(SEED, i, 3000)).await.unwrap();
        }
        wal.close().await.unwrap();
        drop(wal);
        if middle {
            let (file, off) = find_chunk(&s, BAD_LSN);
            s.flip_bit(&file, off + 700, 5).unwrap();
            (file, off)
        } else {
            // The last chunk lost its second half.
            let (file, off) = find_chunk(&s, RECORDS);
            let f = s.handle().open(&file, OpenMode::ReadWrite).await.unwrap();
            f.write_at(off, &[0u8; BLOCK_SIZE]).await.unwrap();
            f.write_at(off, &payload(1, 2, BLOCK_SIZE)).await.unwrap();
            f.sync().await.unwrap();
            (file, off)
        }
    });
    (sim, file, off)
}

/// Runs recovery with the power cut at the `calls`-th storage call, then recovers for real
/// and checks the outcome. Returns whether the first recovery finished before the cut.
fn cut_during_recovery(middle: bool, calls: u64) -> bool {
    let (sim, damaged_file, cut_off) = damaged_log(middle);
    let original = sim.contents(&damaged_file).unwrap();
    run(move || async move {
        let power = PowerSwitch::new(&sim);
        power.cut_after(calls);
        let first = futures_lite::future::or(
            async {
                open_collect(power.handle(), &wal_path(), repair_cfg(), 0)
                    .await
                    .map(|_| ())
            },
            async {
                wait_until("power cut", || power.is_off()).await;
                Ok(())
            },
        )
        .await;
        first.unwrap_or_else(|e| panic!("cut after {calls} calls: {e}"));
        let finished = !power.is_off();
        power.cut(); // whatever still runs of the first recovery stops here
        let good = if middle { BAD_LSN - 1 } else { RECORDS - 1 };
        let (wal, replayed, _) = open_collect(sim.handle(), &wal_path(), repair_cfg(), 0)
            .await
            .unwrap_or_else(|e| panic!("cut after {calls} calls: recovery: {e}"));
        let lsns: Vec<u64> = replayed.iter().map(|r| r.lsn).collect();
        assert_eq!(
            lsns,
            (1..=good).collect::<Vec<_>>(),
            "cut after {calls} calls"
        );
        assert_eq!(wal.append(1, vec![7; 10]).await.unwrap(), good + 1);
        wal.close().await.unwrap();
        let v = verify(&*sim.handle(), &wal_path(), 0).await.unwrap();
        assert!(
            v.is_clean() && v.torn_tail.is_none(),
            "cut after {calls} calls: {v:?}"
        );
        if middle {
            // Some lost file holds the damaged chunk, as it was, from its first block on.
            let want = &original[cut_off as usize..cut_off as usize + BLOCK_SIZE];
            let kept = sim_files_with_suffix(&sim, ".bin").iter().any(|f| {
                let c = sim.contents(f).unwrap();
                c.len() >= 2 * BLOCK_SIZE
                    && c[..8] == LOST_MAGIC
                    && &c[BLOCK_SIZE..2 * BLOCK_SIZE] == want
            });
            assert!(
                kept,
                "cut after {calls} calls: the copy of the cut bytes is gone"
            );
        }
        finished
    })
}

#[test]
fn power_cut_at_every_step_of_a_repair() {
    let steps = (0..CALLS_MAX)
        .find(|&n| cut_during_recovery(true, n))
        .expect("recovery finishes");
    eprintln!("repair: power cut at each of {steps} storage calls");
    assert!(steps > 10, "the repair took {steps} storage calls");
}

#[test]
fn power_cut_at_every_step_of_a_torn_tail_truncation() {
    let steps = (0..CALLS_MAX)
        .find(|&n| cut_during_recovery(false, n))
        .expect("recovery finishes");
    eprintln!("torn tail: power cut at each of {steps} storage calls");
    assert!(steps > 10, "the recovery took {steps} storage calls");
}
