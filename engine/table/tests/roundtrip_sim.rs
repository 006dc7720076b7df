//! Round trips over the simulated disk: 100k mixed entries per codec, and a 64 MiB value.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use futures_lite::future::block_on;
use mantis_storage::SimStorage;
use mantis_table::{Codec, Entry, VALUE_MAX_BYTES};

fn round_trip(codec: Codec) {
    let sim = SimStorage::new(1);
    let storage = sim.handle();
    let path = Path::new("/shard-0/seg/0000000000000001.seg");
    let entries = common::entries(42, 100_000, 5, 1 << 20);
    block_on(async {
        let meta = common::write(&storage, path, &entries, common::options(codec)).await;
        assert_eq!(meta.file_size_bytes % 4096, 0);
        assert_eq!(
            sim.contents(path).unwrap().len() as u64,
            meta.file_size_bytes
        );
        let stats = &meta.properties.codec_stats;
        if codec != Codec::None {
            assert!(
                stats.blocks_by_codec[codec_index(codec)] > 0,
                "{codec:?} compressed some blocks"
            );
            assert!(stats.stored_data_bytes < stats.raw_data_bytes);
        } else {
            assert_eq!(stats.blocks_by_codec[0], meta.properties.block_count);
        }
        common::check_round_trip(&storage, path, &entries, &meta).await;
    });
}

fn codec_index(codec: Codec) -> usize {
    match codec {
        Codec::None => 0,
        Codec::Lz4 => 1,
        Codec::Snappy => 2,
        Codec::Zstd { .. } => 3,
    }
}

#[test]
fn round_trip_none() {
    round_trip(Codec::None);
}

#[test]
fn round_trip_lz4() {
    round_trip(Codec::Lz4);
}

#[test]
fn round_trip_snappy() {
    round_trip(Codec::Snappy);
}

#[test]
fn round_trip_zstd() {
    round_trip(Codec::Zstd { level: 3 });
}

#[test]
fn a_value_of_64_mib_round_trips() {
    let sim = SimStorage::new(2);
    let storage = sim.handle();
    let path = Path::new("/seg/big.seg");
    let mut entries = common::entries(7, 200, 0, 0);
    // One maximal value in the middle, compressible so that every codec gets to work on it.
    let big: Vec<u8> = (0..VALUE_MAX_BYTES)
        .map(|i| (i / 4096) as u8 ^ (i as u8))
        .collect();
    entries[100] = Entry::put(entries[100].key.clone(), 5, big);
    block_on(async {
        for (n, codec) in common::CODECS.iter().enumerate() {
            let path = path.with_extension(format!("{n}"));
            let meta = common::write(&storage, &path, &entries, common::options(*codec)).await;
            assert!(meta.properties.value_bytes >= VALUE_MAX_BYTES as u64);
            common::check_round_trip(&storage, &path, &entries, &meta).await;
            storage.remove(&path).await.unwrap();
        }
    });
}

#[test]
fn an_empty_segment_opens_and_is_empty() {
    let storage = SimStorage::new(3).handle();
    let path = Path::new("/seg/empty.seg");
    block_on(async {
        let meta = common::write(&storage, path, &[], common::options(Codec::Lz4)).await;
        assert_eq!(meta.file_size_bytes, 4096);
        let cache = std::rc::Rc::new(mantis_table::BlockCache::new(
            1 << 20,
            mantis_table::CachePolicy::Lru,
        ));
        let seg = mantis_table::Segment::open(&storage, path, 1, cache)
            .await
            .unwrap();
        assert_eq!(seg.properties().entry_count, 0);
        assert_eq!(seg.get(b"x").await.unwrap(), None);
        let all = common::collect(
            &seg,
            (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
        )
        .await;
        assert!(all.is_empty());
        assert_eq!(seg.verify().await.unwrap().entries_checked, 0);
    });
}
