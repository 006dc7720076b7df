//! Issue 9: atomic multi-shard writes by two-phase commit through the shards' WALs.
//!
//! A batch whose keys fall on one shard keeps the fast path (one WAL record, one sync). A
//! batch over several shards runs this protocol (docs/concurrency.md, "Two-phase commit across
//! shards"):
//! - `coordinator.rs`: the calling shard (shard 0 from outside the shards) assigns the txn id,
//!   asks every participant to prepare while it writes its parallel `Decision` (committed iff
//!   the Decision and every Prepare are durable: one sync in the commit path), tells the
//!   participants to commit, then writes `End`;
//! - `participant.rs`: `Prepare` (synced, writes held invisible), `Commit` (apply at the commit
//!   record's LSN) and `Abort`;
//! - `recovery.rs`: replay keeps prepared-but-undecided txns aside; `Engine::open` resolves
//!   them from the coordinator's recovered log before the shards serve traffic;
//! - `pins.rs`: keeps the WAL records a resolution still needs from being flushed past and
//!   recycled;
//! - `record.rs`: the record kinds 3–7 and their encoding;
//! - `visible.rs`: decided writes readable from the moment the Decision is durable, before
//!   the participant's Commit record is (so `write_batch` answers one sync earlier).

pub(crate) mod coordinator;
pub mod hold;
pub(crate) mod participant;
pub(crate) mod pins;
pub mod record;
pub(crate) mod recovery;
pub(crate) mod visible;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::record::Mutation;

pub use coordinator::TpcStop;
pub use hold::{TpcHoldControl, TpcHoldPoint};

/// Transactions prepared and not yet committed or aborted on one shard, at most. Prepares
/// beyond it are refused (the transaction aborts): each holds its writes in memory.
pub const PREPARED_TXNS_MAX: usize = 4096;

/// Longest a participant's Commit record or a coordinator's End waits for another record's
/// sync to ride with before it asks for its own (nobody waits on them: the writes are
/// readable from the Decision on). Bounds how long a decided txn's WAL pin and key guards
/// outlive it on an idle shard.
pub(crate) const DEFERRED_RECORD_DELAY_MAX: std::time::Duration =
    std::time::Duration::from_millis(2);

/// Whether a failed append certainly left nothing in the log: the WAL refused the record
/// before queueing it (poisoned, closing, too large) or could not allocate it (ENOSPC: the
/// log did not advance). Any other failure (a write or sync error) may have reached the disk.
pub(crate) fn wal_refused(e: &mantis_wal::WalError) -> bool {
    use mantis_wal::WalError;
    matches!(
        e,
        WalError::DiskFull { .. }
            | WalError::Poisoned { .. }
            | WalError::Closed { .. }
            | WalError::RecordTooLarge { .. }
    )
}

/// Bits of a txn id below the coordinator's shard number.
pub const TXN_SHARD_SHIFT: u32 = 56;

/// The coordinator shard of a txn id.
pub fn txn_coordinator(txn: u64) -> usize {
    (txn >> TXN_SHARD_SHIFT) as usize
}

/// A participant's prepared transaction.
pub(crate) struct Prepared {
    pub coordinator: u32,
    /// The Prepare record's LSN, once durable (0 before).
    pub prepare_lsn: u64,
    pub writes: Vec<Mutation>,
}

/// A commit decision found in the coordinator's recovered log without its `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenDecision {
    pub txn: u64,
    pub committed_at_ms: u64,
    pub participants: Vec<u32>,
    /// A parallel-commit Decision: commits only if every participant's Prepare is found.
    pub parallel: bool,
}

/// What one shard's replay saw of two-phase-commit transactions, for resolving parallel
/// Decisions at open (taken and dropped by `recovery::resolve_in_doubt`). Bounded by the
/// records replayed (those since the manifest's `flushed_lsn`).
#[derive(Default)]
pub(crate) struct ReplayedTxns {
    /// Txns whose Prepare was replayed (committed, aborted or in doubt).
    pub prepared: std::collections::HashSet<u64>,
    /// Txns whose Commit record was replayed.
    pub committed: std::collections::HashSet<u64>,
    /// Txns whose Abort record was replayed.
    pub aborted: std::collections::HashSet<u64>,
}

