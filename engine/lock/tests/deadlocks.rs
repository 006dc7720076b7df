#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mantis_lock::{
    DetectAlgorithm, LockConfig, LockError, LockManager, LockMode, LockWait, ResourceId, TxnCost,
    TxnId, VictimStrategy, WaitForGraph,
};
use proptest::prelude::*;

const STRATEGIES: [VictimStrategy; 4] = [
    VictimStrategy::Youngest,
    VictimStrategy::FewestLocks,
    VictimStrategy::LeastWork,
    VictimStrategy::CostBased,
];
const ALGORITHMS: [DetectAlgorithm; 4] = [
    DetectAlgorithm::Dfs,
    DetectAlgorithm::Bfs,
    DetectAlgorithm::Tarjan,
    DetectAlgorithm::Adaptive,
];

fn manager(shard: u32, victim: VictimStrategy, algorithm: DetectAlgorithm) -> LockManager {
    LockManager::new(LockConfig {
        shard,
        victim,
        algorithm,
        ..LockConfig::default()
    })
}

/// Builds a cycle of `n` transactions on one shard: txn i holds row i and waits for row i+1.
/// Transaction costs are set so every strategy names a different victim:
/// txn 1 holds the fewest locks, txn 2 did the least work but holds many locks, txn n is the
/// youngest; the cost-based choice (weights 1/1/0.5) is computed by `cost_based_victim`.
fn cycle_on_one_shard(m: &LockManager, n: u64) -> Vec<LockWait> {
    for i in 1..=n {
        m.begin(t(i), i).unwrap();
        grant(m, i, row(i), LockMode::X);
        for e in 0..extra_locks(i) {
            grant(m, i, row(1000 * i + e), LockMode::S);
        }
        m.add_work(t(i), work(i));
    }
    (1..=n)
        .map(|i| queue(m, i, row(if i == n { 1 } else { i + 1 }), LockMode::X))
        .collect()
}

fn extra_locks(i: u64) -> u64 {
    match i {
        1 => 0,
        2 => 20,
        _ => 5,
    }
}

fn work(i: u64) -> u64 {
    match i {
        2 => 0,
        3 => 1,
        _ => 100,
    }
}

/// locks × 1 + work × 1 + (youngest start − start) × 0.5, lowest wins, ties to the youngest.
fn cost_based_victim(n: u64) -> u64 {
    let cost = |i: u64| (1 + extra_locks(i) + work(i)) as f64 + (n - i) as f64 * 0.5;
    let mut best = n;
    for i in (1..n).rev() {
        if cost(i) < cost(best) {
            best = i;
        }
    }
    best
}

fn expected_victim(strategy: VictimStrategy, n: u64) -> u64 {
    match strategy {
        VictimStrategy::Youngest => n,
        VictimStrategy::FewestLocks => 1,
        VictimStrategy::LeastWork => 2,
        VictimStrategy::CostBased => cost_based_victim(n),
    }
}

#[test]
fn deadlocks_of_two_and_n_transactions_in_one_shard_with_every_strategy_and_algorithm() {
    for n in [2u64, 3, 5, 12] {
        for strategy in STRATEGIES {
            for algorithm in ALGORITHMS {
                let m = manager(0, strategy, algorithm);
                let mut waits = cycle_on_one_shard(&m, n);
                for w in waits.iter_mut() {
                    assert_pending(w);
                }
                let victims = m.detect_deadlocks();
                let want = expected_victim(strategy, n);
                assert_eq!(
                    victims.len(),
                    1,
                    "n={n} {strategy:?} {algorithm:?}: {victims:?}"
                );
                assert_eq!(victims[0].txn, t(want), "n={n} {strategy:?} {algorithm:?}");
                assert_eq!(victims[0].cycle_len as u64, n);
                let err = assert_failed(&mut waits[(want - 1) as usize]);
                assert!(matches!(err, LockError::Deadlock { .. }), "{err:?}");
                assert_eq!(err.sqlstate(), "40P01");
                assert_eq!(m.locks_held(t(want)), 0);
                // The waiter on the victim's row now runs; after it ends, the chain unwinds.
                let mut done = vec![want];
                let mut next = if want == 1 { n } else { want - 1 };
                while next != want {
                    assert_granted(&mut waits[(next - 1) as usize]);
                    m.end_txn(t(next));
                    done.push(next);
                    next = if next == 1 { n } else { next - 1 };
                }
                assert_eq!(done.len() as u64, n);
                m.end_txn(t(want));
                assert!(m.detect_deadlocks().is_empty());
                assert_eq!(m.records_in_use(), (0, 0, 0));
                assert_eq!(m.stats().deadlock_victims_total, 1);
            }
        }
    }
}

