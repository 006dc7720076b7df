#![allow(clippy::unwrap_used)]
//! Damage in the middle of the log: refused with a precise error, listed by `verify`, and
//! cut by repair (at open or offline) with the lost LSNs reported and the bytes kept.

mod common;

use std::path::PathBuf;

use common::*;
use mantis_storage::{SimStorage, BLOCK_SIZE};
use mantis_wal::frame::ChunkHeader;
use mantis_wal::{repair, verify, CorruptReason, WalConfig, WalError, LOST_MAGIC};

const SEED: u64 = 21;
const RECORDS: u64 = 60;

/// 60 records of ~3 KB, one chunk each, over several 64 KiB segments.
fn write_log(sim: &SimStorage) {
    let sim = sim.clone();
    run(move || async move {
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        for i in 0..RECORDS {
            assert_eq!(wal.append(3, payload(SEED, i, 3000)).await.unwrap(), i + 1);
        }
        assert!(wal.stats().live_segments >= 3);
        wal.close().await.unwrap();
    });
}

/// Finds the chunk starting at `lsn`: (file, offset).
fn find_chunk(sim: &SimStorage, lsn: u64) -> (PathBuf, u64) {
    for f in sim_segments(sim) {
        let data = sim.contents(&f).unwrap();
        for (i, b) in data.chunks(BLOCK_SIZE).enumerate() {
            if let Ok(h) = ChunkHeader::decode(b) {
                if h.first_lsn == lsn {
                    return (f, (i * BLOCK_SIZE) as u64);
                }
            }
        }
    }
    panic!("no chunk for LSN {lsn}");
}

fn repair_cfg() -> WalConfig {
    WalConfig {
        repair: true,
        ..small_cfg()
    }
}

#[test]
fn flipped_bit_is_refused_listed_and_repaired() {
    let sim = SimStorage::new(SEED);
    write_log(&sim);
    let bad_lsn = 30;
    let (file, offset) = find_chunk(&sim, bad_lsn);
    sim.flip_bit(&file, offset + 40 + 17 + 100, 3).unwrap();
    let before = sim.contents(&file).unwrap();
    let s = sim.clone();
    let (f2, o2) = (file.clone(), offset);
    run(move || async move {
        // Refused, naming the file, the offset and the last good LSN.
        let err = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .err()
            .unwrap();
        match &err {
            WalError::Corrupt {
                file,
                offset,
                lsn,
                reason,
                ..
            } => {
                assert_eq!((file, *offset, *lsn), (&f2, o2, bad_lsn - 1), "{err}");
                assert!(
                    matches!(reason, CorruptReason::PayloadChecksum { .. }),
                    "{err}"
                );
            }
            other => panic!("expected Corrupt, got {other}"),
        }
        // Verify lists the chunk and the record, and changes nothing.
        let files_before: Vec<_> = s.files();
        let v = verify(&*s.handle(), &wal_path(), 0).await.unwrap();
        assert_eq!(s.files(), files_before);
        assert!(!v.is_clean());
        assert_eq!(v.last_lsn, bad_lsn - 1);
        assert_eq!(v.lost_lsns, Some((bad_lsn, RECORDS)));
        assert_eq!(v.problems[0].file, f2);
        assert_eq!(v.problems[0].offset, o2);
        assert!(v.problems.iter().any(|p| matches!(
            p.reason,
            CorruptReason::RecordChecksum { lsn, .. } if lsn == bad_lsn
        ) && p.offset == o2 + 40));
        assert!(v.torn_tail.is_none());

        // Repair at open: the log is cut at the damage and the rest kept in a file.
        let (wal, replayed, report) = open_collect(s.handle(), &wal_path(), repair_cfg(), 0)
            .await
            .unwrap();
        let rep = report.repaired.clone().unwrap();
        assert_eq!(replayed.len() as u64, bad_lsn - 1);
        assert_eq!((rep.file.clone(), rep.offset), (f2.clone(), o2));
        assert_eq!(rep.last_good_lsn, bad_lsn - 1);
        assert_eq!((rep.first_lost_lsn, rep.last_lost_lsn), (bad_lsn, RECORDS));
        assert_eq!(rep.records_lost, RECORDS - bad_lsn + 1);
        assert_eq!(rep.intact_records_in_lost_file, RECORDS - bad_lsn);
        let lost = s.contents(&rep.lost_file).unwrap();
        assert!(rep.lost_file.to_string_lossy().contains("lost-"));
        assert_eq!(&lost[..8], &LOST_MAGIC);
        // The first section holds the damaged segment's bytes from the cut on.
        let copied = &lost[BLOCK_SIZE..BLOCK_SIZE + 3 * BLOCK_SIZE];
        assert_eq!(copied, &before[o2 as usize..o2 as usize + 3 * BLOCK_SIZE]);
        assert!(lost.len() as u64 >= rep.bytes_cut);
        // Appends continue right after the last good LSN.
        assert_eq!(
            wal.append(3, payload(SEED, 500, 10)).await.unwrap(),
            bad_lsn
        );
        wal.close().await.unwrap();
        drop(wal);
        let (_wal, replayed, report) = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        assert!(report.repaired.is_none());
        assert_eq!(replayed.len() as u64, bad_lsn);
        assert_eq!(
            check_payload(SEED, &replayed.last().unwrap().payload),
            Some(500)
        );
        let v = verify(&*s.handle(), &wal_path(), 0).await.unwrap();
        assert!(v.is_clean(), "{v:?}");
    });
}

#[test]
fn offline_repair_and_missing_segment() {
    let sim = SimStorage::new(SEED + 1);
    write_log(&sim);
    // A whole segment in the middle disappears.
    let segs = sim_segments(&sim);
    assert!(segs.len() >= 3);
    let s = sim.clone();
    run(move || async move {
        s.handle().remove(&segs[1]).await.unwrap();
        let err = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, WalError::Corrupt { reason: CorruptReason::SegmentGap { .. }, file, offset: 0, .. } if *file == segs[2]),
            "{err}"
        );
        let v = verify(&*s.handle(), &wal_path(), 0).await.unwrap();
        assert!(matches!(
            v.problems[0].reason,
            CorruptReason::SegmentGap { .. }
        ));
        let report = repair(&*s.handle(), &wal_path(), 0).await.unwrap();
        let rep = report.repaired.unwrap();
        assert_eq!(rep.last_good_lsn, report.last_lsn);
        assert!(rep.records_lost > 0);
        assert_eq!(rep.last_lost_lsn, RECORDS);
        // Only the first segment is left, and it opens cleanly.
        assert_eq!(sim_segments(&s), vec![segs[0].clone()]);
        let (_wal, replayed, _) = open_collect(s.handle(), &wal_path(), small_cfg(), 0)
            .await
            .unwrap();
        assert_eq!(replayed.len() as u64, rep.last_good_lsn);
    });
}

#[test]
fn verify_reports_a_torn_tail_without_touching_it() {
    let sim = SimStorage::new(SEED + 2);
    write_log(&sim);
    let (file, offset) = find_chunk(&sim, RECORDS);
    sim.flip_bit(&file, offset + 2000, 0).unwrap();
    let s = sim.clone();
    run(move || async move {
        let before = s.contents(&file).unwrap();
        let v = verify(&*s.handle(), &wal_path(), 0).await.unwrap();
        assert!(v.is_clean(), "a torn tail is not damage: {v:?}");
        let t = v.torn_tail.unwrap();
        assert_eq!((t.file.clone(), t.offset), (file.clone(), offset));
        assert_eq!(v.last_lsn, RECORDS - 1);
        assert_eq!(s.contents(&file).unwrap(), before);
    });
}
