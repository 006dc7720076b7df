//! Round trips over real O_DIRECT files (glommio, ext4 under /var/tmp): 100k mixed entries per
//! codec, and a 64 MiB value.
#![allow(clippy::unwrap_used)]

mod common;

use std::rc::Rc;

use mantis_storage::rt::{raise_memlock_limit, run_local};
use mantis_storage::{DmaStorage, Storage};
use mantis_table::{Codec, Entry, VALUE_MAX_BYTES};

/// Runs `f` with a DmaStorage over a fresh directory on the ext4 root filesystem.
fn with_dma<F, Fut>(f: F)
where
    F: FnOnce(Rc<dyn Storage>, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    raise_memlock_limit().unwrap();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let path = dir.path().to_path_buf();
    run_local(|| async move {
        let storage: Rc<dyn Storage> = Rc::new(DmaStorage::new(&path).await.unwrap());
        f(storage, path).await;
    })
    .unwrap();
}

fn round_trip(codec: Codec) {
    let entries = common::entries(43, 100_000, 5, 1 << 20);
    with_dma(|storage, dir| async move {
        let path = dir.join("0000000000000001.seg");
        let meta = common::write(&storage, &path, &entries, common::options(codec)).await;
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            meta.file_size_bytes
        );
        common::check_round_trip(&storage, &path, &entries, &meta).await;
    });
}

#[test]
fn dma_round_trip_none() {
    round_trip(Codec::None);
}

#[test]
fn dma_round_trip_lz4() {
    round_trip(Codec::Lz4);
}

#[test]
fn dma_round_trip_snappy() {
    round_trip(Codec::Snappy);
}

#[test]
fn dma_round_trip_zstd() {
    round_trip(Codec::Zstd { level: 3 });
}

#[test]
fn dma_a_value_of_64_mib_round_trips() {
    let mut entries = common::entries(8, 100, 0, 0);
    // Random bytes: stored raw whatever the codec, the largest block a segment can hold.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let big: Vec<u8> = (0..VALUE_MAX_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    entries[50] = Entry::put(entries[50].key.clone(), 9, big);
    with_dma(|storage, dir| async move {
        let path = dir.join("big.seg");
        let meta = common::write(&storage, &path, &entries, common::options(Codec::Lz4)).await;
        assert!(meta.file_size_bytes > VALUE_MAX_BYTES as u64);
        common::check_round_trip(&storage, &path, &entries, &meta).await;
    });
}
