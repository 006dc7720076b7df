//! MantisDB's per-shard write-ahead log.
//!
//! One [`Wal`] per shard, in the shard's `wal/` directory ([`wal_dir`]), made of preallocated,
//! zero-filled segment files written with 4 KiB-aligned direct I/O. Each group commit writes
//! one *chunk* (header + records, each framed with length, LSN, kind and CRC32) on a fresh
//! block and issues one fdatasync; [`Wal::append`] resolves only after the sync covering its
//! record. The on-disk layout is in `docs/formats.md, "Write-ahead log"`.
//!
//! ```text
//! let (wal, report) = Wal::open(storage, wal_dir(&shard_dir), shard, WalConfig::default(),
//!                               flushed_lsn, |rec| { apply(rec); Ok(()) }).await?;
//! let lsn = wal.append(KIND_PUT, bytes).await?;   // durable now
//! wal.mark_flushed(lsn_in_manifest);               // segments below it get recycled
//! ```
//!
//! Failure semantics:
//! - fdatasync fails: the batch fails with [`WalError::SyncFailed`] and the WAL is poisoned;
//!   every later append fails with [`WalError::Poisoned`] carrying that cause (a retried
//!   fsync cannot be trusted). Restart the shard: recovery reads what really is on disk.
//! - the disk is full: the batch fails with [`WalError::DiskFull`], nothing is acknowledged,
//!   the log does not advance, and appends work again once space is free. Segments are
//!   preallocated, so this can only happen when a new segment is needed.
//! - recovery: a torn tail (incomplete last chunk) is zeroed and counted; damage followed by
//!   valid chunks of higher LSNs is refused with [`WalError::Corrupt`] unless repair is asked.
//!
//! Everything runs on the shard's glommio executor (`!Send`); all I/O goes through
//! `mantis_storage::Storage`, so tests run the same code on the simulated faulty disk.

mod archive_gate;
mod commit;
mod config;
mod error;
pub mod frame;
mod lost;
mod prepare;
mod recovery;
mod scan;
mod segment;
mod signal;
mod stats;
mod verify;
mod wal;

use std::path::{Path, PathBuf};

pub use archive_gate::ArchiveGate;
pub use config::{
    WalConfig, PENDING_DEFAULT_BYTES, PENDING_LIMIT_BYTES, SEGMENT_SIZE_DEFAULT_BYTES,
    SEGMENT_SIZE_MIN_BYTES, SPARE_SEGMENTS_DEFAULT,
};
pub use error::{CorruptReason, WalError};
// Issue 10: the archiver and point-in-time recovery read and write chunks themselves.
pub use frame::{
    chunk_len_bytes, decode_payload, encode_chunk, encode_chunk_with, record_header_bytes,
    ChunkHeader, CHUNK_HEADER_BYTES,
};
pub use frame::{WalRecord, RECORD_PAYLOAD_MAX_BYTES};
pub use lost::{LOST_FORMAT_VERSION, LOST_MAGIC};
pub use mantis_integrity::Algorithm as ChecksumAlgorithm;
pub use recovery::{RecoveryReport, RepairReport};
pub use scan::Problem;
pub use segment::{segment_file_name, SPARE_SUFFIX, TEMP_SUFFIX};
pub use stats::WalStats;
pub use verify::{repair, verify, TornTail, VerifyReport};
pub use wal::{DurableHook, Wal};

/// The WAL directory of a shard directory.
pub fn wal_dir(shard_dir: &Path) -> PathBuf {
    shard_dir.join(mantis_storage::format::WAL_DIR)
}
