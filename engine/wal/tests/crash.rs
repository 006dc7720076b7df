#![allow(clippy::unwrap_used)]
//! Power cuts at random points of a concurrent append load, on the simulated disk: every
//! acknowledged record survives with its exact bytes, and what is replayed is a contiguous
//! prefix of whole records (nothing half-applied). Each seed is one reproducible run.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use common::*;
use mantis_storage::SimStorage;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SEEDS: u64 = 300;

struct Phase1 {
    acked: Vec<(u64, u64)>,
    flushed: u64,
}

fn load_then_crash(seed: u64, sim: &SimStorage) -> Phase1 {
    let sim = sim.clone();
    run(move || async move {
        let mut rng = SmallRng::seed_from_u64(seed);
        let power = PowerSwitch::new(&sim);
        let (wal, _, _) = open_collect(power.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: open: {e}"));
        let appenders = rng.gen_range(1..12u64);
        let target = rng.gen_range(1..250usize);
        let acked: Rc<RefCell<Vec<(u64, u64)>>> = Rc::default();
        let stop = Rc::new(Cell::new(false));
        for t in 0..appenders {
            let (wal, acked, stop) = (wal.clone(), acked.clone(), stop.clone());
            let mut trng = SmallRng::seed_from_u64(seed * 1000 + t);
            glommio::spawn_local(async move {
                for i in 0.. {
                    if stop.get() {
                        break;
                    }
                    let len = match trng.gen_range(0..20) {
                        0 => trng.gen_range(60_000..80_000), // bigger than a segment
                        1..=4 => trng.gen_range(4000..9000),
                        _ => trng.gen_range(8..400),
                    };
                    let id = (t << 32) | i;
                    let lsn = wal
                        .append(t as u8, payload(seed, id, len))
                        .await
                        .unwrap_or_else(|e| panic!("seed {seed}: append: {e}"));
                    acked.borrow_mut().push((lsn, id));
                }
            })
            .detach();
        }
        let mut flushed = 0;
        wait_until("acks", || {
            let a = acked.borrow();
            // Now and then, pretend a flush persisted an acknowledged prefix.
            if a.len() > 5 && rng.gen_ratio(1, 40) {
                let f = a[a.len() - 5].0.saturating_sub(rng.gen_range(0..20));
                if f > flushed {
                    flushed = f;
                    wal.mark_flushed(f);
                }
            }
            a.len() >= target
        })
        .await;
        // Stop somewhere in the middle of whatever is in flight.
        for _ in 0..rng.gen_range(0..40) {
            futures_lite::future::yield_now().await;
        }
        // The power cut: no storage call completes after this.
        power.cut();
        stop.set(true);
        let acked = acked.borrow().clone();
        Phase1 { acked, flushed }
    })
}

/// Returns the torn-tail bytes the first reopen truncated.
fn check_recovery(seed: u64, sim: &SimStorage, p1: Phase1) -> u64 {
    let sim = sim.clone();
    run(move || async move {
        let (wal, replayed, report) =
            open_collect(sim.handle(), &wal_path(), small_cfg(), p1.flushed)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: reopen after crash: {e}"));
        let torn_bytes = report.torn_tail_bytes;
        let acked: HashMap<u64, u64> = p1.acked.iter().copied().collect();
        let max_acked = p1.acked.iter().map(|a| a.0).max().unwrap_or(0);
        // A contiguous prefix from the replay point...
        for (i, r) in replayed.iter().enumerate() {
            assert_eq!(
                r.lsn,
                p1.flushed + 1 + i as u64,
                "seed {seed}: replay not contiguous"
            );
        }
        let k = replayed.last().map_or(p1.flushed, |r| r.lsn);
        assert_eq!(report.last_lsn, k.max(p1.flushed), "seed {seed}");
        // ...reaching at least the last acknowledged LSN...
        assert!(
            k >= max_acked,
            "seed {seed}: replayed up to {k}, acknowledged {max_acked}"
        );
        // ...of whole, intact records, the acknowledged ones with their exact payload.
        let mut ids = HashSet::new();
        for r in &replayed {
            let id = check_payload(seed, &r.payload)
                .unwrap_or_else(|| panic!("seed {seed}: LSN {} is not an intact record", r.lsn));
            assert!(ids.insert(id), "seed {seed}: record {id} replayed twice");
            if let Some(&want) = acked.get(&r.lsn) {
                assert_eq!(id, want, "seed {seed}: LSN {} holds another record", r.lsn);
            }
        }
        for (&lsn, _) in acked.iter().filter(|(&l, _)| l > p1.flushed) {
            assert!(lsn <= k, "seed {seed}: acknowledged LSN {lsn} lost");
        }
        // The log goes on cleanly after recovery.
        let next = wal.append(1, payload(seed, 1 << 60, 100)).await.unwrap();
        assert_eq!(next, k.max(p1.flushed) + 1, "seed {seed}");
        wal.close().await.unwrap();
        drop(wal);
        let (_wal, again, report) =
            open_collect(sim.handle(), &wal_path(), small_cfg(), p1.flushed)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: second reopen: {e}"));
        assert_eq!(
            report.torn_tail_bytes, 0,
            "seed {seed}: the torn tail was not removed"
        );
        assert_eq!(again.len(), replayed.len() + 1, "seed {seed}");
        assert_eq!(again.last().unwrap().lsn, next, "seed {seed}");
        torn_bytes
    })
}

#[test]
fn acknowledged_records_survive_power_cuts() {
    // WAL_SEED=n replays one run.
    let seeds = match std::env::var("WAL_SEED") {
        Ok(s) => {
            let n: u64 = s.parse().unwrap();
            n..n + 1
        }
        Err(_) => 0..SEEDS,
    };
    let runs = seeds.end - seeds.start;
    let mut torn_runs = 0;
    for seed in seeds {
        let sim = SimStorage::new(seed);
        let p1 = load_then_crash(seed, &sim);
        torn_runs += u64::from(check_recovery(seed, &sim, p1) > 0);
    }
    // The test is only as good as the damage it sees: many cuts must have torn a chunk.
    eprintln!("{torn_runs} of {runs} power cuts left a torn tail");
    assert!(
        runs < 20 || torn_runs >= runs / 20,
        "only {torn_runs} torn tails in {runs} runs"
    );
}
