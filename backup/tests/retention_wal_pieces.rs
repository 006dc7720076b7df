//! Retention of archived WAL pieces on a simulated calendar, applied to a real destination
//! directory: pieces wholly at or below the lowest `flushed_lsn` of the kept backups (per
//! shard) go, every piece a kept backup's point-in-time recovery replays stays. Expected
//! sets are reasoned out from the calendar in the comments, not taken from the code.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use mantis_backup::archive::piece::{list_pieces, piece_object};
use mantis_backup::manifest::{manifest_object, BACKUP_FORMAT_VERSION};
use mantis_backup::retention::{apply, RetentionRules};
use mantis_backup::{BackupManifest, BackupShard, Destination, LocalDir};

/// Shard 0 commits 1,000 records a day, shard 1 700; the archive cuts shard 0 into pieces of
/// 250 LSNs (boundaries meet every backup's cut) and shard 1 into pieces of 320 (they do not).
const LSN_PER_DAY: [u64; 2] = [1_000, 700];
const PIECE_LSNS: [u64; 2] = [250, 320];

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(n as i64 - 1)
}

fn id(n: u64) -> String {
    format!("bk-{}", day(n))
}

/// Backup of day `n` (day 1 is 2026-01-01), at 03:00 UTC, with each shard's cut.
fn manifest(n: u64, parent: Option<u64>) -> BackupManifest {
    let t = Utc.from_utc_datetime(&day(n).and_hms_opt(3, 0, 0).unwrap());
    BackupManifest {
        format_version: BACKUP_FORMAT_VERSION,
        id: id(n),
        created_at_ms: t.timestamp_millis() as u64,
        checkpoint: format!("ckpt-{n}"),
        kind: if parent.is_some() {
            "incremental"
        } else {
            "full"
        }
        .into(),
        parent: parent.map(id),
        compression: "zstd".into(),
        shard_count: 2,
        shards: (0..2)
            .map(|s| BackupShard {
                shard: s,
                flushed_lsn: n * LSN_PER_DAY[s],
                durable_lsn: n * LSN_PER_DAY[s],
            })
            .collect(),
        files: Vec::new(),
    }
}

/// Daily backups on days 1..=60 (2026-01-01 .. 2026-03-01), `incremental[i] = (day, parent)`
/// turned incremental, and the archive of both shards up to half a day past the last one.
fn calendar(dest: &LocalDir, incremental: &[(u64, u64)]) {
    for n in 1..=60 {
        let parent = incremental.iter().find(|(d, _)| *d == n).map(|(_, p)| *p);
        let m = manifest(n, parent);
        dest.put(&manifest_object(&m.id), &serde_json::to_vec(&m).unwrap())
            .unwrap();
    }
    for shard in 0..2 {
        let end = 60 * LSN_PER_DAY[shard] + LSN_PER_DAY[shard] / 2;
        let mut first = 1;
        while first <= end {
            let last = first + PIECE_LSNS[shard] - 1;
            dest.put(&piece_object(shard, first, last), b"piece")
                .unwrap();
            first = last + 1;
        }
    }
}

/// Every kept backup can still replay from its cut on: the pieces left cover
/// `flushed_lsn + 1 ..= the archive's end` without a gap, for each shard.
fn assert_pitr_windows_whole(dest: &LocalDir, kept: &[String]) {
    for (shard, lsn_per_day) in LSN_PER_DAY.iter().enumerate() {
        let pieces = list_pieces(dest, shard).unwrap();
        for w in pieces.windows(2) {
            assert_eq!(w[0].last_lsn + 1, w[1].first_lsn, "gap in shard {shard}");
        }
        for backup in kept {
            let cut = day_of(backup) * lsn_per_day;
            let first = pieces.first().unwrap();
            assert!(
                first.first_lsn <= cut + 1,
                "shard {shard}: backup {backup} (cut {cut}) lost pieces from {}",
                first.first_lsn
            );
        }
    }
}

fn day_of(backup: &str) -> u64 {
    let date = NaiveDate::parse_from_str(backup.strip_prefix("bk-").unwrap(), "%Y-%m-%d").unwrap();
    (date - day(1)).num_days() as u64 + 1
}

