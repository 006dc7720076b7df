//! Grandfather-father-son retention on a simulated calendar. The expected sets are written
//! out by reasoning over the calendar (comments give the steps), not taken from the code.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use mantis_backup::retention::{plan, BackupPoint, RetentionRules};

fn at(date: NaiveDate) -> u64 {
    let t = Utc.from_utc_datetime(&date.and_hms_opt(3, 0, 0).unwrap());
    t.timestamp_millis() as u64
}

fn id(date: NaiveDate) -> String {
    format!("bk-{date}")
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// One backup a day at 03:00 UTC from `first` to `last`, each full.
fn daily(first: NaiveDate, last: NaiveDate) -> Vec<BackupPoint> {
    let mut out = Vec::new();
    let mut d = first;
    while d <= last {
        out.push(BackupPoint {
            id: id(d),
            created_at_ms: at(d),
            depends_on: Vec::new(),
        });
        d += Duration::days(1);
    }
    out
}

#[test]
fn two_years_of_daily_backups_keep_exactly_the_gfs_set() {
    // 2024-01-01 .. 2025-12-31: 366 + 365 = 731 backups.
    let backups = daily(day(2024, 1, 1), day(2025, 12, 31));
    assert_eq!(backups.len(), 731);
    let rules = RetentionRules {
        keep_last: 2,
        keep_daily: 7,
        keep_weekly: 4,
        keep_monthly: 12,
        keep_yearly: 3,
    };
    let verdict = plan(&backups, &rules);
    // keep_last 2: 12-31, 12-30 (inside the daily set).
    // keep_daily 7: 2025-12-25 .. 2025-12-31.
    // keep_weekly 4: 2025-12-31 is a Wednesday, in ISO week 2026-W01 (Mon 12-29 .. Sun 01-04);
    //   the newest of that week is 12-31, then the Sundays closing the weeks before: 12-28,
    //   12-21, 12-14 (12-31 and 12-28 already daily).
    // keep_monthly 12: the last day of each month of 2025: 12-31 (daily), 11-30, 10-31, 09-30,
    //   08-31, 07-31, 06-30, 05-31, 04-30, 03-31, 02-28 (2025 is no leap year), 01-31.
    // keep_yearly 3: only two years have backups: 2025-12-31 (kept) and 2024-12-31.
    let mut expected: Vec<NaiveDate> = (25..=31).map(|d| day(2025, 12, d)).collect();
    expected.extend([day(2025, 12, 21), day(2025, 12, 14)]);
    expected.extend([
        day(2025, 11, 30),
        day(2025, 10, 31),
        day(2025, 9, 30),
        day(2025, 8, 31),
        day(2025, 7, 31),
        day(2025, 6, 30),
        day(2025, 5, 31),
        day(2025, 4, 30),
        day(2025, 3, 31),
        day(2025, 2, 28),
        day(2025, 1, 31),
    ]);
    expected.push(day(2024, 12, 31));
    expected.sort();
    expected.reverse();
    let expected: Vec<String> = expected.into_iter().map(id).collect();
    assert_eq!(expected.len(), 21);
    assert_eq!(verdict.keep, expected);
    assert_eq!(verdict.delete.len(), 731 - 21);
    assert_eq!(verdict.delete.first().unwrap(), &id(day(2025, 12, 24)));
    assert_eq!(verdict.delete.last().unwrap(), &id(day(2024, 1, 1)));
}

#[test]
fn a_leap_year_february_and_iso_weeks_across_new_year() {
    // 2024-02-20 .. 2024-03-03: keep_monthly 2 keeps 03-03 and 02-29 (2024 is a leap year).
    let backups = daily(day(2024, 2, 20), day(2024, 3, 3));
    let rules = RetentionRules {
        keep_monthly: 2,
        ..RetentionRules::default()
    };
    assert_eq!(
        plan(&backups, &rules).keep,
        [id(day(2024, 3, 3)), id(day(2024, 2, 29))]
    );
    // 2020-12-20 .. 2021-01-06: 2021-01-03 (Sunday) is still in ISO week 2020-W53
    // (Mon 12-28 .. Sun 01-03); 01-04 .. 01-06 is 2021-W01. keep_weekly 3: 01-06, 01-03, 12-27.
    let backups = daily(day(2020, 12, 20), day(2021, 1, 6));
    let rules = RetentionRules {
        keep_weekly: 3,
        ..RetentionRules::default()
    };
    assert_eq!(
        plan(&backups, &rules).keep,
        [
            id(day(2021, 1, 6)),
            id(day(2021, 1, 3)),
            id(day(2020, 12, 27))
        ]
    );
}

#[test]
fn incremental_chains_keep_their_bases() {
    // Four weeks from Monday 2025-03-03 to Sunday 2025-03-30, then Mon..Wed 03-31..04-02:
    // a full backup each Monday, an incremental on its previous day every other day.
    let mut backups = Vec::new();
    let mut d = day(2025, 3, 3);
    while d <= day(2025, 4, 2) {
        let monday = d.format("%a").to_string() == "Mon";
        backups.push(BackupPoint {
            id: id(d),
            created_at_ms: at(d),
            depends_on: if monday {
                Vec::new()
            } else {
                vec![id(d - Duration::days(1))]
            },
        });
        d += Duration::days(1);
    }
    // keep_last 1 keeps Wed 04-02, which needs Tue 04-01 and Mon 03-31 (full).
    let rules = RetentionRules {
        keep_last: 1,
        ..RetentionRules::default()
    };
    assert_eq!(
        plan(&backups, &rules).keep,
        [
            id(day(2025, 4, 2)),
            id(day(2025, 4, 1)),
            id(day(2025, 3, 31))
        ]
    );
    // keep_weekly 2 adds Sunday 03-30, whose chain goes back to Monday 03-24: 3 + 7 kept.
    let rules = RetentionRules {
        keep_weekly: 2,
        ..RetentionRules::default()
    };
    let verdict = plan(&backups, &rules);
    let mut expected: Vec<String> = vec![
        id(day(2025, 4, 2)),
        id(day(2025, 4, 1)),
        id(day(2025, 3, 31)),
    ];
    expected.extend((24..=30).rev().map(|d| id(day(2025, 3, d))));
    assert_eq!(verdict.keep, expected);
    assert_eq!(verdict.delete.len(), backups.len() - 10);
    // No rule at all keeps everything; the newest is kept even by a rule that selects nothing.
    assert!(plan(&backups, &RetentionRules::default()).delete.is_empty());
}
