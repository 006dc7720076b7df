//! Issue 9: multi-shard batches are all-or-nothing across crashes (two-phase commit through the
//! shards' WALs). The coordinator is stopped at each step of the protocol as if it crashed
//! there, the simulated disk loses what was not synced, and after reopening every batch is
//! either wholly there or wholly absent; acknowledged batches are all there.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{block_on, open, sim_config};
use mantis_engine::twopc::TpcStop;
use mantis_engine::{BatchOp, EngineHandle};
use mantis_storage::{SimFaults, SimStorage};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SHARDS: usize = 3;

/// `count` keys named `prefix/i` that cover every shard but `skip` (if any).
fn spread_keys(h: &EngineHandle, prefix: &str, count: usize, skip: Option<usize>) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut covered = vec![false; h.shard_count()];
    let mut i = 0;
    while keys.len() < count
        || covered
            .iter()
            .enumerate()
            .any(|(s, c)| !c && Some(s) != skip)
    {
        let k = format!("{prefix}/{i}").into_bytes();
        i += 1;
        let s = h.shard_for(&k);
        if Some(s) == skip {
            continue;
        }
        covered[s] = true;
        keys.push(k);
    }
    keys
}

fn puts(keys: &[Vec<u8>], version: u64) -> Vec<BatchOp> {
    padded_puts(keys, version, 0)
}

/// Values of `pad_bytes` more bytes make memtables fill and flush during the load.
fn padded_puts(keys: &[Vec<u8>], version: u64, pad_bytes: usize) -> Vec<BatchOp> {
    keys.iter()
        .map(|k| {
            let mut value = format!("v{version}:").into_bytes();
            value.resize(value.len() + pad_bytes, b'.');
            BatchOp::Put {
                key: k.clone(),
                value,
                expires_at_ms: None,
            }
        })
        .collect()
}

/// The version every key holds; panics (naming `ctx`) if the keys disagree.
fn common_version(h: &EngineHandle, keys: &[Vec<u8>], ctx: &str) -> Option<u64> {
    let versions: Vec<Option<u64>> = keys
        .iter()
        .map(|k| {
            block_on(h.get(k)).unwrap().map(|v| {
                let s = String::from_utf8(v).unwrap();
                s[1..s.find(':').unwrap()].parse().unwrap()
            })
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] == w[1]),
        "{ctx}: multi-shard batch half-applied: {versions:?}"
    );
    versions[0]
}

/// Nothing prepared on any shard. A batch's error or answer can come before the last
/// participant's Abort/Commit lands (they run on its shard a moment later): wait for it, with
/// a deadline.
fn assert_nothing_prepared(h: &EngineHandle, ctx: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counters = block_on(h.tpc_counters()).unwrap();
        let held = counters.iter().position(|c| c[3] != 0);
        let Some(shard) = held else { return };
        assert!(
            Instant::now() < deadline,
            "{ctx}: shard {shard} still holds a prepared txn"
        );
        std::thread::yield_now();
    }
}

#[test]
fn multi_shard_batch_is_visible_and_single_shard_batches_skip_prepare() {
    let sim = SimStorage::new(1);
    let engine = open(&sim_config(&sim, SHARDS));
    let h = engine.handle();
    let keys = spread_keys(&h, "a", 6, None);
    block_on(h.write_batch(puts(&keys, 1))).unwrap();
    assert_eq!(common_version(&h, &keys, "commit"), Some(1));
    let counters = block_on(h.tpc_counters()).unwrap();
    assert_eq!(counters.iter().map(|c| c[0]).sum::<u64>(), SHARDS as u64);
    // The answer comes before the participants' Commit records are durable: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while block_on(h.tpc_counters())
        .unwrap()
        .iter()
        .map(|c| c[1])
        .sum::<u64>()
        < SHARDS as u64
    {
        assert!(
            Instant::now() < deadline,
            "Commit records never became durable"
        );
        std::thread::yield_now();
    }
    // One shard: the fast path, no prepare and one sync.
    let one: Vec<Vec<u8>> = keys
        .iter()
        .filter(|k| h.shard_for(k) == 1)
        .cloned()
        .collect();
    // Shard 1's syncs only: the first batch's End rides on shard 0 (the coordinator from
    // outside the shards) as a deferred record, whose own sync may fall in this window.
    let syncs_before = block_on(h.stats()).unwrap()[1].wal_syncs;
    block_on(h.write_batch(puts(&one, 2))).unwrap();
    let syncs_after = block_on(h.stats()).unwrap()[1].wal_syncs;
    assert_eq!(syncs_after - syncs_before, 1);
    let prepares: u64 = block_on(h.tpc_counters())
        .unwrap()
        .iter()
        .map(|c| c[0])
        .sum();
    assert_eq!(prepares, SHARDS as u64, "a single-shard batch prepared");
    // Deletes in a multi-shard batch, and the read-modify-write path after a commit.
    let dels = keys
        .iter()
        .map(|k| BatchOp::Delete { key: k.clone() })
        .collect();
    block_on(h.write_batch(dels)).unwrap();
    assert_eq!(common_version(&h, &keys, "delete"), None);
    assert!(!block_on(h.delete(keys[0].clone())).unwrap());
    assert_nothing_prepared(&h, "end");
    engine.shutdown().unwrap();
}

