//! Errors of the storage layer. Every variant names the file and, where it has one, the offset,
//! so that an operator reading a log line knows where to look.

use std::path::PathBuf;

/// What went wrong below the engine: the disk, the filesystem, or an injected fault.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The filesystem has no room for the write (ENOSPC / EDQUOT). Nothing was written.
    #[error("disk full: {op} on {path} at offset {offset}")]
    DiskFull {
        op: &'static str,
        path: PathBuf,
        offset: u64,
    },
    /// fdatasync failed. The data written since the last good sync may be gone even if a later
    /// sync succeeds (fsyncgate), so the caller must never retry and trust it.
    #[error("fdatasync failed on {path}: {source}")]
    SyncFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Any other I/O error, with the operation that failed.
    #[error("{op} failed on {path} at offset {offset}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// A direct-I/O request that was not aligned: a bug in the caller, caught before the kernel.
    #[error("misaligned {op} on {path}: offset {offset}, length {len} (alignment {alignment})")]
    Misaligned {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        len: usize,
        alignment: usize,
    },
    /// A read that ended before the requested length.
    #[error("short read on {path} at offset {offset}: wanted {wanted} bytes, got {got}")]
    ShortRead {
        path: PathBuf,
        offset: u64,
        wanted: usize,
        got: usize,
    },
    #[error("file not found: {path}")]
    NotFound { path: PathBuf },
}

impl StorageError {
    /// Builds an error from an `io::Error`, turning ENOSPC and EDQUOT into [`StorageError::DiskFull`].
    pub fn from_io(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: u64,
        source: std::io::Error,
    ) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StorageError::DiskFull { op, path, offset },
            Some(libc::ENOENT) => StorageError::NotFound { path },
            _ => StorageError::Io {
                op,
                path,
                offset,
                source,
            },
        }
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
