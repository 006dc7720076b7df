#![allow(clippy::unwrap_used)]
//! Append records of many sizes, reopen, replay them all — on the simulated disk and on real
//! O_DIRECT files.

mod common;

use std::path::Path;
use std::rc::Rc;

use common::*;
use mantis_storage::{DmaStorage, SimStorage, Storage};
use mantis_wal::{WalConfig, WalRecord};

const SEED: u64 = 7;

fn sizes() -> Vec<usize> {
    // 0 bytes, tiny, block edges, 1 MiB (bigger than a small segment), 64 MiB.
    vec![0, 1, 100, 4096 - 57, 4096, 5000, 1 << 20, 3, 64 << 20, 10]
}

async fn round_trip(storage: Rc<dyn Storage>, dir: &Path, cfg: WalConfig) {
    let sizes = sizes();
    let expected: Vec<(u8, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut p = payload(SEED, i as u64, n.max(8));
            p.truncate(n);
            (i as u8, p)
        })
        .collect();
    {
        let (wal, replayed, report) = open_collect(storage.clone(), dir, cfg.clone(), 0)
            .await
            .unwrap();
        assert!(replayed.is_empty());
        assert_eq!(report.last_lsn, 0);
        for (i, (kind, p)) in expected.iter().enumerate() {
            let lsn = wal.append(*kind, p.clone()).await.unwrap();
            assert_eq!(lsn, i as u64 + 1, "LSNs are dense from 1");
        }
        assert_eq!(wal.last_durable_lsn(), expected.len() as u64);
        let st = wal.stats();
        assert_eq!(st.records_appended, expected.len() as u64);
        assert!(
            st.segments_rolled >= 2,
            "big records rolled segments: {st:?}"
        );
        wal.close().await.unwrap();
        assert!(
            wal.append(1, vec![1]).await.is_err(),
            "closed WAL refuses appends"
        );
    }
    // Reopen: everything comes back, in order, byte for byte.
    let (wal, replayed, report) = open_collect(storage.clone(), dir, cfg.clone(), 0)
        .await
        .unwrap();
    assert_eq!(report.torn_tail_bytes, 0, "clean close leaves no torn tail");
    assert_eq!(report.records_replayed, expected.len() as u64);
    assert_eq!(replayed.len(), expected.len());
    for (i, (rec, (kind, p))) in replayed.iter().zip(&expected).enumerate() {
        assert_eq!(rec.lsn, i as u64 + 1);
        assert_eq!(rec.kind, *kind);
        assert!(rec.payload == *p, "payload of LSN {} differs", rec.lsn);
    }
    // Appends continue after the last LSN, and replay_from skips what was flushed.
    let lsn = wal.append(9, b"after reopen".to_vec()).await.unwrap();
    assert_eq!(lsn, expected.len() as u64 + 1);
    wal.close().await.unwrap();
    drop(wal);
    let (_wal, replayed, report) = open_collect(storage, dir, cfg, 8).await.unwrap();
    let lsns: Vec<u64> = replayed.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, (9..=lsn).collect::<Vec<_>>());
    assert_eq!(report.last_lsn, lsn);
    assert_eq!(
        replayed.last().unwrap(),
        &WalRecord {
            lsn,
            kind: 9,
            payload: b"after reopen".to_vec()
        }
    );
}

#[test]
fn round_trip_sim() {
    let sim = SimStorage::new(1);
    run(|| async move {
        round_trip(sim.handle(), &wal_path(), small_cfg()).await;
    });
}

#[test]
fn round_trip_dma() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = tmp.path().to_path_buf();
    run(|| async move {
        let storage: Rc<dyn Storage> = Rc::new(DmaStorage::new(&root).await.unwrap());
        let cfg = WalConfig {
            segment_size_bytes: 1 << 20,
            ..WalConfig::default()
        };
        round_trip(storage, &root.join("wal"), cfg).await;
    });
}

#[test]
fn fresh_log_starts_after_replay_point_and_rejects_missing_history() {
    let sim = SimStorage::new(2);
    run(|| async move {
        let dir = wal_path();
        let (wal, _, _) = open_collect(sim.handle(), &dir, small_cfg(), 100)
            .await
            .unwrap();
        assert_eq!(wal.append(1, vec![1; 10]).await.unwrap(), 101);
        wal.close().await.unwrap();
        drop(wal);
        // A caller that needs LSN 51.. cannot be served by a log that starts at 101.
        let err = open_collect(sim.handle(), &dir, small_cfg(), 50)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                mantis_wal::WalError::HistoryMissing {
                    log_first_lsn: 101,
                    ..
                }
            ),
            "{err}"
        );
        // A caller ahead of the log (everything persisted elsewhere) restarts the chain.
        let (wal, replayed, report) = open_collect(sim.handle(), &dir, small_cfg(), 500)
            .await
            .unwrap();
        assert!(replayed.is_empty());
        assert_eq!(report.last_lsn, 500);
        assert_eq!(wal.append(1, vec![2; 10]).await.unwrap(), 501);
        wal.close().await.unwrap();
        drop(wal);
        let (_w, replayed, _) = open_collect(sim.handle(), &dir, small_cfg(), 500)
            .await
            .unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].lsn, 501);
    });
}

#[test]
fn oversized_record_is_refused() {
    let sim = SimStorage::new(3);
    run(|| async move {
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        let err = wal
            .append(1, vec![0; mantis_wal::RECORD_PAYLOAD_MAX_BYTES + 1])
            .await
            .unwrap_err();
        assert!(matches!(err, mantis_wal::WalError::RecordTooLarge { .. }));
        assert_eq!(wal.append(1, vec![]).await.unwrap(), 1);
    });
}
