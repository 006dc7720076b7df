//! WAL pins: records a two-phase-commit resolution still needs after a crash.
//!
//! The manifest's `flushed_lsn` is where replay starts, and the WAL recycles what lies below
//! it. A `Prepare` at LSN p is needed by replay until the transaction's effect is in a segment:
//! while it is undecided (it must come back as in doubt), and after its `Commit` at LSN c
//! until a flush covers c (replaying the `Commit` needs the writes of the `Prepare`). A
//! coordinator's `Decision` is needed until its `End` is durable (recovery re-drives it). So a
//! flush may advance `flushed_lsn` only to just below the oldest pin, even if its segment
//! holds newer entries: replay then re-inserts those (same LSN, same value: harmless).
//!
//! Pins are registered in the WAL's durable hook, which runs in LSN order with the memtable
//! apply hooks: a memtable frozen before a pin's hook ran holds only smaller LSNs, so no
//! flush can pass a pin it did not see.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// Pinned LSNs of one shard's WAL, in two bounded sets.
///
/// `held`: records pinned until explicitly released (an undecided Prepare, a Decision without
/// a durable End); bounded by the prepared txns and open decisions.
///
/// `after_commit`: committed Prepares, keyed by their Commit's LSN, each needed until a flush
/// covers that Commit. Their number is bounded by nothing but the flush cadence (every
/// committed 2PC transaction adds one until the memtable holding its writes is flushed), so
/// past `AFTER_COMMIT_PINS_MAX` the newest two are merged into one that is at least as strict
/// (the later Commit, the earlier Prepare): a flush may then stop lower than it needed to,
/// which only makes replay re-insert more (same LSN, same value: harmless).
///
/// Story (2026-11-28, pgbench TPC-B at 450 tps): the pins of committed transactions were
/// counted against the prepared-transactions bound, and with a large memtable nothing flushed
/// for 9,000 transactions: `hold` asserted "WAL pins over their limit" and the shard panicked.
///
/// `awaiting_end` (parallel commit): committed Prepares whose coordinator's `End` is not
/// durable yet, by txn: (Prepare LSN, Commit LSN). Recovery commits a parallel Decision only if
/// every participant's Prepare (or Commit) is found, so a Prepare recycled while the Decision
/// is still open would read as "never prepared" and abort a committed transaction on the
/// participants that had not logged their Commit yet. When the End is durable the coordinator
/// tells the participants ([`Pins::end_durable`]) and the pin becomes an after-commit one.
#[derive(Default)]
pub(crate) struct Pins {
    held: RefCell<BTreeSet<u64>>,
    awaiting_end: RefCell<std::collections::HashMap<u64, (u64, u64)>>,
    /// Commit LSN → the oldest Prepare LSN needed until a flush covers that Commit.
    after_commit: RefCell<BTreeMap<u64, u64>>,
}

/// Held pins of one shard, at most: a prepared txn or an open decision holds one each.
pub const PINS_MAX: usize = 2 * super::PREPARED_TXNS_MAX;

/// Committed Prepares awaiting their coordinator's End on one shard, at most: a participant
/// refuses new Prepares beyond `ENDS_AWAITED_MAX` (each one is a prepared txn, so at most
/// `PREPARED_TXNS_MAX` more can join while it is full).
pub const ENDS_AWAITED_MAX: usize = super::PREPARED_TXNS_MAX;

/// After-commit pins kept apart before the newest are merged (see `Pins`).
pub const AFTER_COMMIT_PINS_MAX: usize = 1024;

impl Pins {
    pub fn hold(&self, lsn: u64) {
        assert!(lsn > 0, "pinning LSN 0");
        let mut held = self.held.borrow_mut();
        assert!(held.len() < PINS_MAX, "WAL pins over their limit");
        let fresh = held.insert(lsn);
        assert!(fresh, "LSN {lsn} pinned twice");
    }

    /// The record at `lsn` is needed until a flush covers `until_lsn`.
    pub fn until_flushed(&self, lsn: u64, until_lsn: u64) {
        assert!(until_lsn > lsn, "a commit precedes its prepare");
        if !self.held.borrow_mut().remove(&lsn) {
            return;
        }
        let mut after = self.after_commit.borrow_mut();
        let prepare_lsn = match after.get(&until_lsn) {
            Some(&other) => other.min(lsn),
            None => lsn,
        };
        after.insert(until_lsn, prepare_lsn);
        if after.len() > AFTER_COMMIT_PINS_MAX {
            // Merge the two newest: keep the later Commit with the earlier Prepare.
            let newest = after.pop_last();
            let second = after.pop_last();
            if let (Some((c_new, l_new)), Some((_, l_second))) = (newest, second) {
                after.insert(c_new, l_new.min(l_second));
            }
        }
        assert!(after.len() <= AFTER_COMMIT_PINS_MAX);
    }

    /// Committed `txn` (Prepare at `lsn`, Commit at `commit_lsn`) stays pinned until its
    /// coordinator's End is durable ([`Pins::end_durable`]).
    pub fn until_end(&self, txn: u64, lsn: u64, commit_lsn: u64) {
        assert!(commit_lsn > lsn, "a commit precedes its prepare");
        if !self.held.borrow_mut().remove(&lsn) {
            return;
        }
        let mut awaiting = self.awaiting_end.borrow_mut();
        assert!(
            awaiting.len() < ENDS_AWAITED_MAX + super::PREPARED_TXNS_MAX,
            "pins awaiting End over their limit"
        );
        let old = awaiting.insert(txn, (lsn, commit_lsn));
        assert!(old.is_none(), "txn {txn:#x} committed twice");
    }