/// Writes version 1 everywhere, then a version-2 batch whose coordinator stops at `stop`;
/// crash; returns the version found after reopening (checked twice, across a second crash).
fn crash_at(stop: TpcStop, seed: u64, skip_coordinator: bool) -> Option<u64> {
    let sim = SimStorage::new(seed);
    let cfg = sim_config(&sim, SHARDS);
    let engine = open(&cfg);
    let h = engine.handle();
    // Coordinator is shard 0 (called from outside); `skip_coordinator` keeps it out of the
    // participants.
    let keys = spread_keys(&h, "k", 5, skip_coordinator.then_some(0));
    block_on(h.write_batch(puts(&keys, 1))).unwrap();
    block_on(h.write_batch_stopping(puts(&keys, 2), stop)).unwrap();
    engine.abandon();
    sim.crash();
    let ctx = format!("stop {stop:?} seed {seed}");
    let engine = open(&cfg);
    let h = engine.handle();
    let found = common_version(&h, &keys, &ctx);
    assert_nothing_prepared(&h, &ctx);
    // The resolution is durable: a second crash finds the same.
    engine.abandon();
    sim.crash();
    let engine = open(&cfg);
    let h = engine.handle();
    assert_eq!(
        common_version(&h, &keys, &ctx),
        found,
        "{ctx}: changed on 2nd recovery"
    );
    // The keys are free again: a new batch over them commits.
    block_on(h.write_batch(puts(&keys, 3))).unwrap();
    assert_eq!(common_version(&h, &keys, &ctx), Some(3));
    engine.shutdown().unwrap();
    found
}

/// Issue 9: the 2PC counters of `ShardStats` (exported as `mantis_twopc_*`): a committed
/// batch counts a prepare and a commit on every participant; txns prepared everywhere when
/// the coordinator died are counted as resolved in doubt (and aborted) after the restart.
#[test]
fn shard_stats_count_prepares_commits_and_in_doubt_resolutions() {
    let sim = SimStorage::new(51);
    let cfg = sim_config(&sim, SHARDS);
    let engine = open(&cfg);
    let h = engine.handle();
    let keys = spread_keys(&h, "k", 5, None);
    block_on(h.write_batch(puts(&keys, 1))).unwrap();
    // The answer comes once the Decision is durable; the Commit records follow: wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while block_on(h.stats())
        .unwrap()
        .iter()
        .any(|s| s.twopc.committed_total < 1)
    {
        assert!(Instant::now() < deadline, "Commit records never applied");
        std::thread::yield_now();
    }
    for s in block_on(h.stats()).unwrap() {
        let t = s.twopc;
        assert_eq!(
            (t.prepared_total, t.committed_total, t.aborted_total),
            (1, 1, 0),
            "shard {}",
            s.shard
        );
        assert_eq!((t.in_doubt_resolved_total, t.prepared_now), (0, 0));
    }
    block_on(h.write_batch_stopping(puts(&keys, 2), TpcStop::AfterPreparing(SHARDS))).unwrap();
    for s in block_on(h.stats()).unwrap() {
        assert_eq!(
            s.twopc.prepared_now, 1,
            "shard {} holds the prepared txn",
            s.shard
        );
        assert_eq!(s.twopc.prepared_total, 2);
    }
    engine.abandon();
    sim.crash();
    let engine = open(&cfg);
    let h = engine.handle();
    for s in block_on(h.stats()).unwrap() {
        let t = s.twopc;
        assert_eq!(t.in_doubt_resolved_total, 1, "shard {}", s.shard);
        assert_eq!(
            (t.aborted_total, t.prepared_now),
            (1, 0),
            "shard {}",
            s.shard
        );
    }
    assert_eq!(common_version(&h, &keys, "after restart"), Some(1));
    engine.shutdown().unwrap();
}

