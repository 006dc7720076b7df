//! Decided writes, readable before their participant's Commit record is durable.
//!
//! WHY: a SQL transaction holds its row locks (strict 2PL) until `write_batch` returns. Once
//! the coordinator's Decision and every participant's Prepare are durable (parallel commit)
//! the transaction is committed whatever happens next (recovery re-drives the Decision, which
//! stays pinned until End, and finds every Prepare, pinned until End too), so its writes may
//! be read at once. Waiting for every participant's synced Commit record before answering put a third
//! fdatasync inside the lock hold of every hot row (pgbench's one branch row). The writes
//! still reach the memtable only in the Commit record's durable hook, at its LSN, so the
//! memtable keeps seeing LSNs in order; until then point reads and scans find them here.
//!
//! Ordering: a participant enqueues the Commit record in the same step as it installs the
//! writes here, before anyone is told, so any write that read them is logged after that
//! Commit and applied after it.

use std::cell::RefCell;
use std::collections::HashMap;

use mantis_table::EntryKind;

use crate::memtable::Memtable;
use crate::record::Mutation;
use crate::shard::write::mutation_to_entry;
use crate::shard::ScanRange;

/// LSN given to the overlay's entries in a scan snapshot: the snapshot is the newest source of
/// the merge and its LSNs are not compared with anything.
const SNAPSHOT_LSN: u64 = u64::MAX;

/// A key's decided versions, oldest first: (txn, entry).
type Versions = Vec<(u64, EntryKind)>;

/// One shard's decided, not yet applied writes: key → versions in decision order.
#[derive(Default)]
pub(crate) struct DecidedOverlay {
    by_key: RefCell<HashMap<Vec<u8>, Versions>>,
}

impl DecidedOverlay {
    /// Makes `txn`'s writes readable. Bounded by the prepared transactions
    /// (`PREPARED_TXNS_MAX`): only a prepared txn is installed, and removal comes with its apply.
    pub fn install(&self, txn: u64, writes: &[Mutation]) {
        let mut map = self.by_key.borrow_mut();
        for m in writes {
            let (key, kind) = mutation_to_entry(m.clone());
            let versions = map.entry(key).or_default();
            // A batch may write a key twice: the later write wins, as in the memtable.
            if let Some(last) = versions.last_mut().filter(|(t, _)| *t == txn) {
                last.1 = kind;
            } else {
                versions.push((txn, kind));
            }
        }
    }

    /// `txn`'s writes are in the memtable now: forget them here.
    pub fn remove(&self, txn: u64, writes: &[Mutation]) {
        let mut map = self.by_key.borrow_mut();
        for m in writes {
            let Some(versions) = map.get_mut(m.key()) else {
                continue;
            };
            versions.retain(|(t, _)| *t != txn);
            if versions.is_empty() {
                map.remove(m.key());
            }
        }
    }

    /// The newest decided version of `key`, if one is waiting for its Commit record.
    pub fn get(&self, key: &[u8]) -> Option<EntryKind> {
        let map = self.by_key.borrow();
        map.get(key)
            .and_then(|versions| versions.last())
            .map(|(_, kind)| kind.clone())
    }

    /// The newest decided versions within `range`, as a memtable to merge ahead of every
    /// other source; None when there is none.
    pub fn snapshot(&self, range: &ScanRange) -> Option<Memtable> {
        let map = self.by_key.borrow();
        if map.is_empty() {
            return None;
        }
        let mut t = Memtable::new();
        for (key, versions) in map.iter().filter(|(k, _)| range.contains(k)) {
            if let Some((_, kind)) = versions.last() {
                t.insert(key.clone(), SNAPSHOT_LSN, kind.clone());
            }
        }
        (!t.is_empty()).then_some(t)
    }

    /// Keys with a decided version waiting.
    pub fn len(&self) -> usize {
        self.by_key.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn put(k: &str, v: &str) -> Mutation {
        Mutation::Put {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
            expires_at_ms: None,
        }
    }

    fn value(kind: Option<EntryKind>) -> Option<Vec<u8>> {
        match kind {
            Some(EntryKind::Put { value, .. }) => Some(value),
            _ => None,
        }
    }

    #[test]
    fn newest_decided_version_wins_until_applied() {
        let o = DecidedOverlay::default();
        let t1 = vec![put("a", "1"), put("b", "1")];
        let t2 = vec![put("a", "2")];
        o.install(1, &t1);
        o.install(2, &t2);
        assert_eq!(value(o.get(b"a")), Some(b"2".to_vec()));
        assert_eq!(value(o.get(b"b")), Some(b"1".to_vec()));
        o.remove(1, &t1);
        assert_eq!(value(o.get(b"a")), Some(b"2".to_vec()));
        assert!(o.get(b"b").is_none());
        o.remove(2, &t2);
        assert_eq!(o.len(), 0);
        assert!(o.snapshot(&ScanRange::all()).is_none());
    }

    #[test]
    fn a_key_written_twice_in_one_batch_keeps_the_later_write() {
        let o = DecidedOverlay::default();
        let t = vec![put("a", "1"), Mutation::Delete { key: b"a".to_vec() }];
        o.install(7, &t);
        assert_eq!(o.get(b"a"), Some(EntryKind::Delete));
        let snap = o.snapshot(&ScanRange::prefix(b"a")).unwrap();
        assert_eq!(snap.len(), 1);
        o.remove(7, &t);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn snapshot_holds_only_the_range() {
        let o = DecidedOverlay::default();
        o.install(1, &[put("a1", "x"), put("b1", "y")]);
        let snap = o.snapshot(&ScanRange::prefix(b"a")).unwrap();
        assert_eq!(snap.len(), 1);
        assert!(snap.get(b"a1").is_some());
        assert!(o.snapshot(&ScanRange::prefix(b"c")).is_none());
    }
}