#[test]
fn deadlock_across_shards_found_only_in_the_merged_graph() {
    for strategy in STRATEGIES {
        for algorithm in ALGORITHMS {
            // txn 1 holds A on shard 0 and waits for B on shard 1; txn 2 the other way round;
            // txn 3 closes a 3-cycle over both shards with its own row on shard 1.
            let s0 = manager(0, strategy, algorithm);
            let s1 = manager(1, strategy, algorithm);
            let (a, b, c) = (row(1), row(2), row(3));
            for (m, txn) in [(&s0, 1), (&s1, 2), (&s1, 3)] {
                m.begin(t(txn), txn).unwrap();
            }
            s0.begin(t(2), 2).unwrap();
            s0.begin(t(3), 3).unwrap();
            s1.begin(t(1), 1).unwrap();
            grant(&s0, 1, a, LockMode::X);
            grant(&s1, 2, b, LockMode::X);
            grant(&s1, 3, c, LockMode::X);
            s0.add_work(t(1), 50);
            s1.add_work(t(2), 10);
            s1.add_work(t(3), 30);
            let mut w1 = queue(&s1, 1, b, LockMode::X); // 1 → 2
            let mut w2 = queue(&s1, 2, c, LockMode::X); // 2 → 3
            let mut w3 = queue(&s0, 3, a, LockMode::X); // 3 → 1
            assert!(
                s0.detect_deadlocks().is_empty(),
                "no cycle is visible on shard 0 alone"
            );
            assert!(
                s1.detect_deadlocks().is_empty(),
                "no cycle is visible on shard 1 alone"
            );
            let mut global = WaitForGraph::new();
            global.add_shard(&s0.wait_graph());
            global.add_shard(&s1.wait_graph());
            assert_eq!(global.edge_count(), 3);
            let cfg = s0.config();
            let res = global.resolve(
                cfg.algorithm,
                cfg.adaptive_small_edges_max,
                strategy,
                &cfg.cost_weights,
            );
            assert_eq!(res.victims.len(), 1, "{strategy:?} {algorithm:?}: {res:?}");
            let victim = res.victims[0];
            let want = match strategy {
                VictimStrategy::Youngest => 3,
                VictimStrategy::FewestLocks => 3, // every txn holds 1 lock: ties go to the youngest
                VictimStrategy::LeastWork => 2,
                VictimStrategy::CostBased => 2, // 1+10+0.5 < 1+30+0 < 1+50+1
            };
            assert_eq!(victim.txn, t(want), "{strategy:?} {algorithm:?}");
            // The appliance sends the victim to every shard: it waits on one of them only,
            // and is aborted there; being doomed, it then loses its locks everywhere.
            let mut hits = 0;
            for m in [&s0, &s1] {
                hits += usize::from(m.abort_victim(&victim));
            }
            assert_eq!(hits, 1, "{strategy:?} {algorithm:?}");
            for m in [&s0, &s1] {
                m.release_victim(&victim);
            }
            let waits = [&mut w1, &mut w2, &mut w3];
            assert_eq!(assert_failed(waits[want as usize - 1]).sqlstate(), "40P01");
            // The transaction waiting for the victim gets its lock.
            let unblocked = if want == 1 { 3 } else { want - 1 };
            assert_granted(waits[unblocked as usize - 1]);
            for m in [&s0, &s1] {
                for n in 1..=3 {
                    m.end_txn(t(n));
                }
            }
            // A wait that was never resolved keeps its record until its future is dropped.
            drop((w1, w2, w3));
            for m in [&s0, &s1] {
                assert_eq!(m.records_in_use(), (0, 0, 0));
            }
        }
    }
}

#[test]
fn periodic_tick_breaks_a_deadlock_before_timing_it_out() {
    let m = mgr();
    grant(&m, 1, row(1), LockMode::X);
    grant(&m, 2, row(2), LockMode::X);
    let mut w1 = queue(&m, 1, row(2), LockMode::X);
    let mut w2 = queue(&m, 2, row(1), LockMode::X);
    let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    let report = m.tick(far);
    assert_eq!(report.victims.len(), 1);
    assert_eq!(
        report.timeouts, 0,
        "the survivor was granted, nothing left to time out"
    );
    assert_eq!(assert_failed(&mut w2).sqlstate(), "40P01");
    assert_granted(&mut w1);
    assert!(m.stats().detections_total >= 1);
}