#[test]
fn crash_after_prepare_on_some_shards_aborts() {
    for skip in [false, true] {
        assert_eq!(crash_at(TpcStop::AfterPreparing(1), 11, skip), Some(1));
        assert_eq!(crash_at(TpcStop::AfterPreparing(2), 12, skip), Some(1));
    }
}

/// Parallel commit: every Prepare durable but the Decision lost in the crash: aborted.
#[test]
fn crash_after_prepare_on_all_shards_aborts() {
    for skip in [false, true] {
        assert_eq!(crash_at(TpcStop::AfterPreparing(SHARDS), 21, skip), Some(1));
    }
}

/// Parallel commit: the Decision and every Prepare durable, nobody told: committed.
#[test]
fn crash_after_the_decision_commits() {
    for skip in [false, true] {
        assert_eq!(crash_at(TpcStop::AfterDecision, 31, skip), Some(2));
    }
}

/// Story (issue 9, parallel commit): the coordinator writes its Decision at the same time as
/// the participants write their Prepares, so a crash can leave the Decision durable and some
/// Prepares lost. Such a transaction was never committed (nobody was told) and must abort on
/// every participant, also after a second crash, and not commit the half that prepared.
#[test]
fn crash_with_the_decision_durable_and_a_prepare_missing_aborts() {
    for skip in [false, true] {
        let participants = if skip { SHARDS - 1 } else { SHARDS };
        for n in [0, 1, participants - 1] {
            let seed = 35 + n as u64 + 10 * u64::from(skip);
            assert_eq!(
                crash_at(TpcStop::DecisionAfterPreparing(n), seed, skip),
                Some(1),
                "{n} of {participants} prepared, coordinator outside: {skip}"
            );
        }
    }
}

#[test]
fn crash_during_commit_commits() {
    for skip in [false, true] {
        assert_eq!(crash_at(TpcStop::AfterCommitting(0), 41, skip), Some(2));
        assert_eq!(crash_at(TpcStop::AfterCommitting(1), 42, skip), Some(2));
        assert_eq!(crash_at(TpcStop::BeforeEnd, 43, skip), Some(2));
    }
}

#[test]
fn crash_after_end_commits() {
    for skip in [false, true] {
        assert_eq!(crash_at(TpcStop::Never, 51, skip), Some(2));
    }
}

/// A decided txn whose participants flush and roll their WAL many times before the crash: the
/// pinned Prepare must survive the flushes and the WAL's recycling.
#[test]
fn pinned_prepare_survives_flushes_and_wal_recycling() {
    let sim = SimStorage::new(61);
    let cfg = sim_config(&sim, SHARDS);
    let engine = open(&cfg);
    let h = engine.handle();
    let keys = spread_keys(&h, "p", 4, Some(0));
    block_on(h.write_batch(puts(&keys, 1))).unwrap();
    block_on(h.write_batch_stopping(puts(&keys, 2), TpcStop::AfterDecision)).unwrap();
    // ~1.5 MiB per shard through 256 KiB WAL segments and 32 KiB memtables.
    let filler = vec![b'f'; 2000];
    for i in 0..2400 {
        block_on(h.put(format!("fill/{i}").into_bytes(), filler.clone(), None)).unwrap();
    }
    block_on(h.flush()).unwrap();
    let stats = block_on(h.stats()).unwrap();
    for s in &stats[1..] {
        assert!(
            s.flushes > 3,
            "shard {} flushed only {} times",
            s.shard,
            s.flushes
        );
        assert!(
            s.flushed_lsn < s.last_lsn / 2,
            "shard {}: flushed LSN {} passed the pinned prepare (last {})",
            s.shard,
            s.flushed_lsn,
            s.last_lsn
        );
    }
    engine.abandon();
    sim.crash();
    let engine = open(&cfg);
    let h = engine.handle();
    assert_eq!(common_version(&h, &keys, "pinned"), Some(2));
    // Once the commit is flushed the pins go and the flushed LSN catches up.
    block_on(h.flush()).unwrap();
    for (shard, c) in block_on(h.tpc_counters()).unwrap().iter().enumerate() {
        assert_eq!(c[4], 0, "shard {shard} still pins its WAL");
    }
    // (Shard 0's last record is the End recovery wrote: no memtable entry, never "flushed".)
    for s in &block_on(h.stats()).unwrap()[1..] {
        assert_eq!(s.flushed_lsn, s.last_lsn, "shard {}", s.shard);
    }
    engine.shutdown().unwrap();
}