/// One shard's two-phase-commit state.
#[derive(Default)]
pub(crate) struct ShardTpc {
    /// As participant: prepared, undecided transactions by txn id.
    pub prepared: RefCell<HashMap<u64, Prepared>>,
    /// Keys of `prepared`, with the number of prepared txns writing each: a read-modify-write
    /// of one waits (it would read around the prepared write).
    pub prepared_keys: RefCell<HashMap<Vec<u8>, usize>>,
    /// As participant: writes of decided txns whose Commit record is not applied yet.
    pub decided: visible::DecidedOverlay,
    pub pins: pins::Pins,
    /// As coordinator, after recovery: decisions to re-drive (taken by `Engine::open`).
    pub open_decisions: RefCell<Vec<OpenDecision>>,
    /// The low bits of the next txn id this shard coordinates.
    pub next_txn_counter: Cell<u64>,
    /// Counters for stats and tests.
    pub prepares: Cell<u64>,
    pub commits: Cell<u64>,
    pub aborts: Cell<u64>,
    /// Issue 10: holds new Decisions back while a checkpoint cuts every shard
    /// (`checkpoint::barrier`).
    pub cut_gate: crate::checkpoint::barrier::CutGate,
    /// After replay, until `resolve_in_doubt` closed every open Decision.
    pub replayed: RefCell<ReplayedTxns>,
    /// The oldest Prepare LSN of the txns committed during replay, pinned (0: none) until
    /// every open Decision is closed: recovery must find those Prepares again if it crashes.
    pub replay_pin_lsn: Cell<u64>,
    /// Prepared transactions found undecided at restart and resolved (committed or aborted)
    /// by `recovery::resolve_in_doubt`, on this participant.
    pub in_doubt_resolved: Cell<u64>,
    /// Issue 10, tests only: a transaction step to hold (`hold.rs`); None in production.
    pub(crate) hold: RefCell<Option<hold::ArmedHold>>,
}

/// One shard's two-phase-commit counters, as a participant (for `ShardStats` and
/// `/metrics`). Counted since the process started; `prepared_now` is a gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TpcStats {
    /// Prepare records written (the shard voted commit).
    pub prepared_total: u64,
    /// Commits applied, at run time or when an in-doubt txn was resolved.
    pub committed_total: u64,
    /// Prepared transactions aborted (a participant voted abort, or resolution found no
    /// decision).
    pub aborted_total: u64,
    /// In-doubt transactions resolved at restart (included in committed/aborted too).
    pub in_doubt_resolved_total: u64,
    /// Prepared and undecided now.
    pub prepared_now: u64,
}

impl ShardTpc {
    pub fn stats(&self) -> TpcStats {
        TpcStats {
            prepared_total: self.prepares.get(),
            committed_total: self.commits.get(),
            aborted_total: self.aborts.get(),
            in_doubt_resolved_total: self.in_doubt_resolved.get(),
            prepared_now: self.prepared.borrow().len() as u64,
        }
    }

    /// Whether a key is written by a prepared transaction.
    pub fn is_prepared_key(&self, key: &[u8]) -> bool {
        self.prepared_keys.borrow().contains_key(key)
    }

    pub(crate) fn hold_keys(&self, writes: &[Mutation]) {
        let mut keys = self.prepared_keys.borrow_mut();
        for m in writes {
            *keys.entry(m.key().to_vec()).or_insert(0) += 1;
        }
    }

    pub(crate) fn release_keys(&self, writes: &[Mutation]) {
        let mut keys = self.prepared_keys.borrow_mut();
        for m in writes {
            if let Some(n) = keys.get_mut(m.key()) {
                *n -= 1;
                if *n == 0 {
                    keys.remove(m.key());
                }
            }
        }
    }

    /// A fresh txn id for coordinator `shard`: unique across restarts because the counter
    /// starts above both the wall clock in microseconds and every id in the recovered log.
    pub fn next_txn(&self, shard: usize) -> u64 {
        assert!(
            shard < 1 << (64 - TXN_SHARD_SHIFT),
            "shard {shard} does not fit a txn id"
        );
        let mask = (1u64 << TXN_SHARD_SHIFT) - 1;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let counter = self.next_txn_counter.get().max(now_us & mask);
        self.next_txn_counter.set(counter + 1);
        ((shard as u64) << TXN_SHARD_SHIFT) | (counter & mask)
    }
}