#[test]
fn pieces_below_the_oldest_kept_backup_go_and_every_kept_window_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = LocalDir::new(tmp.path());
    calendar(&dest, &[]);
    let rules = RetentionRules {
        keep_daily: 7,
        keep_weekly: 4,
        keep_monthly: 2,
        ..RetentionRules::default()
    };
    let verdict = apply(&dest, &rules).unwrap();
    // 2026-03-01 (day 60) is the Sunday closing ISO week 9.
    // keep_daily 7: 02-23 .. 03-01 (days 54..=60).
    // keep_weekly 4: W09 → 03-01, W08 → 02-22 (day 53), W07 → 02-15 (46), W06 → 02-08 (39).
    // keep_monthly 2: March → 03-01, February → 02-28 (both daily already).
    let mut expected: Vec<u64> = (54..=60).rev().collect();
    expected.extend([53, 46, 39]);
    let expected: Vec<String> = expected.into_iter().map(id).collect();
    assert_eq!(verdict.keep, expected);
    assert_eq!(verdict.delete.len(), 50);
    // The oldest kept backup is day 39: shard 0 cut at 39,000, shard 1 at 27,300.
    // Shard 0: pieces end at multiples of 250, so exactly 39,000 / 250 = 156 go and the first
    // left starts at 39,001. Shard 1: pieces end at multiples of 320; 85 × 320 = 27,200 ≤
    // 27,300 < 86 × 320, so 85 go and the piece 27,201..=27,520 — reaching past the cut — stays.
    let left0 = list_pieces(&dest, 0).unwrap();
    let left1 = list_pieces(&dest, 1).unwrap();
    assert_eq!(
        (left0[0].first_lsn, left0[0].last_lsn),
        (39_001, 39_250),
        "shard 0"
    );
    assert_eq!(
        (left1[0].first_lsn, left1[0].last_lsn),
        (27_201, 27_520),
        "shard 1"
    );
    assert_eq!(verdict.wal_pieces_deleted.len(), 156 + 85);
    // Shard 0 had 60,500 / 250 = 242 pieces, shard 1 ceil(42,350 / 320) = 133.
    assert_eq!(left0.len(), 242 - 156);
    assert_eq!(left1.len(), 133 - 85);
    assert_pitr_windows_whole(&dest, &verdict.keep);
    // A second pass deletes nothing more: the floor has not moved.
    let again = apply(&dest, &rules).unwrap();
    assert!(again.delete.is_empty() && again.wal_pieces_deleted.is_empty());
}

#[test]
fn an_incremental_keeps_the_pieces_from_its_base_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = LocalDir::new(tmp.path());
    // The weekly backup of 02-08 (day 39) is an incremental on the full of 01-20 (day 20):
    // retention keeps day 20 as its base, so the floor drops to day 20's cut.
    calendar(&dest, &[(39, 20)]);
    let rules = RetentionRules {
        keep_daily: 7,
        keep_weekly: 4,
        ..RetentionRules::default()
    };
    let verdict = apply(&dest, &rules).unwrap();
    assert!(verdict.keep.contains(&id(20)), "{:?}", verdict.keep);
    assert_eq!(verdict.keep.len(), 11);
    // Shard 0: 20,000 / 250 = 80 pieces go; shard 1: 14,000 cut, 43 × 320 = 13,760 ≤ 14,000
    // < 44 × 320 → 43 go, and 13,761..=14,080 stays.
    let left0 = list_pieces(&dest, 0).unwrap();
    let left1 = list_pieces(&dest, 1).unwrap();
    assert_eq!(left0[0].first_lsn, 20_001);
    assert_eq!((left1[0].first_lsn, left1[0].last_lsn), (13_761, 14_080));
    assert_eq!(verdict.wal_pieces_deleted.len(), 80 + 43);
    assert_pitr_windows_whole(&dest, &verdict.keep);
}

#[test]
fn without_backups_no_piece_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = LocalDir::new(tmp.path());
    for first in (1..2_000).step_by(250) {
        dest.put(&piece_object(0, first, first + 249), b"piece")
            .unwrap();
    }
    let rules = RetentionRules {
        keep_last: 1,
        ..RetentionRules::default()
    };
    let verdict = apply(&dest, &rules).unwrap();
    assert!(verdict.wal_pieces_deleted.is_empty());
    assert_eq!(list_pieces(&dest, 0).unwrap().len(), 8);
}