/// A participant whose prepare fails (fdatasync error: read-only) makes the batch fail and
/// leaves nothing of it, before and after a crash.
#[test]
fn failed_prepare_aborts_everywhere() {
    for (seed, persists, skip) in [(71, false, false), (72, true, false), (73, true, true)] {
        failed_prepare_aborts_everywhere_with(seed, persists, skip);
    }
}

/// Story (issue 9, parallel commit): a Prepare whose fdatasync fails may still be on disk
/// (`failed_sync_persists`) while the Decision, written in parallel, is durable. Answering
/// "failed" then would let recovery find the Decision and every Prepare and commit a batch
/// whose client was told it failed: the coordinator voids its Decision (synced) first.
/// `skip`: the coordinator is outside and BOTH participants' syncs fail, so no participant
/// can log an Abort either: only the void stands between the crash and a wrong commit.
fn failed_prepare_aborts_everywhere_with(seed: u64, persists: bool, skip: bool) {
    let sim = SimStorage::new(seed);
    let cfg = sim_config(&sim, SHARDS);
    let engine = open(&cfg);
    let h = engine.handle();
    let keys = spread_keys(&h, "f", 6, skip.then_some(0));
    block_on(h.write_batch(puts(&keys, 1))).unwrap();
    // The first batch's Commit records are deferred past its answer: let them land before
    // the fault, which is meant for the second batch's Prepare only (a failed sync of the
    // first batch's Commit leaves it decided but unapplied on a read-only shard until restart).
    assert_nothing_prepared(&h, "after the first batch");
    sim.set_faults(SimFaults {
        fail_sync_path_contains: Some(if skip {
            "shard-1/wal/00000000000000000001|shard-2/wal/00000000000000000001".into()
        } else {
            "shard-2/wal/00000000000000000001".into()
        }),
        failed_sync_persists: persists,
        ..SimFaults::default()
    });
    let err = block_on(h.write_batch(puts(&keys, 2))).unwrap_err();
    assert!(err.is_read_only(), "seed {seed}: unexpected error {err}");
    assert_eq!(common_version(&h, &keys, "after failed prepare"), Some(1));
    assert_nothing_prepared(&h, "after failed prepare");
    engine.abandon();
    sim.set_faults(SimFaults::default());
    sim.crash();
    let engine = open(&cfg);
    assert_eq!(common_version(&engine.handle(), &keys, "reopened"), Some(1));
    engine.shutdown().unwrap();
}

/// The coordinator's Decision sync fails: the outcome is in doubt, the batch fails, and the
/// restart resolves it from what the coordinator's log really holds (here: nothing, abort).
#[test]
fn failed_decision_sync_is_resolved_at_restart() {
    let sim = SimStorage::new(81);
    let cfg = sim_config(&sim, SHARDS);
    let engine = open(&cfg);
    let h = engine.handle();
    let keys = spread_keys(&h, "d", 4, Some(0));
    block_on(h.write_batch(puts(&keys, 1))).unwrap();
    // The first batch's End is written after its answer: wait until it is durable (its
    // Decision unpinned), or its failing sync would poison the WAL before our Decision.
    let deadline = Instant::now() + Duration::from_secs(10);
    while block_on(h.tpc_counters()).unwrap()[0][4] > 0 {
        assert!(Instant::now() < deadline, "End never became durable");
        std::thread::yield_now();
    }
    // Only the live segment's syncs fail (a background segment preparation failing first
    // would poison the WAL before the Decision: a certain abort, not the case tested here).
    sim.set_faults(SimFaults {
        fail_sync_path_contains: Some("shard-0/wal/00000000000000000001".into()),
        ..SimFaults::default()
    });
    let err = block_on(h.write_batch(puts(&keys, 2))).unwrap_err();
    assert!(err.is_read_only(), "unexpected error {err}");
    // In doubt: the participants keep the txn prepared and its writes invisible.
    assert_eq!(common_version(&h, &keys, "in doubt"), Some(1));
    let prepared: u64 = block_on(h.tpc_counters())
        .unwrap()
        .iter()
        .map(|c| c[3])
        .sum();
    assert_eq!(prepared, 2, "error was {err:?}");
    engine.abandon();
    sim.set_faults(SimFaults::default());
    sim.crash();
    let engine = open(&cfg);
    let h = engine.handle();
    assert_eq!(common_version(&h, &keys, "resolved"), Some(1));
    assert_nothing_prepared(&h, "resolved");
    engine.shutdown().unwrap();
}