    /// The coordinator's End of `txn` is durable: its Prepare is needed until a flush covers
    /// its Commit, no longer.
    pub fn end_durable(&self, txn: u64) {
        let found = self.awaiting_end.borrow_mut().remove(&txn);
        if let Some((lsn, commit_lsn)) = found {
            self.held.borrow_mut().insert(lsn);
            self.until_flushed(lsn, commit_lsn);
        }
    }

    /// Every open Decision is closed (recovery wrote their Ends): no committed Prepare waits
    /// for an End any more.
    pub fn all_ends_durable(&self) {
        let txns: Vec<u64> = self.awaiting_end.borrow().keys().copied().collect();
        for txn in txns {
            self.end_durable(txn);
        }
    }

    pub fn awaiting_end_len(&self) -> usize {
        self.awaiting_end.borrow().len()
    }

    pub fn release(&self, lsn: u64) {
        self.held.borrow_mut().remove(&lsn);
    }

    /// How far a flush of everything up to `lsn_max` may advance `flushed_lsn`: `lsn_max`, or
    /// just below the oldest pin the flush does not release.
    pub fn flush_cap(&self, lsn_max: u64) -> u64 {
        let oldest_awaiting = self.awaiting_end.borrow().values().map(|&(p, _)| p).min();
        let oldest_held = match (self.held.borrow().first().copied(), oldest_awaiting) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let oldest_after = self
            .after_commit
            .borrow()
            .range(lsn_max.saturating_add(1)..)
            .map(|(_, &prepare_lsn)| prepare_lsn)
            .min();
        match (oldest_held, oldest_after) {
            (None, None) => lsn_max,
            (a, b) => {
                let oldest = a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX));
                lsn_max.min(oldest - 1)
            }
        }
    }

    /// A flush of everything up to `lsn_max` is durable: drops the pins it releases.
    pub fn flushed(&self, lsn_max: u64) {
        let mut after = self.after_commit.borrow_mut();
        let kept = after.split_off(&lsn_max.saturating_add(1));
        *after = kept;
    }

    pub fn len(&self) -> usize {
        self.held.borrow().len() + self.after_commit.borrow().len() + self.awaiting_end_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_stops_below_the_oldest_pin_until_its_commit_is_flushed() {
        let pins = Pins::default();
        assert_eq!(pins.flush_cap(50), 50);
        pins.hold(10);
        pins.hold(20);
        assert_eq!(pins.flush_cap(50), 9);
        assert_eq!(pins.flush_cap(5), 5);
        pins.until_flushed(10, 30);
        assert_eq!(pins.flush_cap(25), 9, "commit at 30 not covered yet");
        assert_eq!(pins.flush_cap(35), 19, "pin 20 still held");
        pins.flushed(35);
        assert_eq!(pins.len(), 1);
        pins.release(20);
        assert_eq!(pins.flush_cap(35), 35);
    }

    /// Parallel commit: a committed Prepare stays pinned past the flush of its Commit until
    /// the coordinator's End is durable (else a crash with the Decision still open would find
    /// the Prepare recycled, read it as "never prepared" and abort a committed txn).
    #[test]
    fn committed_prepare_stays_pinned_until_the_end_is_durable() {
        let pins = Pins::default();
        pins.hold(10);
        pins.until_end(7, 10, 30);
        assert_eq!(pins.flush_cap(50), 9, "End not durable: the Prepare stays");
        pins.flushed(50);
        assert_eq!(pins.flush_cap(50), 9);
        pins.end_durable(7);
        assert_eq!(pins.flush_cap(25), 9, "commit at 30 not covered yet");
        assert_eq!(pins.flush_cap(50), 50);
        pins.flushed(50);
        assert_eq!(pins.len(), 0);
    }

    #[test]
    fn committed_pins_stay_bounded_without_flushes_and_merge_conservatively() {
        let pins = Pins::default();
        // Far more committed transactions than any bound, none flushed.
        for i in 0..(3 * PINS_MAX as u64) {
            let prepare = 10 + 2 * i;
            pins.hold(prepare);
            pins.until_flushed(prepare, prepare + 1);
        }
        assert!(pins.len() <= AFTER_COMMIT_PINS_MAX);
        let last_commit = 10 + 2 * (3 * PINS_MAX as u64 - 1) + 1;
        // A flush below the first Commit may not pass the first Prepare.
        assert_eq!(pins.flush_cap(10), 9);
        // One covering only the first Commit stops below the second Prepare (exact: old pins
        // are never merged).
        assert_eq!(pins.flush_cap(12), 11);
        pins.flushed(12);
        assert_eq!(pins.flush_cap(100), 99);
        // The newest pins were merged: at least as strict as the exact answer.
        assert!(pins.flush_cap(last_commit - 1) <= last_commit - 2);
        // A flush covering everything releases everything.
        pins.flushed(last_commit);
        assert_eq!(pins.len(), 0);
        assert_eq!(pins.flush_cap(last_commit + 5), last_commit + 5);
    }
}
