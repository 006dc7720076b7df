//! The per-shard block cache: decoded data blocks keyed by (segment id, block offset),
//! bounded in bytes, evicting by LRU or LFU.
//!
//! One shard owns it (`Rc<BlockCache>`, interior mutability through `RefCell`, never borrowed
//! across an await). Both policies share one structure: an ordered set of
//! `(rank, last_use_tick, key)` whose first element is the victim. LRU ranks every block 0,
//! so the oldest tick goes first; LFU ranks by use count, ties broken by age. Every operation
//! is O(log n).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::block::Block;

/// Which block a cache entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockKey {
    pub segment_id: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Evict the block used least recently.
    #[default]
    Lru,
    /// Evict the block used least often (the least recently used among equals).
    Lfu,
}

/// Counters since the cache was created, and its current fill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    /// Blocks not cached because they alone exceed the capacity.
    pub rejected: u64,
    /// Blocks dropped by `remove_segment`.
    pub removed: u64,
    pub used_bytes: usize,
    pub capacity_bytes: usize,
    pub entries: usize,
}

struct Slot {
    block: Rc<Block>,
    charge_bytes: usize,
    uses: u64,
    tick: u64,
}

struct Inner {
    policy: CachePolicy,
    capacity_bytes: usize,
    used_bytes: usize,
    tick: u64,
    slots: BTreeMap<BlockKey, Slot>,
    /// Eviction order: the first element goes first.
    order: BTreeSet<(u64, u64, BlockKey)>,
    stats: CacheStats,
}

impl Inner {
    fn rank(&self, slot: &Slot) -> u64 {
        match self.policy {
            CachePolicy::Lru => 0,
            CachePolicy::Lfu => slot.uses,
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn evict_one(&mut self) -> bool {
        let Some((_, _, key)) = self.order.pop_first() else {
            return false;
        };
        let slot = self.slots.remove(&key);
        assert!(slot.is_some(), "cache order and slots disagree");
        if let Some(slot) = slot {
            self.used_bytes -= slot.charge_bytes;
        }
        self.stats.evictions += 1;
        true
    }

    fn remove(&mut self, key: &BlockKey) -> bool {
        let Some(slot) = self.slots.remove(key) else {
            return false;
        };
        let removed = self.order.remove(&(self.rank(&slot), slot.tick, *key));
        assert!(removed, "cache order and slots disagree");
        self.used_bytes -= slot.charge_bytes;
        true
    }

    fn check_invariants(&self) {
        assert!(self.used_bytes <= self.capacity_bytes);
        assert_eq!(self.slots.len(), self.order.len());
    }
}

/// A byte-bounded cache of decoded blocks for one shard.
pub struct BlockCache {
    inner: RefCell<Inner>,
}

impl BlockCache {
    pub fn new(capacity_bytes: usize, policy: CachePolicy) -> Self {
        BlockCache {
            inner: RefCell::new(Inner {
                policy,
                capacity_bytes,
                used_bytes: 0,
                tick: 0,
                slots: BTreeMap::new(),
                order: BTreeSet::new(),
                stats: CacheStats {
                    capacity_bytes,
                    ..CacheStats::default()
                },
            }),
        }
    }

    pub fn policy(&self) -> CachePolicy {
        self.inner.borrow().policy
    }

    /// The cached block, counting a hit or a miss and marking it used.
    pub fn get(&self, key: BlockKey) -> Option<Rc<Block>> {
        let mut inner = self.inner.borrow_mut();
        let tick = inner.next_tick();
        let policy = inner.policy;
        let Inner {
            slots,
            order,
            stats,
            ..
        } = &mut *inner;
        let Some(slot) = slots.get_mut(&key) else {
            stats.misses += 1;
            return None;
        };
        stats.hits += 1;
        let rank = |uses| match policy {
            CachePolicy::Lru => 0,
            CachePolicy::Lfu => uses,
        };
        let was = order.remove(&(rank(slot.uses), slot.tick, key));
        assert!(was, "cache order and slots disagree");
        slot.uses = slot.uses.saturating_add(1);
        slot.tick = tick;
        order.insert((rank(slot.uses), tick, key));
        Some(slot.block.clone())
    }

    /// True when `key` is cached; touches neither counters nor order.
    pub fn contains(&self, key: BlockKey) -> bool {
        self.inner.borrow().slots.contains_key(&key)
    }

    /// Caches `block`, evicting as needed. A block larger than the whole cache is not cached
    /// (returns false). Replacing a cached key keeps its use count.
    pub fn insert(&self, key: BlockKey, block: Rc<Block>) -> bool {
        let charge_bytes = block.size_bytes();
        let mut inner = self.inner.borrow_mut();
        if charge_bytes > inner.capacity_bytes {
            inner.stats.rejected += 1;
            return false;
        }
        let uses = inner.slots.get(&key).map_or(1, |s| s.uses);
        inner.remove(&key);
        while inner.used_bytes + charge_bytes > inner.capacity_bytes {
            let evicted = inner.evict_one();
            assert!(evicted, "cache over capacity with nothing to evict");
        }
        let tick = inner.next_tick();
        let slot = Slot {
            block,
            charge_bytes,
            uses,
            tick,
        };
        let rank = inner.rank(&slot);
        inner.order.insert((rank, tick, key));
        inner.slots.insert(key, slot);
        inner.used_bytes += charge_bytes;
        inner.stats.inserts += 1;
        inner.check_invariants();
        true
    }

    /// Drops every block of a segment (its file is being deleted); returns how many.
    pub fn remove_segment(&self, segment_id: u64) -> usize {
        let mut inner = self.inner.borrow_mut();
        let lo = BlockKey {
            segment_id,
            offset: 0,
        };
        let hi = BlockKey {
            segment_id,
            offset: u64::MAX,
        };
        let keys: Vec<BlockKey> = inner.slots.range(lo..=hi).map(|(k, _)| *k).collect();
        for key in &keys {
            inner.remove(key);
        }
        inner.stats.removed += keys.len() as u64;
        inner.check_invariants();
        keys.len()
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.borrow();
        CacheStats {
            used_bytes: inner.used_bytes,
            entries: inner.slots.len(),
            ..inner.stats.clone()
        }
    }
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("policy", &self.policy())
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::block::block_of;
    use crate::entry::Entry;

    fn key(offset: u64) -> BlockKey {
        BlockKey {
            segment_id: 1,
            offset,
        }
    }

    /// A block of about `value_bytes` bytes.
    fn block(value_bytes: usize) -> Rc<Block> {
        Rc::new(block_of(&[Entry::put(
            b"k".to_vec(),
            1,
            vec![7; value_bytes],
        )]))
    }

    fn cache_of_three(policy: CachePolicy) -> BlockCache {
        let charge = block(1000).size_bytes();
        BlockCache::new(charge * 3, policy)
    }

    #[test]
    fn capacity_is_respected_and_oversized_blocks_are_rejected() {
        let cache = cache_of_three(CachePolicy::Lru);
        for i in 0..10 {
            assert!(cache.insert(key(i), block(1000)));
            let s = cache.stats();
            assert!(s.used_bytes <= s.capacity_bytes);
        }
        let s = cache.stats();
        assert_eq!(s.entries, 3);
        assert_eq!(s.evictions, 7);
        assert!(!cache.insert(key(99), block(10_000)));
        assert_eq!(cache.stats().rejected, 1);
        assert!(!cache.contains(key(99)));
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let cache = cache_of_three(CachePolicy::Lru);
        for i in 0..3 {
            cache.insert(key(i), block(1000));
        }
        assert!(cache.get(key(0)).is_some()); // 1 is now the oldest
        cache.insert(key(3), block(1000));
        assert!(!cache.contains(key(1)));
        assert!(cache.contains(key(0)) && cache.contains(key(2)) && cache.contains(key(3)));
        cache.insert(key(4), block(1000));
        assert!(!cache.contains(key(2)));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.evictions), (1, 0, 2));
    }