/// What one writer did to its group: the last acknowledged version and the last attempted.
#[derive(Default, Clone, Copy, Debug)]
struct GroupLog {
    acked: u64,
    attempted: u64,
}

const WRITERS: usize = 3;

fn group_keys(h: &EngineHandle, w: usize) -> Vec<Vec<u8>> {
    spread_keys(h, &format!("g{w}"), 4, None)
}

/// Writer `w`: multi-shard batches over its group (the coordinator is its own thread: shard
/// 0), and now and then a batch run from inside a random shard (that shard coordinates).
fn writer(
    h: EngineHandle,
    w: usize,
    seed: u64,
    log: Arc<Mutex<Vec<GroupLog>>>,
    stop: Arc<AtomicBool>,
    base: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9e37_79b9));
    let keys = group_keys(&h, w);
    let mut version = base;
    while !stop.load(Ordering::Relaxed) {
        version += 1;
        log.lock().unwrap()[w].attempted = version;
        let ops = padded_puts(&keys, version, rng.gen_range(0..3000));
        let res = if rng.gen_bool(0.3) {
            let inner = h.clone();
            let shard = rng.gen_range(0..SHARDS);
            match block_on(h.run_on(shard, move || async move { inner.write_batch(ops).await })) {
                Ok(r) => r,
                Err(e) => Err(e),
            }
        } else {
            block_on(h.write_batch(ops))
        };
        if res.is_err() {
            return;
        }
        log.lock().unwrap()[w].acked = version;
    }
}

fn random_crashes(seed: u64) {
    let sim = SimStorage::new(seed);
    let cfg = sim_config(&sim, SHARDS);
    let log: Arc<Mutex<Vec<GroupLog>>> = Arc::new(Mutex::new(vec![GroupLog::default(); WRITERS]));
    let mut rng = SmallRng::seed_from_u64(seed);
    for round in 0..4u64 {
        let engine = open(&cfg);
        let h = engine.handle();
        verify_groups(&h, &log, seed, round);
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (h, log, stop) = (h.clone(), log.clone(), stop.clone());
                std::thread::spawn(move || writer(h, w, seed + round, log, stop, round << 32))
            })
            .collect();
        let acked =
            |l: &Mutex<Vec<GroupLog>>| l.lock().unwrap().iter().map(|g| g.acked).sum::<u64>();
        let target = acked(&log) + rng.gen_range(5..120u64);
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked(&log) < target {
            assert!(Instant::now() < deadline, "seed {seed}: no progress");
            std::thread::yield_now();
        }
        // Sometimes a coordinator "crashes" mid-protocol just before the power cut.
        if rng.gen_bool(0.5) {
            let stops = [
                TpcStop::AfterPreparing(1),
                TpcStop::AfterPreparing(SHARDS),
                TpcStop::DecisionAfterPreparing(1),
                TpcStop::AfterDecision,
                TpcStop::AfterCommitting(1),
                TpcStop::BeforeEnd,
            ];
            let s = stops[rng.gen_range(0..stops.len())];
            let keys = spread_keys(&h, "stopped", 3, None);
            let _ = block_on(h.write_batch_stopping(puts(&keys, round + 1), s));
        }
        engine.abandon();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        sim.crash();
    }
    let engine = open(&cfg);
    let h = engine.handle();
    verify_groups(&h, &log, seed, 99);
    engine.shutdown().unwrap();
}

