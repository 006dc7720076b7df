//! The lock table's index maps (resource → head slot, transaction → txn slot) and the
//! wait-for graph's node index: open addressing with linear probing and backward-shift
//! deletion, at most two thirds full.
//!
//! Why not `HashMap`: an uncontended transaction of one lock does five operations on these
//! maps (register, look up the resource, free the resource, forget the txn), and they were a
//! third of the fast path's profile. Here a key and its slot sit in one entry (16 bytes for a
//! txn, 32 for a resource), a lookup at load ≤ 2/3 touches about one cache line, and a
//! removal leaves no tombstone to be cleaned by a later rehash. The load bound is a
//! trade: a merged wait-for graph of 5,000 txns fits a 128 KiB table instead of 256 KiB,
//! and its lookups are cache misses, not probe steps.

use crate::resource::{ResourceId, TxnId};

/// A key of a [`SlotTable`]: copyable, comparable, with a well-mixed 64-bit hash whose HIGH
/// bits are used (Fibonacci hashing).
pub(crate) trait TableKey: Copy + Eq {
    /// Any value; it fills empty entries and is never compared as a key there.
    const FILL: Self;
    fn table_hash(&self) -> u64;
}

/// 2^64 / φ, odd: multiplying by it spreads sequential keys over the high bits.
const FIB: u64 = 0x9e37_79b9_7f4a_7c15;

impl TableKey for TxnId {
    const FILL: Self = TxnId(0);
    fn table_hash(&self) -> u64 {
        self.0.wrapping_mul(FIB)
    }
}

impl TableKey for ResourceId {
    const FILL: Self = ResourceId::Database(0);
    fn table_hash(&self) -> u64 {
        let (tag, outer, inner) = match *self {
            ResourceId::Database(d) => (1u64, u64::from(d), 0u64),
            ResourceId::Table { database, table } => {
                (2, (u64::from(database) << 32) | u64::from(table), 0)
            }
            ResourceId::Row {
                database,
                table,
                key_hash,
            } => (3, (u64::from(database) << 32) | u64::from(table), key_hash),
        };
        // One multiply on the hash's critical path (it is the start of every lookup's
        // dependency chain): a row's `key_hash` is already mixed (FNV-1a), and the database /
        // table word only has to move it; the tag keeps the levels apart.
        (inner ^ outer.rotate_left(29) ^ (tag << 61)).wrapping_mul(FIB)
    }
}

const EMPTY: u32 = u32::MAX;
const CAPACITY_MIN: usize = 16;

/// Entries needed to hold `len` keys at load ≤ 2/3.
fn entries_for(len: usize) -> usize {
    len.saturating_mul(3) / 2 + 1
}

#[derive(Clone, Copy, Debug)]
struct Entry<K> {
    key: K,
    /// `EMPTY` marks a free entry.
    slot: u32,
}

/// Where a key is, or where it would go.
pub(crate) enum Probe {
    Found(u32),
    Vacant(usize),
}

#[derive(Clone, Debug)]
pub(crate) struct SlotTable<K: TableKey> {
    entries: Vec<Entry<K>>,
    len: usize,
    /// The most keys it holds at load ≤ 2/3 (`entries_for(len_max) <= capacity`).
    len_max: usize,
    /// 64 − log2(capacity): the hash's high bits index the entries.
    shift: u32,
}

impl<K: TableKey> Default for SlotTable<K> {
    fn default() -> Self {
        Self::with_capacity(CAPACITY_MIN)
    }
}

