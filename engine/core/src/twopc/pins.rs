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
use std::collections::BTreeMap;

/// Why a record is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pin {
    /// Until explicitly released (undecided Prepare, Decision without a durable End).
    Held,
    /// Until a flush covers this LSN (the Commit whose applied writes need the Prepare).
    UntilFlushed(u64),
}

/// Pinned LSNs of one shard's WAL. Bounded by the prepared txns and open decisions.
#[derive(Default)]
pub(crate) struct Pins {
    by_lsn: RefCell<BTreeMap<u64, Pin>>,
}

/// Pins of one shard, at most: a prepared txn or an open decision holds one each.
pub const PINS_MAX: usize = 2 * super::PREPARED_TXNS_MAX;

impl Pins {
    pub fn hold(&self, lsn: u64) {
        assert!(lsn > 0, "pinning LSN 0");
        let mut by_lsn = self.by_lsn.borrow_mut();
        assert!(by_lsn.len() < PINS_MAX, "WAL pins over their limit");
        let old = by_lsn.insert(lsn, Pin::Held);
        assert!(old.is_none(), "LSN {lsn} pinned twice");
    }

    /// The record at `lsn` is needed until a flush covers `until_lsn`.
    pub fn until_flushed(&self, lsn: u64, until_lsn: u64) {
        assert!(until_lsn > lsn, "a commit precedes its prepare");
        if let Some(p) = self.by_lsn.borrow_mut().get_mut(&lsn) {
            *p = Pin::UntilFlushed(until_lsn);
        }
    }

    pub fn release(&self, lsn: u64) {
        self.by_lsn.borrow_mut().remove(&lsn);
    }

    /// How far a flush of everything up to `lsn_max` may advance `flushed_lsn`: `lsn_max`, or
    /// just below the oldest pin the flush does not release.
    pub fn flush_cap(&self, lsn_max: u64) -> u64 {
        let by_lsn = self.by_lsn.borrow();
        let oldest = by_lsn.iter().find(|(_, pin)| match pin {
            Pin::Held => true,
            Pin::UntilFlushed(c) => *c > lsn_max,
        });
        match oldest {
            Some((&lsn, _)) => lsn_max.min(lsn - 1),
            None => lsn_max,
        }
    }

    /// A flush of everything up to `lsn_max` is durable: drops the pins it releases.
    pub fn flushed(&self, lsn_max: u64) {
        self.by_lsn
            .borrow_mut()
            .retain(|_, pin| !matches!(pin, Pin::UntilFlushed(c) if *c <= lsn_max));
    }

    pub fn len(&self) -> usize {
        self.by_lsn.borrow().len()
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
}