fn verify_groups(h: &EngineHandle, log: &Mutex<Vec<GroupLog>>, seed: u64, round: u64) {
    let ctx = format!("seed {seed} round {round} (rerun with MANTIS_SEED={seed})");
    let mut l = log.lock().unwrap();
    for (w, g) in l.iter_mut().enumerate() {
        let v = common_version(h, &group_keys(h, w), &ctx).unwrap_or(0);
        assert!(
            v >= g.acked && v <= g.attempted.max(g.acked),
            "{ctx}: group {w} holds version {v}, acknowledged {} attempted {}",
            g.acked,
            g.attempted
        );
        g.acked = v;
        g.attempted = v;
    }
    drop(l);
    let _ = common_version(h, &spread_keys(h, "stopped", 3, None), &ctx);
    assert_nothing_prepared(h, &ctx);
}

#[test]
fn randomized_crashes_keep_multi_shard_batches_whole() {
    let seeds: Vec<u64> = match std::env::var("MANTIS_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (0..24).map(|i| 0x2bc0_0000 + i).collect(),
    };
    for seed in seeds {
        random_crashes(seed);
    }
}

/// Story (2026-11-28): pgbench TPC-B against an idle mantisd panicked a shard after about
/// 9,000 transactions with "WAL pins over their limit". Each committed two-phase transaction
/// pins its Prepare until a flush covers its Commit, and those pins were counted against the
/// bound of *prepared* transactions (2 × 4,096): with a memtable large enough not to flush,
/// the 8,193rd commit asserted. Committed pins are now kept apart, bounded, merged when
/// there are too many.
#[test]
fn many_commits_without_a_flush_do_not_exhaust_the_wal_pins() {
    const WRITERS: usize = 4;
    const BATCHES_PER_WRITER: u64 = 2_300; // 9,200 commits on every shard, > 2 × 4,096
    let sim = SimStorage::new(11);
    let cfg = mantis_engine::EngineConfig {
        memtable_bytes_max: 64 << 20,
        wal_segment_bytes: 8 << 20,
        ..sim_config(&sim, 2)
    };
    let engine = open(&cfg);
    let h = engine.handle();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let h = h.clone();
            std::thread::spawn(move || {
                let keys = spread_keys(&h, &format!("pin{w}"), 2, None);
                for v in 1..=BATCHES_PER_WRITER {
                    block_on(h.write_batch(puts(&keys, v))).unwrap();
                }
                keys
            })
        })
        .collect();
    let groups: Vec<Vec<Vec<u8>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let flushes: u64 = block_on(h.stats()).unwrap().iter().map(|s| s.flushes).sum();
    assert_eq!(
        flushes, 0,
        "the test needs commits without a flush in between"
    );
    for keys in &groups {
        assert_eq!(common_version(&h, keys, "live"), Some(BATCHES_PER_WRITER));
    }
    // The pins still do their job: after a crash every acknowledged batch is replayed.
    engine.abandon();
    sim.crash();
    let engine = open(&cfg);
    let h = engine.handle();
    for keys in &groups {
        assert_eq!(
            common_version(&h, keys, "reopened"),
            Some(BATCHES_PER_WRITER)
        );
    }
    assert_nothing_prepared(&h, "reopened");
    engine.shutdown().unwrap();
}

/// `write_batch` answers once the Decision is durable and every participant made the writes
/// readable, before the participants' Commit records are synced (twopc/visible.rs). A crash
/// right after the answer must still find the batch whole: recovery re-drives the Decision.
#[test]
fn crash_right_after_the_answer_keeps_the_batch() {
    for (seed, skip) in [(91, false), (92, true), (93, false), (94, true)] {
        let sim = SimStorage::new(seed);
        let cfg = sim_config(&sim, SHARDS);
        let engine = open(&cfg);
        let h = engine.handle();
        let keys = spread_keys(&h, "early", 5, skip.then_some(0));
        block_on(h.write_batch(puts(&keys, 1))).unwrap();
        block_on(h.write_batch(puts(&keys, 2))).unwrap();
        // Readable at once, by point reads and by scans.
        assert_eq!(common_version(&h, &keys, "answered"), Some(2));
        let scanned = block_on(h.scan(mantis_engine::ScanRange::prefix(b"early/"), 100)).unwrap();
        assert_eq!(scanned.len(), keys.len());
        assert!(
            scanned.iter().all(|(_, v)| v.value.starts_with(b"v2:")),
            "seed {seed}: a scan missed a decided write"
        );
        engine.abandon();
        sim.crash();
        let engine = open(&cfg);
        let h = engine.handle();
        let ctx = format!("seed {seed}, coordinator outside: {skip}");
        assert_eq!(common_version(&h, &keys, &ctx), Some(2));
        assert_nothing_prepared(&h, &ctx);
        engine.shutdown().unwrap();
    }
}

