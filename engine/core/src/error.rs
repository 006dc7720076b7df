//! Errors of the engine layer. Each names the shard, and wraps the lower layer's error (which
//! names the file, offset and LSN) rather than flattening it to a string.

use mantis_storage::StorageError;
use mantis_table::TableError;
use mantis_wal::WalError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("shard {shard}: disk full; the write was not applied (it will succeed again once space is freed)")]
    DiskFull { shard: usize },
    #[error("shard {shard} is read-only after a failed fdatasync ({cause}); restart after fixing the disk")]
    ReadOnly { shard: usize, cause: String },
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("empty keys are not allowed")]
    EmptyKey,
    #[error("invalid expire time: {reason}")]
    TtlOverflow { reason: String },
    #[error("shard {shard}: corruption: {source}")]
    Corruption {
        shard: usize,
        #[source]
        source: TableError,
    },
    #[error("shard {shard}: {source}")]
    Table {
        shard: usize,
        #[source]
        source: TableError,
    },
    // The WAL's errors already name their shard.
    #[error("{source}")]
    Wal {
        shard: usize,
        #[source]
        source: WalError,
    },
    #[error("shard {shard}: {source}")]
    Storage {
        shard: usize,
        #[source]
        source: StorageError,
    },
    #[error("shard {shard}: manifest {file}: {reason}")]
    Manifest {
        shard: usize,
        file: String,
        reason: String,
    },
    #[error("data directory {dir}: {reason}")]
    Layout { dir: String, reason: String },
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("could not start shard {shard}: {reason}")]
    Startup { shard: usize, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("checkpoint {checkpoint}: {path}: {reason}")]
    Checkpoint {
        checkpoint: String,
        path: String,
        reason: String,
    },
    /// Issue 10: a checkpoint's global cut gave up waiting for transactions past their
    /// Decision to finish committing (a participant did not answer). Nothing was cut; the
    /// gates reopened, so a later checkpoint can succeed.
    #[error(
        "checkpoint barrier: shard {shard} still had {committing} two-phase commit(s) past their \
         Decision after {waited_ms} ms (a participant is not answering); no checkpoint was taken"
    )]
    CheckpointBarrierTimeout {
        shard: usize,
        committing: usize,
        waited_ms: u64,
    },
    #[error("no checkpoint {id}")]
    CheckpointNotFound { id: String },
    #[error("checkpoint {id} holds files that checkpoint {by} uses; delete {by} first")]
    CheckpointInUse { id: String, by: String },
}

impl EngineError {
    pub fn is_disk_full(&self) -> bool {
        matches!(self, EngineError::DiskFull { .. })
    }

    pub fn is_read_only(&self) -> bool {
        matches!(self, EngineError::ReadOnly { .. })
    }

    /// Errors caused by what the client sent (as opposed to the server's state).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            EngineError::ValueTooLarge { .. }
                | EngineError::KeyTooLarge { .. }
                | EngineError::EmptyKey
                | EngineError::TtlOverflow { .. }
                | EngineError::Invalid(_)
        )
    }

    pub fn is_corruption(&self) -> bool {
        matches!(self, EngineError::Corruption { .. })
    }

    pub(crate) fn storage(shard: usize, source: StorageError) -> Self {
        if source.is_disk_full() {
            EngineError::DiskFull { shard }
        } else {
            EngineError::Storage { shard, source }
        }
    }

    pub(crate) fn table(shard: usize, source: TableError) -> Self {
        if source.is_corruption() {
            EngineError::Corruption { shard, source }
        } else if source.is_disk_full() {
            EngineError::DiskFull { shard }
        } else {
            EngineError::Table { shard, source }
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
