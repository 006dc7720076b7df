//! Issue 10: the link between one shard's WAL and the archiver (a std thread): the WAL
//! publishes its durable LSN here, the archiver publishes what it has shipped, and the
//! preparer never recycles a segment holding a record above the archived LSN — the archiver
//! reads unarchived records from the segment files themselves, so they must stay.
//!
//! Atomics, because the two sides run on different threads; both values only grow.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ArchiveGate {
    durable_lsn: AtomicU64,
    archived_lsn: AtomicU64,
}

impl ArchiveGate {
    /// A gate with everything up to `archived_lsn` already archived (what the destination
    /// holds, or the LSN archiving starts after).
    pub fn new(archived_lsn: u64) -> ArchiveGate {
        ArchiveGate {
            durable_lsn: AtomicU64::new(0),
            archived_lsn: AtomicU64::new(archived_lsn),
        }
    }

    /// The last LSN the WAL knows durable: the archiver ships nothing above it.
    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn.load(Ordering::Acquire)
    }

    pub fn archived_lsn(&self) -> u64 {
        self.archived_lsn.load(Ordering::Acquire)
    }

    /// Records that every record up to `lsn` is stored at the destination (durably).
    pub fn set_archived(&self, lsn: u64) {
        self.archived_lsn.fetch_max(lsn, Ordering::AcqRel);
    }

    pub(crate) fn set_durable(&self, lsn: u64) {
        self.durable_lsn.fetch_max(lsn, Ordering::AcqRel);
    }
}