/// Story (issue 9, parallel commit): recovery commits a parallel Decision only if it finds
/// every participant's Prepare (or a Commit). A participant that committed and then flushed
/// and recycled its WAL past its Prepare, while the coordinator's End was not durable yet,
/// made the Prepare read as "never prepared": a crash then aborted the participant that had
/// not logged its Commit, and the batch came back half-applied. A committed Prepare now stays
/// pinned until the coordinator's End is durable.
#[test]
fn committed_prepare_stays_pinned_until_the_coordinators_end() {
    let sim = SimStorage::new(62);
    let cfg = sim_config(&sim, SHARDS);
    let engine = open(&cfg);
    let h = engine.handle();
    let keys = spread_keys(&h, "e", 4, Some(0));
    block_on(h.write_batch(puts(&keys, 1))).unwrap();
    // Shard 1 commits, shard 2 stays prepared, no End.
    block_on(h.write_batch_stopping(puts(&keys, 2), TpcStop::AfterCommitting(1))).unwrap();
    let filler = vec![b'f'; 2000];
    for i in 0..2400 {
        block_on(h.put(format!("fill/{i}").into_bytes(), filler.clone(), None)).unwrap();
    }
    block_on(h.flush()).unwrap();
    let stats = block_on(h.stats()).unwrap();
    let s1 = &stats[1];
    assert!(s1.flushes > 3, "shard 1 flushed only {} times", s1.flushes);
    assert!(
        s1.flushed_lsn < s1.last_lsn / 2,
        "shard 1: flushed LSN {} passed the committed Prepare before the End (last {})",
        s1.flushed_lsn,
        s1.last_lsn
    );
    engine.abandon();
    sim.crash();
    let engine = open(&cfg);
    let h = engine.handle();
    assert_eq!(
        common_version(&h, &keys, "committed on one, prepared on the other"),
        Some(2)
    );
    assert_nothing_prepared(&h, "reopened");
    // Recovery wrote the End: the pins go with the next flush.
    block_on(h.flush()).unwrap();
    for (shard, c) in block_on(h.tpc_counters()).unwrap().iter().enumerate() {
        assert_eq!(c[4], 0, "shard {shard} still pins its WAL");
    }
    engine.abandon();
    sim.crash();
    let engine = open(&cfg);
    assert_eq!(
        common_version(&engine.handle(), &keys, "second crash"),
        Some(2)
    );
    engine.shutdown().unwrap();
}

/// Story (issue 9, parallel commit): the Decision is written before the votes are in. A
/// participant that refuses to prepare (here: read-only after a failed sync) writes no
/// Prepare; the batch fails, nothing of it is visible, and a crash with the Decision durable
/// finds a Prepare missing and aborts it everywhere (also after a second crash).
#[test]
fn decision_durable_and_a_participant_refusing_aborts() {
    for (seed, skip) in [(101, false), (102, true)] {
        let sim = SimStorage::new(seed);
        let cfg = sim_config(&sim, SHARDS);
        let engine = open(&cfg);
        let h = engine.handle();
        let keys = spread_keys(&h, "r", 6, skip.then_some(0));
        block_on(h.write_batch(puts(&keys, 1))).unwrap();
        assert_nothing_prepared(&h, "after the first batch");
        // Make shard 2 read-only: one of its syncs fails.
        let victim = keys.iter().find(|k| h.shard_for(k) == 2).unwrap().clone();
        sim.set_faults(SimFaults {
            fail_sync_path_contains: Some("shard-2/wal/".into()),
            ..SimFaults::default()
        });
        assert!(block_on(h.put(victim, b"x".to_vec(), None)).is_err());
        sim.set_faults(SimFaults::default());
        let before = block_on(h.stats()).unwrap()[0].last_lsn;
        let err = block_on(h.write_batch(puts(&keys, 2))).unwrap_err();
        assert!(err.is_read_only(), "seed {seed}: unexpected error {err}");
        assert_eq!(common_version(&h, &keys, "refused"), Some(1));
        assert_nothing_prepared(&h, "refused");
        if skip {
            // Shard 0 took part only as coordinator: its log grew by the Decision.
            assert!(block_on(h.stats()).unwrap()[0].last_lsn > before);
        }
        engine.abandon();
        sim.crash();
        for round in 0..2 {
            let engine = open(&cfg);
            let h = engine.handle();
            let ctx = format!("seed {seed}, round {round}");
            assert_eq!(common_version(&h, &keys, &ctx), Some(1));
            assert_nothing_prepared(&h, &ctx);
            engine.abandon();
            sim.crash();
        }
    }
}

