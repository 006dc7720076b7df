//! Recovery: read the log back, replay it, and leave it in a state where appends can go on:
//! a torn tail zeroed, damage in the middle refused (or, with repair, cut off and kept in a
//! lost file), segments after the end removed.

use std::path::{Path, PathBuf};

use mantis_storage::{OpenMode, Storage, StorageError};

use crate::error::{CorruptReason, WalError};
use crate::frame::WalRecord;
use crate::lost::{write_lost_file, LostRegion};
use crate::scan::{nonzero_end, scan, Pos, ScanMode, ScanOutcome};
use crate::segment::{list_dir, zero_fill, SegmentFile};

/// What a repair cut from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the log was cut (the first bad chunk, or the gap).
    pub file: PathBuf,
    pub offset: u64,
    pub reason: CorruptReason,
    /// The log now ends at this LSN; appends continue after it.
    pub last_good_lsn: u64,
    /// LSNs `first_lost_lsn..=last_lost_lsn` were cut (`last < first` when nothing valid
    /// was found after the damage).
    pub first_lost_lsn: u64,
    pub last_lost_lsn: u64,
    pub records_lost: u64,
    /// Of the lost records, those still intact in the copy (recoverable by hand).
    pub intact_records_in_lost_file: u64,
    pub bytes_cut: u64,
    pub lost_file: PathBuf,
}

/// What `Wal::open` (or an offline repair) found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Records handed to the replay callback (those with LSN > `replay_from_lsn`).
    pub records_replayed: u64,
    /// Records in the valid log, replayed or not.
    pub records_in_log: u64,
    /// The last LSN of the log (appends continue after it).
    pub last_lsn: u64,
    /// Bytes of an incomplete last chunk that were zeroed (0: clean end).
    pub torn_tail_bytes: u64,
    /// Live segments after recovery.
    pub segments: usize,
    pub repaired: Option<RepairReport>,
}

pub(crate) struct RecoveredLog {
    /// Live segments, in order; the last one is where appends continue.
    pub segments: Vec<SegmentFile>,
    pub end_off: u64,
    pub last_lsn: u64,
    pub spares: Vec<PathBuf>,
    pub next_seq: u64,
    pub report: RecoveryReport,
}

fn io(shard: usize, op: &'static str) -> impl Fn(StorageError) -> WalError {
    move |e| WalError::storage(shard, op, e)
}

/// Lists the live segments with their sizes.
pub(crate) async fn load_segments(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
) -> Result<(Vec<SegmentFile>, crate::segment::DirListing), WalError> {
    let listing = list_dir(storage, dir)
        .await
        .map_err(io(shard, "list WAL directory"))?;
    let mut segments = Vec::with_capacity(listing.segments.len());
    for (first_lsn, path) in &listing.segments {
        let file = storage
            .open(path, OpenMode::Read)
            .await
            .map_err(io(shard, "open segment"))?;
        let size_bytes = file.size().await.map_err(io(shard, "stat segment"))?;
        let _ = file.close().await;
        if *first_lsn == 0 {
            return Err(WalError::Corrupt {
                shard,
                file: path.clone(),
                offset: 0,
                lsn: 0,
                reason: CorruptReason::SegmentGap {
                    expected: 1,
                    found: 0,
                },
            });
        }
        segments.push(SegmentFile {
            first_lsn: *first_lsn,
            path: path.clone(),
            size_bytes,
        });
    }
    Ok((segments, listing))
}

/// Recovers the log in `dir`. `replay_from` is `None` for offline tools (no history check,
/// nothing replayed); otherwise records with LSN > it go to `on_record`.
pub(crate) async fn recover_log(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
    repair: bool,
    replay_from: Option<u64>,
    on_record: &mut dyn FnMut(WalRecord) -> Result<(), WalError>,
) -> Result<RecoveredLog, WalError> {
    storage
        .create_dir_all(dir)
        .await
        .map_err(io(shard, "create WAL directory"))?;
    let (mut segments, listing) = load_segments(storage, dir, shard).await?;
    for tmp in &listing.temps {
        // A preparation or recycling that a crash interrupted: nothing live in it.
        storage
            .remove(tmp)
            .await
            .map_err(io(shard, "remove temporary segment"))?;
    }
    let mut report = RecoveryReport::default();
    let from = replay_from.unwrap_or(0);
    let (end_off, last_lsn) = if segments.is_empty() {
        (0, from)
    } else {
        if replay_from.is_some() && segments[0].first_lsn > from + 1 {
            return Err(WalError::HistoryMissing {
                shard,
                log_first_lsn: segments[0].first_lsn,
                replay_from_lsn: from,
            });
        }
        let mut replayed = 0u64;
        let mut cb = |rec: WalRecord| {
            if replay_from.is_some() && rec.lsn > from {
                replayed += 1;
                on_record(rec)
            } else {
                Ok(())
            }
        };
        let mode = ScanMode {
            stop_at_first_break: !repair,
            inspect_records: false,
        };
        let outcome = scan(storage, shard, &segments, mode, &mut cb).await?;
        report.records_replayed = replayed;
        report.records_in_log = outcome.records;
        let end = outcome.end;
        if let Some(problem) = &outcome.first_break {
            if !repair {
                return Err(WalError::Corrupt {
                    shard,
                    file: problem.file.clone(),
                    offset: problem.offset,
                    lsn: problem.lsn,
                    reason: problem.reason.clone(),
                });
            }
            report.repaired =
                Some(cut_damaged(storage, dir, shard, &segments, problem, &outcome).await?);
        } else {
            report.torn_tail_bytes =
                truncate_tail(storage, shard, &segments[end.seg], end.off, &outcome).await?;
        }
        remove_after(storage, dir, shard, &mut segments, end.seg).await?;
        (end.off, outcome.last_lsn)
    };
    if replay_from.is_some() && last_lsn < from && !segments.is_empty() {
        // Everything in the log is persisted elsewhere already, and appends must continue
        // after `from`: start a fresh chain (a gap inside one chain would read as damage).
        tracing::warn!(
            shard,
            last_lsn,
            replay_from = from,
            "WAL ends before the replay point; starting a new log"
        );
        for seg in segments.drain(..) {
            storage
                .remove(&seg.path)
                .await
                .map_err(io(shard, "remove segment"))?;
        }
        sync_dir(storage, dir, shard).await?;
        report.last_lsn = from;
        return Ok(RecoveredLog {
            segments,
            end_off: 0,
            last_lsn: from,
            spares: listing.spares,
            next_seq: listing.next_seq,
            report,
        });
    }
    report.last_lsn = last_lsn;
    report.segments = segments.len();
    if !listing.temps.is_empty() {
        sync_dir(storage, dir, shard).await?;
    }
    Ok(RecoveredLog {
        segments,
        end_off,
        last_lsn,
        spares: listing.spares,
        next_seq: listing.next_seq,
        report,
    })
}

