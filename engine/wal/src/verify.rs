//! Offline tools behind `mantisctl wal verify` and `mantisctl wal repair`.

use std::path::{Path, PathBuf};

use mantis_storage::Storage;

use crate::error::WalError;
use crate::recovery::{load_segments, recover_log, RecoveryReport};
use crate::scan::{scan, Problem, ScanMode};

/// An incomplete last chunk (bytes after the end of the log that are not zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes: u64,
}

/// What `verify` found. Nothing is changed on disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub segments: Vec<PathBuf>,
    /// LSN range of the valid prefix (`last_lsn < first_lsn` when it is empty).
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub chunks_ok: u64,
    pub records_ok: u64,
    /// Every bad chunk followed by valid data (damage in the middle), and every bad record
    /// inside such chunks. A chunk problem's `lsn` is the last good LSN before it; a record
    /// problem's is the record's own.
    pub problems: Vec<Problem>,
    /// LSNs after the first damage (what a repair would cut), if any.
    pub lost_lsns: Option<(u64, u64)>,
    pub torn_tail: Option<TornTail>,
}

impl VerifyReport {
    /// No damage in the middle (a torn tail is normal after a crash and is not damage).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads the whole WAL in `dir` and reports every bad chunk and record, without changing
/// anything. Must run on a glommio executor.
pub async fn verify(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
) -> Result<VerifyReport, WalError> {
    let (segments, _) = load_segments(storage, dir, shard).await?;
    let mut report = VerifyReport {
        segments: segments.iter().map(|s| s.path.clone()).collect(),
        ..VerifyReport::default()
    };
    let Some(first) = segments.first() else {
        return Ok(report);
    };
    report.first_lsn = first.first_lsn;
    let mode = ScanMode {
        stop_at_first_break: false,
        inspect_records: true,
    };
    let out = scan(storage, shard, &segments, mode, &mut |_| Ok(())).await?;
    report.last_lsn = out.last_lsn;
    report.chunks_ok = out.chunks;
    report.records_ok = out.records;
    report.problems = out.problems;
    report.lost_lsns = out.lost.map(|l| (l.first_lsn, l.last_lsn));
    if out.final_nonzero_end > out.final_pos.off {
        report.torn_tail = Some(TornTail {
            file: segments[out.final_pos.seg].path.clone(),
            offset: out.final_pos.off,
            bytes: out.final_nonzero_end - out.final_pos.off,
        });
    }
    Ok(report)
}

/// Repairs the WAL in `dir` offline: a torn tail is zeroed; at damage in the middle the log
/// is cut, the cut bytes kept in `lost-<lsn>.bin`, and the lost LSNs reported in
/// `repaired`. Nothing is replayed. Must run on a glommio executor.
pub async fn repair(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
) -> Result<RecoveryReport, WalError> {
    let rec = recover_log(storage, dir, shard, true, None, &mut |_| Ok(())).await?;
    Ok(rec.report)
}
