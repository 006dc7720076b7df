#![allow(clippy::unwrap_used, clippy::expect_used)]
//! fdatasync failure poisons the WAL (no retry-and-trust); a full disk fails the batch
//! cleanly and appends recover once space is free, without reopening.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use mantis_storage::{SimFaults, SimStorage};
use mantis_wal::WalError;

#[test]
fn fsync_failure_poisons_the_wal() {
    let sim = SimStorage::new(31);
    let s = sim.clone();
    let acked = run(move || async move {
        let (wal, _, _) = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        let mut acked = Vec::new();
        for i in 0..10 {
            acked.push(wal.append(1, payload(31, i, 500)).await.unwrap());
        }
        s.set_faults(SimFaults {
            fail_sync_path_contains: Some(".wal".into()),
            ..SimFaults::default()
        });
        // A batch of concurrent appends: all fail, and the WAL is poisoned.
        let results: Rc<RefCell<Vec<Result<u64, WalError>>>> = Rc::default();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (wal, results) = (wal.clone(), results.clone());
            tasks.push(glommio::spawn_local(async move {
                let r = wal.append(1, payload(31, 100 + i, 200)).await;
                results.borrow_mut().push(r);
            }));
        }
        for t in tasks {
            t.await;
        }
        let results = results.take();
        assert_eq!(results.len(), 8);
        assert!(
            results.iter().all(|r| r.is_err()),
            "no append may succeed: {results:?}"
        );
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(WalError::SyncFailed { .. }))));
        let cause = wal.poisoned().expect("poisoned");
        assert!(matches!(cause, WalError::SyncFailed { .. }), "{cause}");
        // Even with the disk healthy again, nothing is retried or trusted.
        s.set_faults(SimFaults::default());
        let err = wal.append(1, vec![1; 10]).await.unwrap_err();
        match &err {
            WalError::Poisoned { cause, .. } => {
                assert!(matches!(**cause, WalError::SyncFailed { .. }), "{err}")
            }
            other => panic!("expected Poisoned, got {other}"),
        }
        assert!(std::error::Error::source(&err).is_some());
        let st = wal.stats();
        assert!(
            st.poisoned && st.sync_failures >= 1 && st.appends_failed >= 9,
            "{st:?}"
        );
        assert!(wal.close().await.is_err(), "close reports the poison");
        acked
    });
    // After a power cut, every acknowledged record is there.
    sim.crash();
    run(move || async move {
        let (_wal, replayed, _) = open_collect(sim.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        assert!(replayed.len() >= acked.len());
        for (r, lsn) in replayed.iter().zip(&acked) {
            assert_eq!(r.lsn, *lsn);
            assert_eq!(check_payload(31, &r.payload), Some(lsn - 1));
        }
    });
}

#[test]
fn disk_full_fails_cleanly_and_recovers_without_reopen() {
    let sim = SimStorage::new(32);
    let s = sim.clone();
    run(move || async move {
        let (wal, _, _) = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        // Let the next segment be prepared, then fill the disk to the last byte.
        wait_until("spare", || wal.stats().spare_segments == 1).await;
        s.set_faults(SimFaults {
            capacity_bytes: Some(s.used_bytes()),
            ..SimFaults::default()
        });
        let mut acked = Vec::new();
        let mut id = 0u64;
        let mut append = |n: usize| {
            id += 1;
            let wal = wal.clone();
            let p = payload(32, id, n);
            async move { (wal.append(1, p.clone()).await, p) }
        };
        // Fill the current segment and move into the spare (preallocated: no ENOSPC there),
        // leaving two blocks free in it.
        while wal.stats().segments_rolled == 0
            || wal.stats().current_segment_offset_bytes < 56 * 1024
        {
            let (r, p) = append(3000).await;
            acked.push((r.unwrap(), p));
        }
        assert_eq!(wal.stats().current_segment_offset_bytes, 56 * 1024);
        // A record that needs a new segment: the disk has no room for one.
        let (r, _) = append(20_000).await;
        let err = r.unwrap_err();
        assert!(matches!(err, WalError::DiskFull { .. }), "{err}");
        assert!(wal.poisoned().is_none(), "disk full must not poison");
        let durable = wal.last_durable_lsn();
        assert_eq!(durable, acked.last().unwrap().0);
        // Small commits still fit into the current segment and go on.
        let (r, p) = append(100).await;
        let lsn = r.unwrap();
        assert_eq!(lsn, durable + 1, "a failed batch consumes no LSN");
        acked.push((lsn, p));
        let (r, _) = append(20_000).await;
        assert!(
            r.unwrap_err().is_disk_full(),
            "still full: the preparation is retried"
        );
        // Space comes back: the roll succeeds, without reopening.
        s.set_faults(SimFaults::default());
        let (r, p) = append(20_000).await;
        acked.push((r.unwrap(), p));
        for _ in 0..30 {
            let (r, p) = append(3000).await;
            acked.push((r.unwrap(), p));
        }
        let st = wal.stats();
        assert!(
            st.disk_full_failures == 2 && st.segment_prepare_failures >= 2,
            "{st:?}"
        );
        wal.close().await.unwrap();
        drop(wal);
        let (_wal, replayed, _) = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        assert_eq!(replayed.len(), acked.len());
        for (r, (lsn, p)) in replayed.iter().zip(&acked) {
            assert_eq!(r.lsn, *lsn);
            assert!(r.payload == *p, "LSN {lsn}");
        }
    });
}
