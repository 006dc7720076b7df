//! Errors of the segment layer. Every corruption names the file and the byte offset of the
//! structure that failed, so that an operator (or the scrubber) knows exactly where to look.

use std::path::PathBuf;

use mantis_storage::StorageError;

/// What went wrong reading or writing a segment file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The disk or filesystem failed underneath us.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored bytes do not match their CRC32: the data is not returned.
    #[error("checksum mismatch in {file} at offset {offset}: expected {expected:#010x}, found {found:#010x}")]
    ChecksumMismatch {
        file: PathBuf,
        offset: u64,
        expected: u32,
        found: u32,
    },
    /// Stored bytes do not match their MD5 or SHA-256 digest (segments written with
    /// `block_checksum` other than CRC32): the data is not returned.
    #[error("{algorithm} digest mismatch in {file} at offset {offset}: expected {expected}, found {found}")]
    DigestMismatch {
        file: PathBuf,
        offset: u64,
        algorithm: &'static str,
        expected: String,
        found: String,
    },
    /// A structure is impossible (bad length, undecodable compression, out-of-order keys).
    #[error("corrupt segment {file} at offset {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The last bytes of the file are not a segment footer.
    #[error("not a segment file: {file}: bad magic {found:#018x} at offset {offset}")]
    BadMagic {
        file: PathBuf,
        offset: u64,
        found: u64,
    },
    /// A segment written by a newer (or unknown) format version.
    #[error(
        "segment {file} has unsupported format version {found} (this build reads {supported})"
    )]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("key of {len} bytes exceeds the segment limit of {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes exceeds the segment limit of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    /// The point-lookup filter could not be built (binary fuse peeling failed on every try;
    /// with distinct hashes that is not expected to happen).
    #[error("segment {file}: building the filter over {keys} keys failed: {reason}")]
    FilterBuild {
        file: PathBuf,
        keys: u64,
        reason: &'static str,
    },
    /// The segment would need an index or filter larger than a reader accepts.
    #[error("segment {file} too large: {what} of {len} bytes exceeds {max} bytes")]
    SegmentTooLarge {
        file: PathBuf,
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid segment writer options: {reason}")]
    InvalidOptions { reason: String },
}

impl TableError {
    /// True when the file's contents are damaged (as opposed to the disk failing to answer).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            TableError::ChecksumMismatch { .. }
                | TableError::DigestMismatch { .. }
                | TableError::Corrupt { .. }
                | TableError::BadMagic { .. }
                | TableError::UnsupportedVersion { .. }
        )
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, TableError::Storage(e) if e.is_disk_full())
    }

    pub(crate) fn corrupt(file: &std::path::Path, offset: u64, reason: impl Into<String>) -> Self {
        TableError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = TableError> = std::result::Result<T, E>;
