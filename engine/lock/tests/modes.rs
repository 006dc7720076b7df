#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mantis_lock::{LockMode, ResourceId};
use LockMode::*;

// Written out independently of the crate's table (Gray, Lorie, Putzolu, Traiger 1976).
fn expected(a: LockMode, b: LockMode) -> bool {
    matches!(
        (a, b),
        (IS, IS)
            | (IS, IX)
            | (IS, S)
            | (IS, SIX)
            | (IX, IS)
            | (IX, IX)
            | (S, IS)
            | (S, S)
            | (SIX, IS)
    )
}

#[test]
fn compatibility_matrix_exhaustive_through_the_manager() {
    for held in LockMode::ALL {
        for asked in LockMode::ALL {
            assert_eq!(
                held.compatible(asked),
                expected(held, asked),
                "{held} vs {asked}"
            );
            let m = mgr();
            grant(&m, 1, row(1), held);
            if expected(held, asked) {
                grant(&m, 2, row(1), asked);
                assert_eq!(m.held_mode(t(2), row(1)), Some(asked));
            } else {
                let mut w = queue(&m, 2, row(1), asked);
                assert_pending(&mut w);
                assert_eq!(m.end_txn(t(1)), 1);
                assert_granted(&mut w);
                assert_eq!(m.held_mode(t(2), row(1)), Some(asked));
            }
            m.end_txn(t(1));
            m.end_txn(t(2));
            assert_eq!(
                m.records_in_use(),
                (0, 0, 0),
                "{held} then {asked}: records leaked"
            );
        }
    }
}

#[test]
fn supremum_is_the_least_upper_bound() {
    for a in LockMode::ALL {
        for b in LockMode::ALL {
            let s = a.supremum(b);
            assert_eq!(s, b.supremum(a));
            assert!(s.covers(a) && s.covers(b), "{a} ∨ {b} = {s}");
            for c in LockMode::ALL {
                // Anything compatible with the supremum is compatible with both.
                if s.compatible(c) {
                    assert!(a.compatible(c) && b.compatible(c), "{a} ∨ {b} = {s} vs {c}");
                }
            }
        }
    }
    assert_eq!(IX.supremum(S), SIX);
    assert_eq!(IS.supremum(X), X);
}

#[test]
fn intention_modes_of_ancestors() {
    assert_eq!(S.intention(), IS);
    assert_eq!(IS.intention(), IS);
    assert_eq!(X.intention(), IX);
    assert_eq!(IX.intention(), IX);
    assert_eq!(SIX.intention(), IX);
    let r = row(7);
    assert_eq!(
        r.ancestors(),
        [
            Some(ResourceId::Database(1)),
            Some(ResourceId::Table {
                database: 1,
                table: 1
            })
        ]
    );
    assert_eq!(
        r.parent(),
        Some(ResourceId::Table {
            database: 1,
            table: 1
        })
    );
    assert_eq!(ResourceId::row(1, 2, b"k"), ResourceId::row(1, 2, b"k"));
    assert_ne!(ResourceId::row(1, 2, b"k"), ResourceId::row(1, 2, b"j"));
}

#[test]
fn table_lock_conflicts_with_row_locks_below_it() {
    futures::executor::block_on(async {
        let m = mgr();
        let table = ResourceId::Table {
            database: 1,
            table: 1,
        };
        // T1 writes a row: IX on database and table, X on the row.
        m.lock_hierarchical(t(1), row(5), X).await.unwrap();
        assert_eq!(m.held_mode(t(1), ResourceId::Database(1)), Some(IX));
        assert_eq!(m.held_mode(t(1), table), Some(IX));
        // T2 reads another row: compatible all the way down.
        m.lock_hierarchical(t(2), row(6), S).await.unwrap();
        // T3 wants to read the whole table: S conflicts with T1's IX.
        let mut w = queue(&m, 3, table, S);
        assert_pending(&mut w);
        m.end_txn(t(1));
        assert_granted(&mut w);
        // T4 wants to write a row while T3 reads the table: IX on the table waits.
        let mut w4 = queue(&m, 4, table, IX);
        assert_pending(&mut w4);
        m.end_txn(t(3));
        assert_granted(&mut w4);
        for n in 1..=4 {
            m.end_txn(t(n));
        }
        assert_eq!(m.records_in_use(), (0, 0, 0));
    });
}
