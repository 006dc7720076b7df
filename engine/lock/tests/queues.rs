#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use mantis_lock::{LockConfig, LockError, LockManager, LockMode};
use LockMode::*;

#[test]
fn upgrade_s_to_x_waits_for_other_readers_and_goes_first() {
    let m = mgr();
    grant(&m, 1, row(1), S);
    grant(&m, 2, row(1), S);
    // A writer queues behind the readers.
    let mut w3 = queue(&m, 3, row(1), X);
    // T1 upgrades: it must wait for T2, but ahead of T3.
    let mut up = queue(&m, 1, row(1), X);
    let view = m.resource_view(row(1));
    assert_eq!(
        view.waiting[0],
        (t(1), X, true),
        "upgrade not at the queue front: {view:?}"
    );
    assert_eq!(view.waiting[1], (t(3), X, false));
    assert_pending(&mut up);
    m.end_txn(t(2));
    assert_granted(&mut up);
    assert_eq!(m.held_mode(t(1), row(1)), Some(X));
    assert_pending(&mut w3);
    m.end_txn(t(1));
    assert_granted(&mut w3);
    m.end_txn(t(3));
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

#[test]
fn uncontended_upgrade_and_reentrant_requests_are_immediate() {
    let m = mgr();
    grant(&m, 1, row(1), IS);
    grant(&m, 1, row(1), IS);
    grant(&m, 1, row(1), IX);
    assert_eq!(m.held_mode(t(1), row(1)), Some(IX));
    grant(&m, 1, row(1), S);
    assert_eq!(m.held_mode(t(1), row(1)), Some(SIX));
    grant(&m, 1, row(1), X);
    assert_eq!(m.held_mode(t(1), row(1)), Some(X));
    grant(&m, 1, row(1), S);
    assert_eq!(
        m.held_mode(t(1), row(1)),
        Some(X),
        "a weaker request must not downgrade"
    );
    assert_eq!(m.locks_held(t(1)), 1);
    let s = m.stats();
    assert_eq!(s.reentrant_total, 2);
    assert_eq!(m.end_txn(t(1)), 1);
}

#[test]
fn two_upgraders_deadlock_and_detection_breaks_it() {
    let m = mgr();
    grant(&m, 1, row(1), S);
    grant(&m, 2, row(1), S);
    let mut u1 = queue(&m, 1, row(1), X);
    let mut u2 = queue(&m, 2, row(1), X);
    let victims = m.detect_deadlocks();
    assert_eq!(victims.len(), 1);
    assert_eq!(victims[0].txn, t(2), "youngest is the default victim");
    let err = assert_failed(&mut u2);
    assert_eq!(err.sqlstate(), "40P01");
    assert_granted(&mut u1);
    assert_eq!(m.held_mode(t(1), row(1)), Some(X));
    assert_eq!(m.locks_held(t(2)), 0, "victim's locks released");
    // The victim stays aborted until it ends.
    assert_eq!(
        m.try_lock(t(2), row(9), S).err().map(|e| e.sqlstate()),
        Some("40P01")
    );
    m.end_txn(t(2));
    m.end_txn(t(1));
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

/// A writer behind a reader is not overtaken by a stream of later readers.
#[test]
fn writer_is_not_starved_by_a_stream_of_readers() {
    let m = mgr();
    let mut pool = LocalPool::new();
    let order: Rc<RefCell<Vec<u64>>> = Rc::default();
    grant(&m, 1, row(1), S);
    let spawn = |txn: u64, mode: LockMode| {
        let (m, order) = (m.clone(), order.clone());
        pool.spawner()
            .spawn_local(async move {
                m.lock(t(txn), row(1), mode).await.unwrap();
                order.borrow_mut().push(txn);
                // Readers hold the lock until the test ends them; the writer too.
            })
            .unwrap();
    };
    spawn(2, X);
    for reader in 3..50 {
        spawn(reader, S);
    }
    pool.run_until_stalled();
    assert!(
        order.borrow().is_empty(),
        "nobody may pass the queued writer: {:?}",
        order.borrow()
    );
    assert_eq!(m.stats().waiting_now, 48);
    m.end_txn(t(1));
    pool.run_until_stalled();
    assert_eq!(*order.borrow(), vec![2], "the writer goes first");
    m.end_txn(t(2));
    pool.run_until_stalled();
    assert_eq!(order.borrow().len(), 48, "then every reader at once");
    for n in 1..50 {
        m.end_txn(t(n));
    }
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

#[test]
fn dropping_a_wait_withdraws_it_and_unblocks_those_behind() {
    let m = mgr();
    grant(&m, 1, row(1), S);
    let w2 = queue(&m, 2, row(1), X);
    let mut w3 = queue(&m, 3, row(1), S);
    assert_pending(&mut w3);
    drop(w2);
    assert_granted(&mut w3);
    assert!(!m.is_waiting(t(2)));
    assert_eq!(m.stats().cancelled_total, 1);
    for n in 1..=3 {
        m.end_txn(t(n));
    }
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

#[test]
fn ending_a_waiting_transaction_fails_its_wait() {
    let m = mgr();
    grant(&m, 1, row(1), X);
    let mut w2 = queue(&m, 2, row(1), X);
    m.end_txn(t(2));
    let err = assert_failed(&mut w2);
    assert!(matches!(err, LockError::Cancelled { .. }), "{err:?}");
    m.end_txn(t(1));
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

#[test]
fn a_transaction_waits_for_one_lock_at_a_time() {
    let m = mgr();
    grant(&m, 1, row(1), X);
    let _w = queue(&m, 2, row(1), X);
    let err = m.try_lock(t(2), row(2), S).err().unwrap();
    assert!(matches!(err, LockError::AlreadyWaiting { .. }));
}

#[test]
fn waits_time_out_and_the_timeout_adapts_to_observed_waits() {
    let cfg = LockConfig {
        timeout_initial_us: 50_000,
        timeout_min_us: 1_000,
        timeout_max_us: 1_000_000,
        timeout_p99_factor: 4.0,
        timeout_update_every_waits: 4,
        ..LockConfig::default()
    };
    let m = LockManager::new(cfg);
    assert_eq!(m.timeout_us(), 50_000);
    grant(&m, 1, row(1), X);
    let mut w = queue(&m, 2, row(1), X);
    assert_eq!(m.expire_timeouts(Instant::now()), 0);
    assert_eq!(
        m.expire_timeouts(Instant::now() + Duration::from_millis(60)),
        1
    );
    let err = assert_failed(&mut w);
    assert_eq!(err.sqlstate(), "55P03");
    assert!(
        matches!(
            err,
            LockError::Timeout {
                timeout_us: 50_000,
                ..
            }
        ),
        "{err:?}"
    );
    m.end_txn(t(2));
    // Short waits (granted at once after release) pull the timeout down to the minimum.
    for i in 0..8 {
        let mut w = queue(&m, 10 + i, row(1), X);
        m.end_txn(t(if i == 0 { 1 } else { 9 + i }));
        assert_granted(&mut w);
    }
    assert!(
        m.timeout_us() < 50_000,
        "timeout did not adapt: {}",
        m.timeout_us()
    );
    assert!(m.timeout_us() >= 1_000);
    assert_eq!(m.stats().timeouts_total, 1);
}

#[test]
fn pooled_records_are_reused_in_steady_state() {
    let m = mgr();
    for round in 0..1000u64 {
        for k in 0..8 {
            grant(&m, round, row(k), if k % 2 == 0 { S } else { X });
        }
        m.end_txn(t(round));
    }
    let s = m.stats();
    assert_eq!(
        s.request_records_allocated, 8,
        "records allocated per request"
    );
    assert_eq!(s.fast_path_total, 8000);
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

#[test]
fn capacity_limit_is_a_typed_error() {
    let m = LockManager::new(LockConfig {
        requests_max: 4,
        ..LockConfig::default()
    });
    for k in 0..4 {
        grant(&m, 1, row(k), S);
    }
    let err = m.try_lock(t(1), row(99), S).err().unwrap();
    assert!(
        matches!(err, LockError::Capacity { records_max: 4, .. }),
        "{err:?}"
    );
    assert_eq!(
        m.stats().resources_now,
        4,
        "the failed resource's head is not left behind"
    );
    m.end_txn(t(1));
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

#[test]
fn profiling_reports_hotspots_and_history_as_json() {
    let m = mgr();
    grant(&m, 1, row(1), X);
    let mut w = queue(&m, 2, row(1), S);
    let mut w3 = queue(&m, 3, row(1), S);
    m.end_txn(t(1));
    assert_granted(&mut w);
    assert_granted(&mut w3);
    let s = m.stats();
    assert_eq!(s.waits_total, 2);
    assert_eq!(s.queue_depth_max, 2);
    assert_eq!(s.wait_us.count, 2);
    assert_eq!(s.hotspots.len(), 1);
    assert_eq!(s.hotspots[0].resource, Some(row(1)));
    assert_eq!(s.hotspots[0].waits, 2);
    let view = m.resource_view(row(1));
    assert_eq!(view.granted.len(), 2);
    assert_eq!(view.events.len(), 4, "{:?}", view.events);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["waits_total"], 2);
    assert!(json["hotspots"][0]["resource"]["row"].is_object(), "{json}");
    serde_json::to_string(&view).unwrap();
}

#[test]
fn lock_waits_are_woken_inside_a_glommio_executor() {
    mantis_storage::rt::raise_memlock_limit().unwrap();
    let granted = mantis_storage::rt::run_local(|| async {
        let m = mgr();
        m.lock(t(1), row(1), X).await.unwrap();
        let m2 = m.clone();
        let waiter = glommio::spawn_local(async move {
            m2.lock(t(2), row(1), X).await.unwrap();
            m2.held_mode(t(2), row(1))
        });
        glommio::yield_if_needed().await;
        glommio::executor().yield_task_queue_now().await;
        assert!(m.is_waiting(t(2)));
        m.end_txn(t(1));
        waiter.await
    })
    .unwrap();
    assert_eq!(granted, Some(X));
}

/// Past `HELD_SCAN_MAX` (8) holders a resource switches from scanning its holders to the
/// `held_index`; re-entry, upgrade and release must behave the same on both sides of the switch,
/// and a recycled head must start unindexed again.
#[test]
fn many_holders_switch_to_the_index_and_back() {
    let m = mgr();
    for tx in 1..=12 {
        grant(&m, tx, row(1), S);
    }
    for tx in 1..=12 {
        assert_eq!(m.held_mode(t(tx), row(1)), Some(S), "txn {tx}");
        grant(&m, tx, row(1), S); // re-entrant: no second record
    }
    assert_eq!(m.stats().granted_now, 12);
    let mut up = queue(&m, 5, row(1), X);
    for tx in (1..=12).filter(|&tx| tx != 5) {
        assert_pending(&mut up);
        m.end_txn(t(tx));
    }
    assert_granted(&mut up);
    assert_eq!(m.held_mode(t(5), row(1)), Some(X));
    assert_eq!(m.stats().granted_now, 1);
    m.end_txn(t(5));
    assert_eq!(m.stats().granted_now, 0);
    assert_eq!(m.stats().resources_now, 0);
    // The recycled head: two holders, found by scanning.
    grant(&m, 20, row(2), S);
    grant(&m, 21, row(2), S);
    assert_eq!(m.held_mode(t(21), row(2)), Some(S));
    assert!(m.release(t(20), row(2)));
    assert_eq!(m.held_mode(t(20), row(2)), None);
    assert_eq!(m.stats().granted_now, 1);
}

/// Two waits expire in one pass, the second queued (FIFO) behind the first: cancelling the
/// first grants the second, which must then be left alone, not cancelled out of a queue it
/// already left (issue 9: seen as a shard panic under serializable SQL load).
#[test]
fn expiring_a_wait_that_grants_the_next_expired_one_skips_it() {
    let m = mgr();
    grant(&m, 1, row(1), S);
    let mut w2 = queue(&m, 2, row(1), X);
    let mut w3 = queue(&m, 3, row(1), S);
    assert_pending(&mut w3);
    let later = Instant::now() + Duration::from_secs(60);
    assert_eq!(m.expire_timeouts(later), 1);
    assert_eq!(assert_failed(&mut w2).sqlstate(), "55P03");
    assert_granted(&mut w3);
    for txn in 1..=3 {
        m.end_txn(t(txn));
    }
    assert_eq!(m.records_in_use(), (0, 0, 0));
}

/// Hold times are sampled one grant in `hold_sample_every`, and only they: every grant and
/// release is still counted, the histogram holds exactly the sampled holds, and the stats say
/// the sampling period. With 1 every hold is measured.
#[test]
fn hold_times_are_sampled_but_every_event_is_counted() {
    for every in [1u32, 4, 64] {
        let m = LockManager::new(LockConfig {
            hold_sample_every: every,
            ..LockConfig::default()
        });
        let locks = 1_000u64;
        for i in 0..locks {
            grant(&m, i + 1, row(i), X);
            m.end_txn(t(i + 1));
        }
        let s = m.stats();
        assert_eq!(s.acquires_total, locks, "every={every}");
        assert_eq!(s.fast_path_total, locks, "every={every}");
        assert_eq!(s.releases_total, locks, "every={every}");
        assert_eq!(s.hold_us.count, locks / u64::from(every), "every={every}");
        assert_eq!(s.hold_sample_every, every);
        assert_eq!(m.records_in_use(), (0, 0, 0));
    }
}

/// The story: the wait and hold histograms were created with auto-resize from a range of
/// 1..=2 µs and fed with `saturating_record`, which clamps instead of resizing: every hold
/// read 2 µs and no wait more than 255 µs on a TPC-B run whose per-resource waits summed to
/// milliseconds. A hold and a wait of at least 5 ms must read at least that.
#[test]
fn long_holds_and_waits_are_not_clamped_in_the_histograms() {
    let m = LockManager::new(LockConfig {
        hold_sample_every: 1,
        ..LockConfig::default()
    });
    let long = Duration::from_millis(5);
    grant(&m, 1, row(1), X);
    let mut w = queue(&m, 2, row(1), X);
    std::thread::sleep(long); // the measured quantity itself, not a wait for an event
    m.end_txn(t(1));
    assert_granted(&mut w);
    m.end_txn(t(2));
    let s = m.stats();
    let long_us = long.as_micros() as u64;
    assert!(s.hold_us.max >= long_us, "hold max {} µs", s.hold_us.max);
    assert!(s.wait_us.max >= long_us, "wait max {} µs", s.wait_us.max);
    assert!(
        s.wait_us.max <= s.hotspots[0].wait_max_us.max(1) * 101 / 100 + 1,
        "histogram {} µs vs the resource's own {} µs",
        s.wait_us.max,
        s.hotspots[0].wait_max_us
    );
}
