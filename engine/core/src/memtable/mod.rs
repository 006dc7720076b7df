//! The in-memory sorted table of a shard's recent writes. Single-threaded (owned by one
//! shard), so a plain `BTreeMap`. Entries are applied only after the WAL made them durable,
//! and always in LSN order, so a later insert always supersedes an earlier one.

use std::collections::BTreeMap;
use std::ops::Bound;

use mantis_table::{Entry, EntryKind};

/// Bookkeeping bytes charged per entry on top of key and value (tree node share, lengths, LSN).
const ENTRY_OVERHEAD_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemValue {
    pub lsn: u64,
    pub kind: EntryKind,
}

#[derive(Debug, Default)]
pub struct Memtable {
    map: BTreeMap<Vec<u8>, MemValue>,
    size_bytes: usize,
    lsn_min: u64,
    lsn_max: u64,
}

fn charge(key: &[u8], kind: &EntryKind) -> usize {
    let value_len = match kind {
        EntryKind::Put { value, .. } => value.len(),
        EntryKind::Delete => 0,
    };
    key.len() + value_len + ENTRY_OVERHEAD_BYTES
}

impl Memtable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a durable mutation. LSNs never decrease (asserted); the mutations of one batch
    /// share their record's LSN, and a later one of the batch wins.
    pub fn insert(&mut self, key: Vec<u8>, lsn: u64, kind: EntryKind) {
        assert!(
            lsn >= self.lsn_max || self.map.is_empty(),
            "memtable LSN went backwards: {lsn} after {}",
            self.lsn_max
        );
        if self.map.is_empty() {
            self.lsn_min = lsn;
        }
        self.lsn_max = lsn;
        let key_len = key.len();
        let added = charge(&key, &kind);
        self.size_bytes += added;
        if let Some(old) = self.map.insert(key, MemValue { lsn, kind }) {
            let freed = charge(&[], &old.kind) + key_len;
            self.size_bytes -= freed;
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&MemValue> {
        self.map.get(key)
    }

    /// The first entry strictly after `after` (or from `start`) and within `end`.
    pub fn next_in_range(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Option<(&Vec<u8>, &MemValue)> {
        self.map.range::<[u8], _>((start, end)).next()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    pub fn lsn_max(&self) -> u64 {
        self.lsn_max
    }

    pub fn lsn_min(&self) -> u64 {
        self.lsn_min
    }

    /// All entries in key order, for a flush.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.map.iter().map(|(k, v)| Entry {
            key: k.clone(),
            lsn: v.lsn,
            kind: v.kind.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &[u8]) -> EntryKind {
        EntryKind::Put {
            value: v.to_vec(),
            expires_at_ms: None,
        }
    }

    #[test]
    fn later_insert_wins_and_size_tracks_the_live_entries() {
        let mut m = Memtable::new();
        m.insert(b"a".to_vec(), 1, put(b"12345"));
        assert_eq!(m.size_bytes(), 1 + 5 + ENTRY_OVERHEAD_BYTES);
        m.insert(b"a".to_vec(), 2, put(b"1"));
        assert_eq!(m.size_bytes(), 1 + 1 + ENTRY_OVERHEAD_BYTES);
        m.insert(b"a".to_vec(), 3, EntryKind::Delete);
        assert_eq!(m.size_bytes(), 1 + ENTRY_OVERHEAD_BYTES);
        assert_eq!(m.get(b"a").map(|v| v.lsn), Some(3));
        assert_eq!((m.lsn_min(), m.lsn_max(), m.len()), (1, 3, 1));
    }

    #[test]
    fn batch_mutations_share_an_lsn() {
        let mut m = Memtable::new();
        m.insert(b"x".to_vec(), 5, put(b"1"));
        m.insert(b"y".to_vec(), 5, put(b"2"));
        m.insert(b"x".to_vec(), 5, put(b"3"));
        assert_eq!(m.get(b"x").map(|v| v.kind.clone()), Some(put(b"3")));
    }

    #[test]
    #[should_panic(expected = "LSN went backwards")]
    fn lsn_going_backwards_is_a_bug() {
        let mut m = Memtable::new();
        m.insert(b"x".to_vec(), 5, put(b"1"));
        m.insert(b"y".to_vec(), 4, put(b"2"));
    }

    #[test]
    fn range_and_entries_are_in_key_order() {
        let mut m = Memtable::new();
        for (i, k) in [b"c", b"a", b"b"].iter().enumerate() {
            m.insert(k.to_vec(), i as u64 + 1, put(b"v"));
        }
        let keys: Vec<Vec<u8>> = m.entries().map(|e| e.key).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let next = m.next_in_range(Bound::Excluded(b"a".as_slice()), Bound::Unbounded);
        assert_eq!(next.map(|(k, _)| k.clone()), Some(b"b".to_vec()));
        assert!(m
            .next_in_range(Bound::Excluded(b"c".as_slice()), Bound::Unbounded)
            .is_none());
    }
}
