#![allow(clippy::unwrap_used)]
//! Recycling: once records are flushed elsewhere, whole segments are reused or removed, so
//! the WAL's footprint stays bounded under a long load; recovery replays from the flush point.

mod common;

use std::path::Path;
use std::rc::Rc;

use common::*;
use mantis_storage::{DmaStorage, SimStorage, Storage};
use mantis_wal::{WalConfig, SPARE_SUFFIX};

/// Appends `records` of ~2 KB, telling the WAL every 10 records that all but the last 40 are
/// flushed; checks the number of segment files stays bounded; returns (last LSN, flushed).
async fn long_load(
    storage: Rc<dyn Storage>,
    dir: &Path,
    cfg: WalConfig,
    records: u64,
    count_files: impl Fn() -> (usize, usize),
) -> (u64, u64) {
    let (wal, _, _) = open_collect(storage, dir, cfg.clone(), 0).await.unwrap();
    let mut flushed = 0;
    let mut max_live = 0;
    let mut max_spares = 0;
    for i in 0..records {
        let lsn = wal.append(1, payload(41, i, 2000)).await.unwrap();
        if lsn % 10 == 0 && lsn > 40 {
            flushed = lsn - 40;
            wal.mark_flushed(flushed);
        }
        let (live, spares) = count_files();
        max_live = max_live.max(live);
        max_spares = max_spares.max(spares);
    }
    let st = wal.stats();
    // 40 unflushed records of ~2 KB span at most 3 segments of 64 KiB, plus the writer's.
    assert!(max_live <= 4, "live segments grew to {max_live}: {st:?}");
    assert!(
        max_spares <= cfg.spare_segments_max.max(1) + 1,
        "spares grew to {max_spares}"
    );
    assert!(st.segments_recycled > 0, "{st:?}");
    assert!(st.segments_rolled > 20, "{st:?}");
    assert!(
        st.segments_prepared < st.segments_rolled / 2,
        "recycled segments are reused: {st:?}"
    );
    wal.close().await.unwrap();
    (st.last_durable_lsn, flushed)
}

fn cfg() -> WalConfig {
    WalConfig {
        segment_size_bytes: 64 * 1024,
        pending_bytes_max: 32 * 1024,
        spare_segments_max: 2,
        repair: false,
        ..WalConfig::default()
    }
}

#[test]
fn segments_stay_bounded_sim() {
    let sim = SimStorage::new(41);
    let s = sim.clone();
    let (last, flushed) = run(move || async move {
        let s2 = s.clone();
        long_load(s.handle(), &wal_path(), cfg(), 1500, move || {
            (
                sim_segments(&s2).len(),
                sim_files_with_suffix(&s2, SPARE_SUFFIX).len(),
            )
        })
        .await
    });
    run(move || async move {
        let (wal, replayed, report) = open_collect(sim.handle(), &wal_path(), cfg(), flushed)
            .await
            .unwrap();
        wal.close().await.unwrap();
        drop(wal);
        let lsns: Vec<u64> = replayed.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, (flushed + 1..=last).collect::<Vec<_>>());
        assert_eq!(report.last_lsn, last);
        for r in &replayed {
            assert_eq!(check_payload(41, &r.payload), Some(r.lsn - 1));
        }
        // Asking for records that were recycled away is refused, not silently wrong.
        let err = open_collect(sim.handle(), &wal_path(), cfg(), 1)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, mantis_wal::WalError::HistoryMissing { .. }),
            "{err}"
        );
    });
}

#[test]
fn spare_limit_zero_removes_segments() {
    let sim = SimStorage::new(42);
    let s = sim.clone();
    run(move || async move {
        let s2 = s.clone();
        let cfg = WalConfig {
            spare_segments_max: 0,
            ..cfg()
        };
        let (wal, _, _) = open_collect(s.handle(), &wal_path(), cfg, 0).await.unwrap();
        for i in 0..400u64 {
            let lsn = wal.append(1, payload(42, i, 2000)).await.unwrap();
            wal.mark_flushed(lsn.saturating_sub(40));
            assert!(sim_files_with_suffix(&s2, SPARE_SUFFIX).len() <= 1);
        }
        let st = wal.stats();
        assert!(
            st.segments_removed > 5 && st.segments_recycled == 0,
            "{st:?}"
        );
        assert!(sim_segments(&s2).len() <= 4);
    });
}

#[test]
fn segments_stay_bounded_dma() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = tmp.path().to_path_buf();
    run(|| async move {
        let storage: Rc<dyn Storage> = Rc::new(DmaStorage::new(&root).await.unwrap());
        let dir = root.join("wal");
        let d2 = dir.clone();
        let count = move || {
            let names: Vec<String> = std::fs::read_dir(&d2)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            (
                names.iter().filter(|n| n.ends_with(".wal")).count(),
                names.iter().filter(|n| n.ends_with(SPARE_SUFFIX)).count(),
            )
        };
        let (last, flushed) = long_load(storage.clone(), &dir, cfg(), 800, count).await;
        let (_wal, replayed, _) = open_collect(storage, &dir, cfg(), flushed).await.unwrap();
        assert_eq!(replayed.len() as u64, last - flushed);
        assert_eq!(replayed.first().unwrap().lsn, flushed + 1);
    });
}
