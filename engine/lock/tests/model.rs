#![allow(clippy::unwrap_used)]
//! Random acquire / release / cancel / detect sequences against a model of what each
//! transaction holds, with the lock table's invariants checked after every step.

mod common;

use std::collections::BTreeMap;
use std::task::Poll;

use common::*;
use mantis_lock::{Acquire, LockError, LockManager, LockMode, LockWait};
use proptest::prelude::*;

const TXNS: u64 = 5;
const ROWS: u64 = 3;

#[derive(Clone, Debug)]
enum Op {
    Lock(u64, u64, usize),
    End(u64),
    DropWait(u64),
    Detect,
    Release(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..TXNS, 0..ROWS, 0..5usize).prop_map(|(t, r, m)| Op::Lock(t, r, m)),
        2 => (0..TXNS).prop_map(Op::End),
        1 => (0..TXNS).prop_map(Op::DropWait),
        1 => Just(Op::Detect),
        1 => (0..TXNS, 0..ROWS).prop_map(|(t, r)| Op::Release(t, r)),
    ]
}

#[derive(Default)]
struct Model {
    /// (txn, row) → mode the model says is granted.
    held: BTreeMap<(u64, u64), LockMode>,
    /// txn → (row, mode it will hold once granted, the future).
    waits: BTreeMap<u64, (u64, LockMode, LockWait)>,
    aborted: BTreeMap<u64, bool>,
}

fn check(m: &LockManager, model: &Model) {
    for r in 0..ROWS {
        let view = m.resource_view(row(r));
        // Holders are pairwise compatible.
        for (i, (ta, ma)) in view.granted.iter().enumerate() {
            for (tb, mb) in &view.granted[i + 1..] {
                assert_ne!(ta, tb, "one transaction holds two records on {r}");
                assert!(ma.compatible(*mb), "row {r}: {ta} {ma} with {tb} {mb}");
            }
        }
        // No missed wake-up: the queue head cannot be granted.
        if let Some(&(wt, wm, upgrade)) = view.waiting.first() {
            let grantable = view
                .granted
                .iter()
                .all(|(ht, hm)| (upgrade && *ht == wt) || wm.compatible(*hm));
            assert!(
                !grantable,
                "row {r}: head waiter {wt} {wm} could be granted: {view:?}"
            );
        }
        // The lock table agrees with the model.
        for tx in 0..TXNS {
            assert_eq!(
                m.held_mode(t(tx), row(r)),
                model.held.get(&(tx, r)).copied(),
                "txn {tx} row {r}"
            );
        }
    }
    for tx in 0..TXNS {
        assert_eq!(
            m.is_waiting(t(tx)),
            model.waits.contains_key(&tx),
            "txn {tx} waiting"
        );
    }
}

/// Polls every pending wait; applies grants and failures to the model.
fn settle(model: &mut Model) {
    let txns: Vec<u64> = model.waits.keys().copied().collect();
    for tx in txns {
        let (r, mode, mut w) = model.waits.remove(&tx).unwrap();
        match poll(&mut w) {
            Poll::Pending => {
                model.waits.insert(tx, (r, mode, w));
            }
            Poll::Ready(Ok(())) => {
                model.held.insert((tx, r), mode);
            }
            Poll::Ready(Err(e)) => {
                assert!(matches!(e, LockError::Deadlock { .. }), "unexpected {e:?}");
            }
        }
    }
}

fn apply(m: &LockManager, model: &mut Model, op: &Op) {
    match *op {
        Op::Lock(tx, r, mi) => {
            let mode = LockMode::ALL[mi];
            let result = m.try_lock(t(tx), row(r), mode);
            if model.aborted.get(&tx).copied().unwrap_or(false) {
                assert_eq!(result.err().map(|e| e.sqlstate()), Some("40P01"));
                return;
            }
            if model.waits.contains_key(&tx) {
                assert!(matches!(result, Err(LockError::AlreadyWaiting { .. })));
                return;
            }
            let target = model.held.get(&(tx, r)).map_or(mode, |h| h.supremum(mode));
            match result.unwrap() {
                Acquire::Granted => {
                    model.held.insert((tx, r), target);
                }
                Acquire::Wait(w) => {
                    model.waits.insert(tx, (r, target, w));
                }
            }
        }
        Op::End(tx) => {
            let held = model.held.keys().filter(|(x, _)| *x == tx).count();
            assert_eq!(m.end_txn(t(tx)), held);
            model.held.retain(|(x, _), _| *x != tx);
            if let Some((_, _, mut w)) = model.waits.remove(&tx) {
                assert!(matches!(
                    poll(&mut w),
                    Poll::Ready(Err(LockError::Cancelled { .. }))
                ));
            }
            model.aborted.remove(&tx);
        }
        Op::DropWait(tx) => {
            model.waits.remove(&tx);
        }
        Op::Release(tx, r) => {
            if model.waits.get(&tx).is_some_and(|(wr, _, _)| *wr == r) {
                return; // releasing a lock with a queued upgrade is not something callers do
            }
            assert_eq!(
                m.release(t(tx), row(r)),
                model.held.remove(&(tx, r)).is_some()
            );
        }
        Op::Detect => {
            for v in m.detect_deadlocks() {
                let tx = v.txn.0;
                model.aborted.insert(tx, true);
                model.held.retain(|(x, _), _| *x != tx);
                let (_, _, mut w) = model.waits.remove(&tx).unwrap();
                assert_eq!(assert_failed(&mut w).sqlstate(), "40P01");
            }
            assert!(m.wait_graph().edges.is_empty() || m.detect_deadlocks().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let m = mgr();
        let mut model = Model::default();
        for op in &ops {
            apply(&m, &mut model, op);
            settle(&mut model);
            check(&m, &model);
        }
        model.waits.clear();
        for tx in 0..TXNS {
            m.end_txn(t(tx));
        }
        prop_assert_eq!(m.records_in_use(), (0, 0, 0));
        let s = m.stats();
        prop_assert_eq!(s.waiting_now, 0);
        prop_assert_eq!(s.granted_now, 0);
    }
}
