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
//!
//! Archived WAL pieces (`wal/shard-<n>/…`, issue 10) go with the backups: point-in-time
//! recovery from a base backup replays only records past that backup's `flushed_lsn`, so a
//! piece whose last LSN is at or below the lowest `flushed_lsn` of every kept backup (per
//! shard) serves no restore any more and is deleted ([`prunable_pieces`]). A piece that
//! reaches past that LSN, however little, is kept whole; with no backup kept, or a shard some
//! kept backup does not cover, nothing of that shard is deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::piece::{list_pieces, PieceName};
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
    /// Archived WAL pieces deleted ([`apply`] only; [`plan`] leaves it empty).
    pub wal_pieces_deleted: Vec<String>,
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
            ..RetentionPlan::default()
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
        wal_pieces_deleted: Vec::new(),
    }
}

/// The lowest `flushed_lsn` of `shard` among the `kept` backups: point-in-time recovery from
/// any of them replays only records above it. None when nothing is kept or some kept backup
/// does not cover the shard (then no piece of it is known to be useless).
pub fn pitr_floor_lsn(kept: &[BackupManifest], shard: usize) -> Option<u64> {
    let mut floor: Option<u64> = None;
    for m in kept {
        let lsn = m.shards.iter().find(|s| s.shard == shard)?.flushed_lsn;
        floor = Some(floor.map_or(lsn, |f| f.min(lsn)));
    }
    floor
}

/// The pieces (of one shard) that no restore from a kept backup reads: wholly at or below
/// `floor_lsn` (see [`pitr_floor_lsn`]). None keeps every piece.
pub fn prunable_pieces(pieces: &[PieceName], floor_lsn: Option<u64>) -> Vec<PieceName> {
    let Some(floor) = floor_lsn else {
        return Vec::new();
    };
    pieces
        .iter()
        .filter(|p| p.last_lsn <= floor)
        .cloned()
        .collect()
}

/// Deletes the archived WAL pieces no kept backup's recovery can use; returns their names.
fn prune_pieces(dest: &dyn Destination, kept: &[BackupManifest]) -> Result<Vec<String>> {
    let shards = kept.iter().map(|m| m.shard_count).max().unwrap_or(0);
    let mut deleted = Vec::new();
    for shard in 0..shards {
        let floor = pitr_floor_lsn(kept, shard);
        for p in prunable_pieces(&list_pieces(dest, shard)?, floor) {
            // The invariant the whole pass rests on: nothing a kept base replays goes.
            assert!(
                floor.is_some_and(|f| p.last_lsn <= f),
                "piece {} is needed by a kept backup",
                p.object
            );
            dest.delete(&p.object)
                .map_err(|e| BackupError::Destination {
                    destination: dest.describe(),
                    object: p.object.clone(),
                    reason: format!("retention of archived WAL (shard {shard}): {e}"),
                })?;
            deleted.push(p.object);
        }
        if let Some(floor_lsn) = floor {
            tracing::info!(shard, floor_lsn, destination = %dest.describe(), "archived WAL below the oldest kept backup deleted");
        }
    }
    Ok(deleted)
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
    let kept_manifests: Vec<BackupManifest> = manifests
        .into_iter()
        .filter(|m| kept.contains_key(m.id.as_str()))
        .collect();
    let mut verdict = verdict;
    verdict.wal_pieces_deleted = prune_pieces(dest, &kept_manifests)?;
    Ok(verdict)
}
