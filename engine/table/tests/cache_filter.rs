//! The block cache seen through segments: the filter spares block reads for absent keys,
//! repeated reads hit the cache, and deleting a segment drops its blocks.
#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;

use futures_lite::future::block_on;
use mantis_storage::SimStorage;
use mantis_table::{BlockCache, CachePolicy, Codec, Segment};

#[test]
fn absent_keys_mostly_skip_the_block_read() {
    let storage = SimStorage::new(4).handle();
    let path = Path::new("/seg/1.seg");
    let entries = common::entries(11, 20_000, 0, 0);
    block_on(async {
        common::write(&storage, path, &entries, common::options(Codec::Lz4)).await;
        let cache = Rc::new(BlockCache::new(64 << 20, CachePolicy::Lru));
        let seg = Segment::open(&storage, path, 1, cache.clone())
            .await
            .unwrap();
        // Absent keys inside the key range: without the filter every one would read a block.
        for i in 0..entries.len() {
            assert_eq!(seg.get(&common::absent_key(i)).await.unwrap(), None);
        }
        let s = cache.stats();
        assert!(
            s.misses + s.hits <= 20,
            "{} block lookups for 20000 absent keys",
            s.misses + s.hits
        );
        // Present keys: each block missed once (counting any read for a false positive above),
        // then only hits.
        for e in &entries {
            assert!(seg.may_contain(&e.key));
            assert_eq!(seg.get(&e.key).await.unwrap().as_ref(), Some(e));
        }
        let first = cache.stats();
        let blocks = seg.blocks().len() as u64;
        assert_eq!(first.misses, blocks);
        assert_eq!(first.inserts, blocks);
        for e in &entries {
            seg.get(&e.key).await.unwrap();
        }
        let second = cache.stats();
        assert_eq!(
            second.misses, first.misses,
            "second pass served from the cache"
        );
        assert_eq!(second.hits - first.hits, entries.len() as u64);
        assert_eq!(cache.remove_segment(1), blocks as usize);
        assert_eq!(cache.stats().entries, 0);
    });
}

#[test]
fn a_small_cache_stays_within_capacity_during_scans() {
    let storage = SimStorage::new(5).handle();
    let path = Path::new("/seg/2.seg");
    let entries = common::entries(12, 20_000, 0, 0);
    block_on(async {
        common::write(&storage, path, &entries, common::options(Codec::Snappy)).await;
        let capacity = 100 * 1024;
        for policy in [CachePolicy::Lru, CachePolicy::Lfu] {
            let cache = Rc::new(BlockCache::new(capacity, policy));
            let seg = Segment::open(&storage, path, 2, cache.clone())
                .await
                .unwrap();
            let all = common::collect(&seg, (Bound::Unbounded, Bound::Unbounded)).await;
            common::assert_same(&all, &entries, "scan");
            let s = cache.stats();
            assert!(s.used_bytes <= capacity && s.entries > 0, "{s:?}");
            assert_eq!(s.misses, seg.blocks().len() as u64);
            assert!(s.evictions > 0);
            // An uncached scan reads through without touching the cache's contents.
            let before = cache.stats();
            let mut it = seg.iter_uncached((Bound::Unbounded, Bound::Unbounded));
            let mut n = 0;
            while it.next().await.unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, entries.len());
            let after = cache.stats();
            assert_eq!(after.inserts, before.inserts);
            assert_eq!(after.evictions, before.evictions);
        }
    });
}
