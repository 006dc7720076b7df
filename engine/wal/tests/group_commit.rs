#![allow(clippy::unwrap_used)]
//! Many concurrent appenders share writes and fdatasyncs; LSNs follow arrival order; the
//! pending batch stays bounded.

mod common;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use common::*;
use mantis_storage::{DmaStorage, SimStorage, Storage};
use mantis_wal::WalConfig;

const APPENDERS: u64 = 64;
const APPENDS_EACH: u64 = 20;

async fn concurrent_load(storage: Rc<dyn Storage>, dir: &Path, cfg: WalConfig) {
    let (wal, _, _) = open_collect(storage.clone(), dir, cfg.clone(), 0)
        .await
        .unwrap();
    let acked: Rc<RefCell<Vec<(u64, u64)>>> = Rc::default();
    let mut tasks = Vec::new();
    for t in 0..APPENDERS {
        let (wal, acked) = (wal.clone(), acked.clone());
        tasks.push(glommio::spawn_local(async move {
            for i in 0..APPENDS_EACH {
                let id = t * 1000 + i;
                let lsn = wal
                    .append((t % 7) as u8, payload(5, id, 50 + (id as usize % 300)))
                    .await
                    .unwrap();
                acked.borrow_mut().push((lsn, id));
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let total = APPENDERS * APPENDS_EACH;
    let st = wal.stats();
    eprintln!(
        "{total} appends: {} syncs, last/max sync {}/{} us",
        st.syncs, st.sync_latency_last_us, st.sync_latency_max_us
    );
    assert_eq!(st.records_appended, total);
    assert!(
        st.syncs < total / 4,
        "group commit must share syncs: {} syncs for {total} appends",
        st.syncs
    );
    assert_eq!(st.syncs, st.commits);
    let mut lsns: Vec<u64> = acked.borrow().iter().map(|a| a.0).collect();
    lsns.sort_unstable();
    assert_eq!(
        lsns,
        (1..=total).collect::<Vec<_>>(),
        "LSNs dense and unique"
    );
    wal.close().await.unwrap();
    drop(wal);
    let (_wal, replayed, _) = open_collect(storage, dir, cfg, 0).await.unwrap();
    let by_lsn: std::collections::HashMap<u64, u64> = acked.borrow().iter().copied().collect();
    assert_eq!(replayed.len() as u64, total);
    for r in &replayed {
        assert_eq!(
            check_payload(5, &r.payload),
            Some(by_lsn[&r.lsn]),
            "LSN {}",
            r.lsn
        );
    }
}

#[test]
fn group_commit_shares_syncs_sim() {
    let sim = SimStorage::new(11);
    run(|| async move { concurrent_load(sim.handle(), &wal_path(), small_cfg()).await });
}

#[test]
fn group_commit_shares_syncs_dma() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = tmp.path().to_path_buf();
    run(|| async move {
        let storage: Rc<dyn Storage> = Rc::new(DmaStorage::new(&root).await.unwrap());
        let cfg = WalConfig {
            segment_size_bytes: 1 << 20,
            ..WalConfig::default()
        };
        concurrent_load(storage, &root.join("wal"), cfg).await;
    });
}

#[test]
fn lsns_follow_arrival_order() {
    let sim = SimStorage::new(12);
    run(|| async move {
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        // Futures polled in this order enqueue in this order (an append enqueues before its
        // first await), so they must get increasing LSNs, across several batches.
        let futs: Vec<_> = (0..40u64)
            .map(|i| {
                let wal = wal.clone();
                async move { wal.append(1, payload(1, i, 3000)).await.unwrap() }
            })
            .collect();
        let mut lsns = Vec::new();
        let mut pending: Vec<_> = futs.into_iter().map(Box::pin).collect();
        // Poll each once in order, then drive all to completion.
        for f in pending.iter_mut() {
            assert!(futures_lite::future::poll_once(f.as_mut()).await.is_none());
        }
        for f in pending {
            lsns.push(f.await);
        }
        assert_eq!(lsns, (1..=40).collect::<Vec<_>>());
        assert!(
            wal.stats().commits > 1,
            "3000-byte records overflow a 32 KiB batch"
        );
    });
}

#[test]
fn pending_batch_is_bounded() {
    let sim = SimStorage::new(13);
    run(|| async move {
        let cfg = WalConfig {
            pending_bytes_max: 8 * 1024,
            ..small_cfg()
        };
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), cfg.clone(), 0)
            .await
            .unwrap();
        let max_seen = Rc::new(std::cell::Cell::new(0usize));
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let (wal, max_seen) = (wal.clone(), max_seen.clone());
            tasks.push(glommio::spawn_local(async move {
                for i in 0..10 {
                    let fut = wal.append(2, payload(2, t * 100 + i, 1000));
                    futures_lite::pin!(fut);
                    // Sample the gauge right after this append was queued.
                    if futures_lite::future::poll_once(fut.as_mut())
                        .await
                        .is_none()
                    {
                        max_seen.set(max_seen.get().max(wal.stats().pending_bytes));
                    }
                    fut.await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        assert!(max_seen.get() > 0);
        assert!(
            max_seen.get() <= cfg.pending_bytes_max,
            "pending {} > max {}",
            max_seen.get(),
            cfg.pending_bytes_max
        );
        let st = wal.stats();
        assert_eq!(st.records_appended, 320);
        // 320 KB of records in batches of at most 8 KiB.
        assert!(st.commits >= 320 * 1017 / 8192, "{st:?}");
        assert!(st.bytes_written / st.commits <= 12 * 1024, "{st:?}");
    });
}

#[test]
fn durable_hooks_run_in_lsn_order_before_appenders_wake() {
    let sim = SimStorage::new(14);
    run(|| async move {
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        let applied: Rc<RefCell<Vec<u64>>> = Rc::default();
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (wal, applied) = (wal.clone(), applied.clone());
            tasks.push(glommio::spawn_local(async move {
                for i in 0..10 {
                    let a2 = applied.clone();
                    let hook: mantis_wal::DurableHook =
                        Box::new(move |lsn| a2.borrow_mut().push(lsn));
                    let lsn = wal
                        .append_with(1, payload(3, t * 100 + i, 700), hook)
                        .await
                        .unwrap();
                    assert!(
                        applied.borrow().contains(&lsn),
                        "hook ran before the wake-up"
                    );
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        assert_eq!(*applied.borrow(), (1..=160).collect::<Vec<_>>());
    });
}

/// Issue 9: a deferred record asks for no sync of its own. Alone, it is written and synced
/// once its delay has passed; queued with an ordinary append, both share that append's sync,
/// in arrival order.
#[test]
fn deferred_records_ride_with_the_next_sync() {
    let sim = SimStorage::new(15);
    run(|| async move {
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        let hook = || -> mantis_wal::DurableHook { Box::new(|_| {}) };
        let long = std::time::Duration::from_secs(30);
        // With company: the ordinary append's sync covers the deferred one before its delay.
        let syncs_before = wal.stats().syncs;
        let started = std::time::Instant::now();
        let mut deferred = Box::pin(wal.append_deferred_with(1, payload(4, 1, 100), hook(), long));
        assert!(futures_lite::future::poll_once(deferred.as_mut())
            .await
            .is_none());
        let urgent_lsn = wal.append(1, payload(4, 2, 100)).await.unwrap();
        let deferred_lsn = deferred.await.unwrap();
        assert_eq!((deferred_lsn, urgent_lsn), (1, 2), "arrival order kept");
        assert_eq!(wal.stats().syncs - syncs_before, 1, "one shared sync");
        assert!(
            started.elapsed() < long / 2,
            "the deferred record waited its delay"
        );
        // Alone: it goes out after its delay, not before.
        let delay = std::time::Duration::from_millis(50);
        let started = std::time::Instant::now();
        let lsn = wal
            .append_deferred_with(1, payload(4, 3, 100), hook(), delay)
            .await
            .unwrap();
        assert_eq!(lsn, 3);
        assert!(started.elapsed() >= delay, "synced before its delay");
        assert_eq!(wal.stats().syncs - syncs_before, 2);
    });
}
