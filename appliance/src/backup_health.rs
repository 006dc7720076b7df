//! Issue 8: the backup destinations as `/health` sees them — the WAL archive's destination
//! (from the archiver's status) and each `[[backup_schedule]]`'s destination (from its last
//! run, recorded here by the scheduler).
//!
//! A destination that fails degrades health (non-critical, like `disk`: the data is still
//! served and still safe locally) until an upload or probe succeeds again.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use mantis_backup::archive::DestinationHealth;
use serde::Serialize;

use crate::server::now_ms;

/// Schedules tracked at most (the config's schedules; a bound against a runaway caller).
pub const SCHEDULES_TRACKED_MAX: usize = 256;

/// One destination in the `backup_destinations` health check.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationReport {
    /// "wal_archive" or "backup_schedule:<name>".
    pub role: String,
    pub destination: String,
    #[serde(flatten)]
    pub health: DestinationHealth,
}

type Scheduled = BTreeMap<String, (String, DestinationHealth)>;

static SCHEDULED: OnceLock<Mutex<Scheduled>> = OnceLock::new();

fn with_scheduled<R>(f: impl FnOnce(&mut Scheduled) -> R) -> R {
    let m = SCHEDULED.get_or_init(|| Mutex::new(BTreeMap::new()));
    match m.lock() {
        Ok(mut g) => f(&mut g),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// A scheduled backup to `destination` starts.
pub fn schedule_started(name: &str, destination: &str) {
    with_scheduled(|s| {
        if s.len() >= SCHEDULES_TRACKED_MAX && !s.contains_key(name) {
            return;
        }
        let entry = s
            .entry(name.to_string())
            .or_insert_with(|| (destination.to_string(), DestinationHealth::new()));
        entry.0 = destination.to_string();
        entry.1.started(now_ms());
    });
}

/// A scheduled backup finished with `outcome` (the backup id, or why it failed).
pub fn schedule_finished(name: &str, destination: &str, outcome: &Result<String, String>) {
    with_scheduled(|s| {
        if s.len() >= SCHEDULES_TRACKED_MAX && !s.contains_key(name) {
            return;
        }
        let entry = s
            .entry(name.to_string())
            .or_insert_with(|| (destination.to_string(), DestinationHealth::new()));
        match outcome {
            Ok(_) => entry.1.succeeded(now_ms()),
            Err(e) => entry.1.failed(now_ms(), e.clone()),
        }
    });
    assert!(with_scheduled(|s| s.len()) <= SCHEDULES_TRACKED_MAX);
}

/// Every destination known: the archive's first (when archiving runs), then the schedules'
/// (those that ran at least once).
pub fn reports() -> Vec<DestinationReport> {
    let mut out = Vec::new();
    if let Some(st) = crate::rpo::status() {
        out.push(DestinationReport {
            role: "wal_archive".into(),
            destination: st.destination.clone(),
            health: st.destination_health.clone(),
        });
    }
    with_scheduled(|s| {
        for (name, (destination, health)) in s.iter() {
            out.push(DestinationReport {
                role: format!("backup_schedule:{name}"),
                destination: destination.clone(),
                // A backup may rightly take hours: only a failed run counts, never its length.
                health: health.view(now_ms(), u64::MAX),
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn schedule(name: &str) -> DestinationReport {
        reports()
            .into_iter()
            .find(|r| r.role == format!("backup_schedule:{name}"))
            .unwrap()
    }

    #[test]
    fn a_schedule_destination_fails_with_its_run_and_recovers_with_the_next() {
        schedule_started("nightly", "s3://b/p");
        // A run in progress, however long, is not a failure.
        assert!(!schedule("nightly").health.is_failing());
        schedule_finished("nightly", "s3://b/p", &Err("connection refused".into()));
        let failed = schedule("nightly");
        assert!(failed.health.is_failing() && !failed.health.reachable);
        assert_eq!(failed.destination, "s3://b/p");
        assert_eq!(
            failed.health.last_error.as_deref(),
            Some("connection refused")
        );
        schedule_started("nightly", "s3://b/p");
        schedule_finished("nightly", "s3://b/p", &Ok("bk-1".into()));
        let ok = schedule("nightly");
        assert!(!ok.health.is_failing() && ok.health.reachable);
        assert!(ok.health.last_ok_at_ms.is_some());
        assert_eq!(ok.health.failures_total, 1);
    }
}
