//! Grandfather-father-son retention: which backups to keep and which to delete, as a pure
//! function of their timestamps and dependencies (no I/O), then [`apply`] to a destination.
//!
//! Each rule picks on its own (like restic's `forget`), and the kept set is their union:
//! - `keep_last`: the newest N backups;
//! - `keep_daily` / `keep_weekly` / `keep_monthly` / `keep_yearly`: the newest backup of each
//!   of the N most recent UTC days (ISO weeks, months, years) that have a backup.
//!
//! Then two safety rules: the newest backup is always kept, and every backup a kept one
//! depends on (its parent chain and every backup it inherits files from) is kept too, so an
//! incremental backup is never left without its base. With no rule set, everything is kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::dest::Destination;
use crate::error::{BackupError, Result};
use crate::manifest::{list_backups, manifest_object, BackupManifest};

/// Counts of backups to keep per period; 0 turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionRules {
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
}

impl RetentionRules {
    pub fn is_empty(&self) -> bool {
        *self == RetentionRules::default()
    }
}

/// One backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPoint {
    pub id: String,
    pub created_at_ms: u64,
    /// Backups this one needs to be restored (parent chain, inherited files).
    pub depends_on: Vec<String>,
}

impl BackupPoint {
    pub fn from_manifest(m: &BackupManifest) -> BackupPoint {
        let mut deps: BTreeSet<String> = m
            .files
            .iter()
            .filter(|f| f.backup != m.id)
            .map(|f| f.backup.clone())
            .collect();
        deps.extend(m.parent.clone());
        BackupPoint {
            id: m.id.clone(),
            created_at_ms: m.created_at_ms,
            depends_on: deps.into_iter().collect(),
        }
    }
}

/// The verdict: ids to keep and to delete, each newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    pub keep: Vec<String>,
    pub delete: Vec<String>,
}

/// The calendar buckets a backup falls in: (day, ISO week, month, year), comparable.
fn periods(created_at_ms: u64) -> [(i32, u32); 4] {
    let secs = i64::try_from(created_at_ms / 1000).unwrap_or(i64::MAX);
    let t: DateTime<Utc> = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let week = t.iso_week();
    [
        (t.year(), t.ordinal()),
        (week.year(), week.week()),
        (t.year(), t.month()),
        (t.year(), 0),
    ]
}

/// Decides which of `backups` to keep under `rules`.
pub fn plan(backups: &[BackupPoint], rules: &RetentionRules) -> RetentionPlan {
    let mut newest_first: Vec<&BackupPoint> = backups.iter().collect();
    newest_first.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    if rules.is_empty() {
        return RetentionPlan {
            keep: newest_first.iter().map(|b| b.id.clone()).collect(),
            delete: Vec::new(),
        };
    }
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    keep.extend(
        newest_first
            .iter()
            .take(rules.keep_last as usize)
            .map(|b| b.id.as_str()),
    );
    // The newest backup stays whatever the rules say: retention never empties a destination.
    keep.extend(newest_first.first().map(|b| b.id.as_str()));
    let per_period = [
        rules.keep_daily,
        rules.keep_weekly,
        rules.keep_monthly,
        rules.keep_yearly,
    ];
    for (slot, count) in per_period.into_iter().enumerate() {
        let mut seen: BTreeSet<(i32, u32)> = BTreeSet::new();
        for b in &newest_first {
            if seen.len() == count as usize {
                break;
            }
            // Newest first: the first backup met in a period is that period's newest.
            if seen.insert(periods(b.created_at_ms)[slot]) {
                keep.insert(&b.id);
            }
        }
    }
    let by_id: HashMap<&str, &BackupPoint> = backups.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut todo: Vec<&str> = keep.iter().copied().collect();
    while let Some(id) = todo.pop() {
        let Some(b) = by_id.get(id) else { continue };
        for dep in &b.depends_on {
            if keep.insert(dep.as_str()) {
                todo.push(dep.as_str());
            }
        }
    }
    let (kept, deleted): (Vec<&BackupPoint>, Vec<&BackupPoint>) = newest_first
        .into_iter()
        .partition(|b| keep.contains(b.id.as_str()));
    RetentionPlan {
        keep: kept.into_iter().map(|b| b.id.clone()).collect(),
        delete: deleted.into_iter().map(|b| b.id.clone()).collect(),
    }
}

/// Applies `rules` to the backups in `dest`: each deleted backup loses its manifest first (so
/// a half-deleted backup is no longer listed, never restored), then its objects. Returns the
/// plan carried out.
pub fn apply(dest: &dyn Destination, rules: &RetentionRules) -> Result<RetentionPlan> {
    let manifests = list_backups(dest)?;
    let points: Vec<BackupPoint> = manifests.iter().map(BackupPoint::from_manifest).collect();
    let verdict = plan(&points, rules);
    let kept: BTreeMap<&str, ()> = verdict.keep.iter().map(|id| (id.as_str(), ())).collect();
    for id in &verdict.delete {
        assert!(
            !kept.contains_key(id.as_str()),
            "backup {id} both kept and deleted"
        );
        dest.delete(&manifest_object(id))?;
        for object in dest.list(&format!("{id}/"))? {
            dest.delete(&object).map_err(|e| BackupError::Destination {
                destination: dest.describe(),
                object: object.clone(),
                reason: format!("retention of backup {id}: {e}"),
            })?;
        }
        tracing::info!(backup = %id, destination = %dest.describe(), "backup deleted by retention");
    }
    Ok(verdict)
}