fn has_cycle(n: usize, edges: &[(usize, usize)], removed: &[bool]) -> bool {
    // Reference: repeated removal of nodes without live successors.
    let mut alive: Vec<bool> = (0..n).map(|i| !removed[i]).collect();
    loop {
        let mut changed = false;
        for v in 0..n {
            if alive[v] && !edges.iter().any(|&(a, b)| a == v && alive[b]) {
                alive[v] = false;
                changed = true;
            }
        }
        if !changed {
            return alive.iter().any(|&a| a);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Every algorithm leaves an acyclic graph, removes nothing from an acyclic one, and every
    /// reported cycle is a real cycle (or SCC) of the graph.
    #[test]
    fn every_algorithm_breaks_every_cycle(
        n in 2usize..24,
        raw in proptest::collection::vec((0usize..24, 0usize..24), 0..60),
    ) {
        let edges: Vec<(usize, usize)> = raw.into_iter().map(|(a, b)| (a % n, b % n)).filter(|(a, b)| a != b).collect();
        let cyclic = has_cycle(n, &edges, &vec![false; n]);
        for algorithm in ALGORITHMS {
            let mut g = WaitForGraph::new();
            for &(a, b) in &edges {
                g.add_edge(t(a as u64), t(b as u64));
            }
            let cycles = g.find_cycles(algorithm);
            prop_assert_eq!(!cycles.is_empty(), cyclic, "{:?}", algorithm);
            if algorithm != DetectAlgorithm::Tarjan {
                for c in &cycles {
                    for i in 0..c.len() {
                        let (a, b) = (c[i].0 as usize, c[(i + 1) % c.len()].0 as usize);
                        prop_assert!(edges.contains(&(a, b)), "{:?}: {:?} not a cycle", algorithm, c);
                    }
                }
            }
            for strategy in STRATEGIES {
                let res = g.resolve(algorithm, 8, strategy, &Default::default());
                let mut removed = vec![false; n];
                for v in &res.victims {
                    removed[v.txn.0 as usize] = true;
                }
                prop_assert!(!has_cycle(n, &edges, &removed), "{:?} {:?} left a cycle", algorithm, strategy);
                prop_assert_eq!(res.victims.is_empty(), !cyclic);
            }
        }
    }
}

/// The bench's "21 victims for 20 planted cycles": a planted 8-cycle 1 → 2 → … → 8 → 1 with a
/// chord 3 → 2 that closes a second cycle {2, 3} inside the same component. Cost-based, txn 8
/// (youngest, no locks) is the cheapest member of the component but not on the 2-cycle, and 2
/// and 3 are expensive. Tarjan used to pick per component: 8 first, then 3 in a second round —
/// two victims where 3 alone breaks both cycles. Victims are now picked per cycle, shortest
/// first, so DFS, Tarjan and Adaptive abort only txn 3. BFS walks one cycle per walk (the
/// 8-cycle here) and may still need two; every algorithm leaves no cycle.
#[test]
fn a_chord_inside_a_cycle_costs_one_victim_not_two() {
    let mut g = WaitForGraph::new();
    for i in 1..=8u64 {
        g.add_txn(TxnCost {
            txn: t(i),
            start_seq: i,
            locks_held: if i == 2 || i == 3 { 100 } else { 0 },
            work: 0,
        });
    }
    let mut edges: Vec<(u64, u64)> = (1..=8u64).map(|i| (i, i % 8 + 1)).collect();
    edges.push((3, 2));
    for &(a, b) in &edges {
        g.add_edge(t(a), t(b));
    }
    assert_eq!(
        g.find_cycles(DetectAlgorithm::Tarjan).len(),
        1,
        "one component"
    );
    for algorithm in ALGORITHMS {
        let res = g.resolve(
            algorithm,
            256,
            VictimStrategy::CostBased,
            &Default::default(),
        );
        let mut removed = vec![false; 9];
        for v in &res.victims {
            removed[v.txn.0 as usize] = true;
        }
        let edges: Vec<(usize, usize)> = edges
            .iter()
            .map(|&(a, b)| (a as usize, b as usize))
            .collect();
        assert!(
            !has_cycle(9, &edges, &removed),
            "{algorithm:?} left a cycle: {res:?}"
        );
        if algorithm != DetectAlgorithm::Bfs {
            let victims: Vec<TxnId> = res.victims.iter().map(|v| v.txn).collect();
            assert_eq!(victims, vec![t(3)], "{algorithm:?}: {res:?}");
            assert_eq!(res.victims[0].cycle_len, 2, "{algorithm:?}");
        }
    }
}

/// A graph kept across passes (`rebuild`) gives the same answer as a fresh one each time,
/// whatever the previous pass left in its buffers (a bigger graph, another algorithm).
#[test]
fn a_reused_graph_resolves_like_a_fresh_one() {
    let big: Vec<(u64, u64)> = (0..200u64).map(|i| (i, (i * 7 + 3) % 200)).collect();
    let small: Vec<(u64, u64)> = vec![(1, 2), (2, 3), (3, 1), (4, 5)];
    let part = |edges: &[(u64, u64)]| mantis_lock::ShardWaitGraph {
        shard: 0,
        edges: edges
            .iter()
            .map(|&(a, b)| mantis_lock::WaitEdge {
                waiter: t(a),
                holder: t(b),
                shard: 0,
                resource: ResourceId::Database(0),
            })
            .collect(),
        txns: Vec::new(),
    };
    let mut kept = WaitForGraph::new();
    for edges in [&big, &small, &big, &small] {
        for algorithm in ALGORITHMS {
            let parts = [part(edges)];
            kept.rebuild(&parts);
            let mut fresh = WaitForGraph::from_shards(&parts);
            let weights = Default::default();
            let a = kept.resolve(algorithm, 8, VictimStrategy::Youngest, &weights);
            let b = fresh.resolve(algorithm, 8, VictimStrategy::Youngest, &weights);
            assert_eq!(a, b, "{algorithm:?} over {} edges", edges.len());
            assert_eq!(kept.edge_count(), edges.len());
        }
    }
}

#[test]
fn adaptive_choice_by_graph_size() {
    let mut g = WaitForGraph::new();
    for i in 0..10u64 {
        g.add_edge(t(i), t(i + 1));
    }
    assert_eq!(
        g.choose_algorithm(DetectAlgorithm::Adaptive, 256),
        DetectAlgorithm::Dfs
    );
    assert_eq!(
        g.choose_algorithm(DetectAlgorithm::Adaptive, 5),
        DetectAlgorithm::Tarjan
    );
    assert_eq!(
        g.choose_algorithm(DetectAlgorithm::Bfs, 5),
        DetectAlgorithm::Bfs
    );
    let _ = ResourceId::Database(0);
}

/// The story: `mantis-chaos bank` (seed 121005995964646, iteration 109, build ee1afd3) found
/// 16,040 in a bank that must always hold 16,000: two SQL transfers had both read and
/// rewritten one balance, i.e. two transactions held an X lock on one row at once. The lock
/// manager's `abort_victim` released every lock of a victim whether or not it still waited.
/// Victims come from a snapshot of the wait-for graph (gathered shard by shard for the global
/// pass, while each shard's own tick also aborts victims), so a victim's wait may have been
/// granted before its abort arrives; its session then wrote under locks it no longer had.
/// `a_stale_victim_that_no_longer_waits_keeps_its_locks` (below) fails on that code.
///
/// This one checks the same invariant when one pass names victims in overlapping cycles: row
/// 1 and row 4 are held X by txn 2, row 2 in S by txns 1 and 3; txn 3 waits for row 1, txn 2
/// for row 2, txn 1 for row 4 (cycles {2, 3} and {1, 2}). Whatever the victims, a
/// transaction whose wait is granted holds its lock, and nobody else can take that row.
#[test]
fn a_victim_granted_by_an_earlier_victims_abort_keeps_its_locks() {
    for strategy in STRATEGIES {
        for algorithm in ALGORITHMS {
            let m = manager(0, strategy, algorithm);
            for i in 1..=3 {
                m.begin(t(i), i).unwrap();
            }
            grant(&m, 2, row(1), LockMode::X);
            grant(&m, 2, row(4), LockMode::X);
            grant(&m, 1, row(2), LockMode::S);
            grant(&m, 3, row(2), LockMode::S);
            let mut w3 = queue(&m, 3, row(1), LockMode::X);
            let mut w2 = queue(&m, 2, row(2), LockMode::X);
            let mut w1 = queue(&m, 1, row(4), LockMode::X);
            let victims = m.detect_deadlocks();
            assert!(!victims.is_empty(), "{strategy:?} {algorithm:?}");
            let mut granted_rows = Vec::new();
            for (txn, w, r) in [(1, &mut w1, 4), (2, &mut w2, 2), (3, &mut w3, 1)] {
                match poll(w) {
                    std::task::Poll::Ready(Ok(())) => granted_rows.push((txn, r)),
                    std::task::Poll::Ready(Err(e)) => {
                        assert_eq!(e.sqlstate(), "40P01", "{strategy:?} {algorithm:?}")
                    }
                    std::task::Poll::Pending => {}
                }
            }
            for (txn, r) in granted_rows {
                assert!(
                    m.locks_held(t(txn)) > 0,
                    "{strategy:?} {algorithm:?}: txn {txn} was granted row {r} but holds no lock \
                     (victims {victims:?})"
                );
                // Nobody else may take the row it was granted.
                m.begin(t(99), 99).unwrap();
                match m.try_lock(t(99), row(r), LockMode::X) {
                    Ok(mantis_lock::Acquire::Granted) => panic!(
                        "{strategy:?} {algorithm:?}: txn 99 got X on row {r} which txn {txn} \
                         was granted (victims {victims:?})"
                    ),
                    Ok(mantis_lock::Acquire::Wait(w)) => drop(w),
                    Err(e) => panic!("{e:?}"),
                }
                m.end_txn(t(99));
            }
        }
    }
}

/// The same bug through a stale snapshot (see the test above for the story): txn 1 holds A on
/// shard 0 and waits for B on shard 1; txn 2 holds B and waits for A. The merged graph names
/// txn 2. Before the abort arrives, txn 1's wait times out and it rolls back, so txn 2 gets A
/// and runs on. The late abort must leave txn 2 — no longer waiting anywhere — its locks.
#[test]
fn a_stale_victim_that_no_longer_waits_keeps_its_locks() {
    let s0 = manager(0, VictimStrategy::Youngest, DetectAlgorithm::Adaptive);
    let s1 = manager(1, VictimStrategy::Youngest, DetectAlgorithm::Adaptive);
    let (a, b) = (row(1), row(2));
    for m in [&s0, &s1] {
        m.begin(t(1), 1).unwrap();
        m.begin(t(2), 2).unwrap();
    }
    grant(&s0, 1, a, LockMode::X);
    grant(&s1, 2, b, LockMode::X);
    let mut w1 = queue(&s1, 1, b, LockMode::X);
    let mut w2 = queue(&s0, 2, a, LockMode::X);
    let mut global = WaitForGraph::new();
    global.add_shard(&s0.wait_graph());
    global.add_shard(&s1.wait_graph());
    let cfg = s0.config();
    let res = global.resolve(
        cfg.algorithm,
        cfg.adaptive_small_edges_max,
        cfg.victim,
        &cfg.cost_weights,
    );
    assert_eq!(res.victims.len(), 1);
    let victim = res.victims[0];
    assert_eq!(victim.txn, t(2));
    // Txn 1 times out on shard 1 and rolls back everywhere: txn 2 is granted A.
    let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    assert_eq!(s1.expire_timeouts(far), 1);
    assert_eq!(assert_failed(&mut w1).sqlstate(), "55P03");
    s0.end_txn(t(1));
    s1.end_txn(t(1));
    assert_granted(&mut w2);
    // The late abort, as `detect_global` sends it.
    let hits: usize = [&s0, &s1]
        .iter()
        .map(|m| usize::from(m.abort_victim(&victim)))
        .sum();
    assert_eq!(hits, 0, "txn 2 waits nowhere: it is no victim any more");
    assert_eq!(s0.locks_held(t(2)), 1);
    assert_eq!(s1.locks_held(t(2)), 1);
    for (m, r) in [(&s0, a), (&s1, b)] {
        m.begin(t(3), 3).unwrap();
        match m.try_lock(t(3), r, LockMode::X) {
            Ok(mantis_lock::Acquire::Wait(w)) => drop(w),
            Ok(mantis_lock::Acquire::Granted) => panic!("txn 3 got txn 2's lock on {r:?}"),
            Err(e) => panic!("{e:?}"),
        }
        m.end_txn(t(3));
    }
    // Txn 2 may go on locking: it was not aborted.
    grant(&s1, 2, row(3), LockMode::X);
}