/// The story: a decided multi-shard batch answered only once every remote participant had
/// sent back "readable", one more round trip inside every SQL commit's lock hold. Now it
/// answers once the Commit messages are queued on the participants; whatever is sent there
/// after the answer (this read, a lock release) queues behind them, so it must see the batch.
#[test]
fn a_read_right_after_a_multi_shard_commit_sees_it() {
    let sim = SimStorage::new(2);
    let engine = open(&sim_config(&sim, SHARDS));
    let h = engine.handle();
    let keys = spread_keys(&h, "r", 4, None);
    for version in 1..=200 {
        block_on(h.write_batch(puts(&keys, version))).unwrap();
        assert_eq!(
            common_version(&h, &keys, "read after commit"),
            Some(version)
        );
    }
    engine.shutdown().unwrap();
}

/// Story (issue 9, parallel commit): a participant's Prepare sync fails while the Decision,
/// written at the same time, is durable; the failed Prepare may be on disk all the same, so
/// the coordinator voids its Decision. When the void's own sync fails as well, nothing says
/// which way recovery will go: the batch must fail (not claim an abort it cannot promise),
/// keep the other participants prepared (in doubt, nothing new readable), and after the
/// restart hold every key at one version: the new one if the void was lost (the Decision and
/// every Prepare are on disk), the old one if the void reached the disk.
#[test]
fn failed_void_leaves_the_batch_in_doubt_and_the_restart_all_or_nothing() {
    use mantis_engine::twopc::TpcHoldPoint;
    for (seed, void_persists) in [(91, false), (92, true)] {
        let sim = SimStorage::new(seed);
        let cfg = sim_config(&sim, SHARDS);
        let engine = open(&cfg);
        let h = engine.handle();
        let keys = spread_keys(&h, "v", 6, None);
        block_on(h.write_batch(puts(&keys, 1))).unwrap();
        // Let the first batch's deferred Commit records land before shard 2's fault (its End
        // on shard 0 rides with the next sync there, the new Decision's, before any fault).
        assert_nothing_prepared(&h, "after the first batch");
        let mut hold = block_on(h.arm_tpc_hold(0, TpcHoldPoint::BeforeVoid)).unwrap();
        sim.set_faults(SimFaults {
            fail_sync_path_contains: Some("shard-2/wal/00000000000000000001".into()),
            failed_sync_persists: true,
            ..SimFaults::default()
        });
        let writer = {
            let (h, ops) = (h.clone(), puts(&keys, 2));
            std::thread::spawn(move || block_on(h.write_batch(ops)))
        };
        assert!(
            block_on(hold.reached()).is_some(),
            "seed {seed}: the coordinator never came to void its Decision"
        );
        // Now the coordinator's syncs fail too: its void is not known durable.
        sim.set_faults(SimFaults {
            fail_sync_path_contains: Some(
                "shard-0/wal/00000000000000000001|shard-2/wal/00000000000000000001".into(),
            ),
            failed_sync_persists: void_persists,
            ..SimFaults::default()
        });
        hold.release();
        let err = writer.join().unwrap().unwrap_err();
        assert!(err.is_read_only(), "seed {seed}: unexpected error {err}");
        assert_eq!(common_version(&h, &keys, "in doubt"), Some(1));
        let prepared = block_on(h.tpc_counters()).unwrap()[1][3];
        assert_eq!(
            prepared, 1,
            "seed {seed}: shard 1 no longer in doubt ({err})"
        );
        engine.abandon();
        sim.set_faults(SimFaults::default());
        sim.crash();
        let engine = open(&cfg);
        let h = engine.handle();
        let expected = if void_persists { 1 } else { 2 };
        assert_eq!(
            common_version(&h, &keys, "after the restart"),
            Some(expected),
            "seed {seed}, void persists: {void_persists}"
        );
        assert_nothing_prepared(&h, "after the restart");
        engine.shutdown().unwrap();
    }
}
