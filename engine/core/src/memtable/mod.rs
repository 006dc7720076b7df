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
