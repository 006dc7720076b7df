//! Errors of the lock manager, each with the SQLSTATE a SQL front end reports for it.

use crate::config::VictimStrategy;
use crate::resource::{ResourceId, TxnId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The transaction was chosen to break a deadlock; its locks are released. It must roll back.
    #[error("deadlock detected on shard {shard}: {txn} chosen as victim ({strategy:?}) in a cycle of {cycle_len} transactions, while waiting for {resource:?}")]
    Deadlock {
        shard: u32,
        txn: TxnId,
        resource: Option<ResourceId>,
        strategy: VictimStrategy,
        cycle_len: usize,
    },
    /// The wait exceeded the adaptive lock-wait timeout.
    #[error("lock wait timeout on shard {shard}: {txn} waited {waited_us} us for {mode} on {resource} (limit {timeout_us} us)")]
    Timeout {
        shard: u32,
        txn: TxnId,
        resource: ResourceId,
        mode: crate::LockMode,
        waited_us: u64,
        timeout_us: u64,
    },
    /// Every pooled record is in use: the shard's declared lock-table limit.
    #[error("lock table full on shard {shard}: {records_max} {what} records in use")]
    Capacity {
        shard: u32,
        what: &'static str,
        records_max: usize,
    },
    /// A transaction waits for at most one lock at a time (its statements run one after another).
    #[error("{txn} already waits for a lock on shard {shard}")]
    AlreadyWaiting { shard: u32, txn: TxnId },
    /// The transaction ended (or the wait was cancelled) while the request was queued.
    #[error("lock wait of {txn} on {resource} cancelled on shard {shard}")]
    Cancelled {
        shard: u32,
        txn: TxnId,
        resource: ResourceId,
    },
}

impl LockError {
    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            LockError::Deadlock { .. } => "40P01", // deadlock_detected
            LockError::Timeout { .. } => "55P03",  // lock_not_available
            LockError::Capacity { .. } => "53200", // out_of_memory
            LockError::AlreadyWaiting { .. } => "25000", // invalid_transaction_state
            LockError::Cancelled { .. } => "57014", // query_canceled
        }
    }

    /// Whether the transaction must roll back (serialization failures the client may retry).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LockError::Deadlock { .. } | LockError::Timeout { .. })
    }
}
