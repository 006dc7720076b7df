//! Errors of the WAL. Every variant names the shard, and where there is one the file, the
//! offset and the LSN, so that an operator reading one log line knows where to look.
//!
//! `WalError` is `Clone` (storage causes sit behind an `Arc`) because one failed group commit
//! fails every append of its batch, and a poisoned WAL hands its original cause to every later
//! caller.

use std::path::PathBuf;
use std::sync::Arc;

use mantis_storage::StorageError;

/// Why a chunk or a record was not accepted as part of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    #[error("zero block where a chunk header was expected, with data after it")]
    MissingHeader,
    #[error("bad chunk magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("unsupported chunk format version {found}")]
    BadVersion { found: u16 },
    #[error("chunk header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("chunk payload checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    PayloadChecksum { stored: u32, computed: u32 },
    #[error(
        "record LSN {lsn} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
    )]
    RecordChecksum {
        lsn: u64,
        stored: u32,
        computed: u32,
    },
    #[error("bad record framing: {detail}")]
    RecordFraming { detail: &'static str },
    #[error("chunk belongs to segment {found}, not to this segment {expected} (stale data)")]
    ForeignSegment { expected: u64, found: u64 },
    #[error("chunk starts at LSN {found}, expected {expected}")]
    LsnMismatch { expected: u64, found: u64 },
    #[error("chunk ends at byte {end}, past the end of the segment ({segment_size_bytes} bytes)")]
    ChunkBeyondSegment { end: u64, segment_size_bytes: u64 },
    #[error("segment starts at LSN {found}, expected {expected}: segments are missing")]
    SegmentGap { expected: u64, found: u64 },
}

/// Everything the WAL can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// The filesystem is full. Nothing of the failed batch was acknowledged and the log did not
    /// advance; appends work again once space is free. The WAL is NOT poisoned.
    #[error("shard {shard}: disk full during {op} on {file}; nothing of this batch was written, retry when space is free")]
    DiskFull {
        shard: usize,
        op: &'static str,
        file: PathBuf,
        #[source]
        source: Arc<StorageError>,
    },
    /// fdatasync failed: the records of this batch may or may not be on disk, and a retried
    /// sync cannot be trusted (fsyncgate). The WAL is poisoned from here on.
    #[error(
        "shard {shard}: fdatasync of {file} failed for LSNs {first_lsn}..={last_lsn}; WAL poisoned"
    )]
    SyncFailed {
        shard: usize,
        file: PathBuf,
        first_lsn: u64,
        last_lsn: u64,
        #[source]
        source: Arc<StorageError>,
    },
    /// Any other storage failure.
    #[error("shard {shard}: {op} failed on {file}")]
    Storage {
        shard: usize,
        op: &'static str,
        file: PathBuf,
        #[source]
        source: Arc<StorageError>,
    },
    /// An earlier failure made the on-disk state uncertain; every append fails until the shard
    /// is restarted (and recovers from what is really on disk).
    #[error("shard {shard}: WAL poisoned by an earlier failure, restart the shard: {cause}")]
    Poisoned {
        shard: usize,
        #[source]
        cause: Arc<WalError>,
    },
    /// A bad chunk with valid, later chunks after it: acknowledged data may be lost. Refused
    /// unless repair is asked for. `lsn` is the last good LSN before the damage.
    #[error("shard {shard}: WAL corrupt in {file} at offset {offset} after LSN {lsn}: {reason}")]
    Corrupt {
        shard: usize,
        file: PathBuf,
        offset: u64,
        lsn: u64,
        reason: CorruptReason,
    },
    /// The log starts after the first LSN the caller needs: records are missing.
    #[error("shard {shard}: WAL starts at LSN {log_first_lsn}, but replay from LSN {replay_from_lsn} needs LSN {} onwards", replay_from_lsn + 1)]
    HistoryMissing {
        shard: usize,
        log_first_lsn: u64,
        replay_from_lsn: u64,
    },
    #[error("shard {shard}: record of {len_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    RecordTooLarge {
        shard: usize,
        len_bytes: usize,
        max_bytes: usize,
    },
    #[error("shard {shard}: WAL is closed")]
    Closed { shard: usize },
    #[error("invalid WAL configuration: {reason}")]
    Config { reason: String },
    /// The replay callback refused a record.
    #[error("shard {shard}: replay of LSN {lsn} failed: {reason}")]
    Replay {
        shard: usize,
        lsn: u64,
        reason: String,
    },
}

impl WalError {
    /// Wraps a storage error, keeping ENOSPC recognisable as [`WalError::DiskFull`].
    pub(crate) fn storage(shard: usize, op: &'static str, err: StorageError) -> Self {
        let file = match &err {
            StorageError::DiskFull { path, .. }
            | StorageError::SyncFailed { path, .. }
            | StorageError::Io { path, .. }
            | StorageError::Misaligned { path, .. }
            | StorageError::ShortRead { path, .. }
            | StorageError::NotFound { path } => path.clone(),
        };
        let source = Arc::new(err);
        if source.is_disk_full() {
            WalError::DiskFull {
                shard,
                op,
                file,
                source,
            }
        } else {
            WalError::Storage {
                shard,
                op,
                file,
                source,
            }
        }
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, WalError::DiskFull { .. })
    }

    pub fn is_poisoned(&self) -> bool {
        matches!(self, WalError::Poisoned { .. })
    }
}