async fn sync_dir(storage: &dyn Storage, dir: &Path, shard: usize) -> Result<(), WalError> {
    storage
        .sync_dir(dir)
        .await
        .map_err(io(shard, "sync WAL directory"))
}

/// Zeroes `[from, to)` of a segment and makes it durable.
async fn zero_range(
    storage: &dyn Storage,
    shard: usize,
    seg: &SegmentFile,
    from: u64,
    to: u64,
) -> Result<(), WalError> {
    let file = storage
        .open(&seg.path, OpenMode::ReadWrite)
        .await
        .map_err(io(shard, "open segment"))?;
    zero_fill(&*file, from, to)
        .await
        .map_err(io(shard, "zero torn tail"))?;
    file.sync().await.map_err(io(shard, "sync segment"))?;
    let _ = file.close().await;
    Ok(())
}

/// Zeroes the incomplete last chunk (if any) so it is never read again. Returns its bytes.
async fn truncate_tail(
    storage: &dyn Storage,
    shard: usize,
    seg: &SegmentFile,
    end_off: u64,
    outcome: &ScanOutcome,
) -> Result<u64, WalError> {
    // Without damage in the middle the scan stopped at the end of the prefix.
    assert_eq!(outcome.final_pos, outcome.end);
    let garbage_end = outcome.final_nonzero_end;
    if garbage_end <= end_off {
        return Ok(0);
    }
    tracing::warn!(shard, file = %seg.path.display(), offset = end_off, bytes = garbage_end - end_off, last_lsn = outcome.last_lsn, "WAL torn tail truncated");
    zero_range(storage, shard, seg, end_off, garbage_end).await?;
    Ok(garbage_end - end_off)
}

/// Repair: copy everything after the end of the valid prefix into a lost file, then cut.
async fn cut_damaged(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
    segments: &[SegmentFile],
    problem: &crate::scan::Problem,
    outcome: &ScanOutcome,
) -> Result<RepairReport, WalError> {
    let end: Pos = outcome.end;
    let mut regions = Vec::new();
    for (i, seg) in segments.iter().enumerate().skip(end.seg) {
        let from = if i == end.seg { end.off } else { 0 };
        let to = nonzero_end(storage, shard, seg, from).await?;
        if to > from {
            regions.push(LostRegion {
                path: seg.path.clone(),
                from,
                to,
            });
        }
    }
    let bytes_cut: u64 = regions.iter().map(|r| r.to - r.from).sum();
    let first_lost_lsn = outcome.last_lsn + 1;
    let lost_file = write_lost_file(storage, dir, shard, first_lost_lsn, &regions).await?;
    if let Some(first) = regions.first() {
        if first.path == segments[end.seg].path {
            zero_range(storage, shard, &segments[end.seg], first.from, first.to).await?;
        }
    }
    let problem = problem.clone();
    let lost = outcome.lost.clone().unwrap_or(crate::scan::LostRange {
        first_lsn: first_lost_lsn,
        last_lsn: outcome.last_lsn,
        intact_records: 0,
    });
    let report = RepairReport {
        file: problem.file,
        offset: problem.offset,
        reason: problem.reason,
        last_good_lsn: outcome.last_lsn,
        first_lost_lsn,
        last_lost_lsn: lost.last_lsn,
        records_lost: lost.last_lsn.saturating_sub(outcome.last_lsn),
        intact_records_in_lost_file: lost.intact_records,
        bytes_cut,
        lost_file,
    };
    tracing::error!(
        shard,
        ?report,
        "WAL repaired: log cut at damage, lost records kept in a file"
    );
    Ok(report)
}

/// Removes the segments after index `last_kept` (they hold nothing valid any more).
async fn remove_after(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
    segments: &mut Vec<SegmentFile>,
    last_kept: usize,
) -> Result<(), WalError> {
    if last_kept.saturating_add(1) >= segments.len() {
        return Ok(());
    }
    for seg in segments.drain(last_kept + 1..) {
        storage
            .remove(&seg.path)
            .await
            .map_err(io(shard, "remove segment"))?;
    }
    sync_dir(storage, dir, shard).await
}