impl<K: TableKey> SlotTable<K> {
    /// Removes every key, keeping the capacity (a detection pass reuses its node index).
    pub(crate) fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        for e in &mut self.entries {
            e.slot = EMPTY;
        }
        self.len = 0;
    }

    /// Grows now if `additional` more keys would make it more than 2/3 full (one rehash
    /// instead of several while a big graph is merged).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = entries_for(self.len + additional);
        if needed > self.entries.len() {
            self.rehash(needed);
        }
    }

    fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.next_power_of_two().max(CAPACITY_MIN);
        SlotTable {
            entries: vec![
                Entry {
                    key: K::FILL,
                    slot: EMPTY,
                };
                capacity
            ],
            len: 0,
            len_max: (2 * capacity - 1) / 3,
            shift: 64 - capacity.trailing_zeros(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn home(&self, key: &K) -> usize {
        (key.table_hash() >> self.shift) as usize
    }

    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<&u32> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let e = &self.entries[i];
            if e.slot == EMPTY {
                return None;
            }
            if e.key == *key {
                return Some(&e.slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// The key's slot, or the entry where `insert_vacant` would put it. Grows first if one
    /// more key would make the table more than 2/3 full, so the vacant index stays valid.
    #[inline]
    pub(crate) fn probe(&mut self, key: &K) -> Probe {
        if self.len >= self.len_max {
            self.grow();
        }
        debug_assert!(entries_for(self.len + 1) <= self.entries.len());
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let e = &self.entries[i];
            if e.slot == EMPTY {
                return Probe::Vacant(i);
            }
            if e.key == *key {
                return Probe::Found(e.slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// Fills the vacant entry `probe` returned (no other change in between).
    #[inline]
    pub(crate) fn insert_vacant(&mut self, index: usize, key: K, slot: u32) {
        assert_ne!(slot, EMPTY, "slot value reserved for empty entries");
        let e = &mut self.entries[index];
        assert_eq!(e.slot, EMPTY, "insert_vacant on an occupied entry");
        *e = Entry { key, slot };
        self.len += 1;
    }

    /// Inserts or replaces; returns the previous slot (the tests' model operation).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: K, slot: u32) -> Option<u32> {
        match self.probe(&key) {
            Probe::Found(old) => {
                let mask = self.mask();
                let mut i = self.home(&key);
                while self.entries[i].key != key || self.entries[i].slot == EMPTY {
                    i = (i + 1) & mask;
                }
                self.entries[i].slot = slot;
                Some(old)
            }
            Probe::Vacant(i) => {
                self.insert_vacant(i, key, slot);
                None
            }
        }
    }

    #[inline]
    pub(crate) fn remove(&mut self, key: &K) -> Option<u32> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let e = &self.entries[i];
            if e.slot == EMPTY {
                return None;
            }
            if e.key == *key {
                break;
            }
            i = (i + 1) & mask;
        }
        let removed = self.entries[i].slot;
        self.len -= 1;
        // Backward shift: move later entries of the run into the hole when their home
        // position allows it, so that no lookup ever has to step over a tombstone.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.entries[j].slot == EMPTY {
                break; // at load ≤ 2/3 usually at once: the run ends after the removed key
            }
            let e = self.entries[j];
            let home = self.home(&e.key);
            // `e` may fill the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole].slot = EMPTY;
        Some(removed)
    }

    fn grow(&mut self) {
        self.rehash(self.entries.len() * 2);
    }

    fn rehash(&mut self, capacity: usize) {
        let mut bigger = Self::with_capacity(capacity);
        for e in &self.entries {
            if e.slot != EMPTY {
                let Probe::Vacant(i) = bigger.probe(&e.key) else {
                    panic!("duplicate key in a slot table");
                };
                bigger.insert_vacant(i, e.key, e.slot);
            }
        }
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn matches_a_hash_map_under_random_inserts_and_removes() {
        let mut table: SlotTable<TxnId> = SlotTable::default();
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct keys so that runs collide, grow and shrink by removal.
            let key = x % 3_000;
            if x & 4 == 0 {
                assert_eq!(table.remove(&TxnId(key)), model.remove(&key), "step {step}");
            } else {
                assert_eq!(
                    table.insert(TxnId(key), step),
                    model.insert(key, step),
                    "step {step}"
                );
            }
            assert_eq!(table.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(table.get(&TxnId(*k)), Some(v));
        }
        assert_eq!(table.get(&TxnId(1 << 40)), None);
    }

    #[test]
    fn resources_of_every_level_are_distinct_keys() {
        let mut table: SlotTable<ResourceId> = SlotTable::default();
        let keys = [
            ResourceId::Database(0),
            ResourceId::Database(1),
            ResourceId::Table {
                database: 0,
                table: 0,
            },
            ResourceId::Table {
                database: 0,
                table: 1,
            },
            ResourceId::Row {
                database: 0,
                table: 0,
                key_hash: 0,
            },
            ResourceId::Row {
                database: 0,
                table: 1,
                key_hash: 0,
            },
        ];
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(table.insert(*k, i as u32), None);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(table.get(k), Some(&(i as u32)));
        }
        for k in &keys {
            assert!(table.remove(k).is_some());
        }
        assert_eq!(table.len(), 0);
    }
}