    #[test]
    fn lfu_evicts_the_least_frequently_used() {
        let cache = cache_of_three(CachePolicy::Lfu);
        for i in 0..3 {
            cache.insert(key(i), block(1000));
        }
        for _ in 0..3 {
            cache.get(key(0));
        }
        for _ in 0..2 {
            cache.get(key(2));
        }
        cache.get(key(1));
        cache.get(key(2));
        cache.get(key(0));
        cache.get(key(0));
        // Uses: 0 -> 6, 1 -> 2, 2 -> 4; recency, oldest first: 1, 2, 0.
        cache.insert(key(3), block(1000));
        assert!(!cache.contains(key(1)), "least frequently used goes first");
        // The newcomer (1 use) is now the least frequently used.
        cache.insert(key(4), block(1000));
        assert!(!cache.contains(key(3)));
        assert!(cache.contains(key(0)) && cache.contains(key(2)) && cache.contains(key(4)));
        // LRU would have evicted 1 then 2; LFU kept 2 and dropped the newcomer 3.
        assert_eq!(cache.stats().evictions, 2);
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let cache = cache_of_three(CachePolicy::Lru);
        assert!(cache.get(key(1)).is_none());
        cache.insert(key(1), block(10));
        assert!(cache.get(key(1)).is_some());
        assert!(cache.get(key(1)).is_some());
        assert!(cache.get(key(2)).is_none());
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.inserts), (2, 2, 1));
    }

    #[test]
    fn reinserting_keeps_the_accounting_right() {
        let cache = cache_of_three(CachePolicy::Lfu);
        cache.insert(key(1), block(1000));
        cache.get(key(1));
        cache.insert(key(1), block(500));
        let s = cache.stats();
        assert_eq!(s.entries, 1);
        assert_eq!(s.used_bytes, block(500).size_bytes());
    }

    #[test]
    fn remove_segment_drops_only_that_segment() {
        let cache = BlockCache::new(1 << 20, CachePolicy::Lru);
        for seg in 1..=3u64 {
            for offset in [0, 4096, u64::MAX] {
                cache.insert(
                    BlockKey {
                        segment_id: seg,
                        offset,
                    },
                    block(10),
                );
            }
        }
        assert_eq!(cache.remove_segment(2), 3);
        assert_eq!(cache.remove_segment(2), 0);
        let s = cache.stats();
        assert_eq!(s.entries, 6);
        assert_eq!(s.removed, 3);
        assert_eq!(s.used_bytes, 6 * block(10).size_bytes());
        assert!(cache.contains(BlockKey {
            segment_id: 1,
            offset: u64::MAX
        }));
    }
}
