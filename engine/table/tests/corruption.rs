//! Damaged files: flipped bits in every structure, truncations and garbage. Every failure is a
//! clean error naming the file and offset; no call ever returns wrong data or panics.
#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;

use futures_lite::future::block_on;
use mantis_storage::{OpenMode, SimStorage, Storage};
use mantis_table::{
    BlockCache, CachePolicy, Codec, Entry, Segment, SegmentMeta, TableError, WriterOptions,
    FOOTER_BYTES,
};
use proptest::prelude::*;

const PATH: &str = "/seg/0000000000000009.seg";

fn small_options() -> WriterOptions {
    WriterOptions {
        block_size_bytes: 1024,
        codec: Codec::Lz4,
        ..WriterOptions::default()
    }
}

/// A fresh disk holding one valid segment.
fn setup(n: usize) -> (SimStorage, Vec<Entry>, SegmentMeta) {
    let sim = SimStorage::new(9);
    let entries = common::entries(5, n, 0, 0);
    let meta = block_on(common::write(
        &sim.handle(),
        Path::new(PATH),
        &entries,
        small_options(),
    ));
    (sim, entries, meta)
}

async fn open(sim: &SimStorage) -> Result<Rc<Segment>, TableError> {
    let cache = Rc::new(BlockCache::new(1 << 20, CachePolicy::Lru));
    Segment::open(&sim.handle(), Path::new(PATH), 1, cache).await
}

/// Asserts that `err` is a checksum or corruption error about our file at `offset`.
fn assert_names(err: &TableError, offset: u64) {
    match err {
        TableError::ChecksumMismatch {
            file, offset: at, ..
        }
        | TableError::Corrupt {
            file, offset: at, ..
        } => {
            assert_eq!(file, Path::new(PATH), "{err}");
            assert_eq!(*at, offset, "{err}");
        }
        other => panic!("expected a checksum or corruption error, got {other}"),
    }
    assert!(err.is_corruption());
    assert!(
        err.to_string().contains(PATH),
        "message names the file: {err}"
    );
}

#[test]
fn a_flipped_bit_in_a_data_block_is_reported_by_get_iter_and_verify() {
    let (sim, entries, _) = setup(3000);
    block_on(async {
        let seg = open(&sim).await.unwrap();
        let victim = 5;
        let handle = seg.blocks()[victim].handle;
        let victim_key = seg.blocks()[victim].last_key.clone();
        // Every part of the stored block: payload start, middle, codec, length and CRC fields.
        let len = u64::from(handle.len);
        for at in [0, len / 2, len - 9, len - 6, len - 1] {
            let (sim, _, _) = setup(3000);
            sim.flip_bit(Path::new(PATH), handle.offset + at, 3)
                .unwrap();
            let seg = open(&sim).await.unwrap();
            let err = seg.get(&victim_key).await.unwrap_err();
            assert_names(&err, handle.offset);
            let err = seg.verify().await.unwrap_err();
            assert_names(&err, handle.offset);
            // Iteration returns the good entries before the damaged block, then the error.
            let mut it = seg.iter((Bound::Unbounded, Bound::Unbounded));
            let mut good = Vec::new();
            let err = loop {
                match it.next().await {
                    Ok(Some(e)) => good.push(e),
                    Ok(None) => panic!("iteration passed a damaged block"),
                    Err(e) => break e,
                }
            };
            assert_names(&err, handle.offset);
            let before = &seg.blocks()[victim - 1].last_key;
            let expected = entries.iter().take_while(|e| &e.key <= before).count();
            common::assert_same(&good, &entries[..expected], "entries before the damage");
            assert_eq!(it.next().await.unwrap(), None, "finished after the error");
            // Other blocks still answer.
            let other = &entries[0];
            assert_eq!(seg.get(&other.key).await.unwrap().as_ref(), Some(other));
        }
    });
}

#[test]
fn a_flipped_bit_in_the_index_filter_or_properties_fails_open() {
    let (_, _, meta) = setup(3000);
    for handle in [
        meta.index_handle,
        meta.filter_handle,
        meta.properties_handle,
    ] {
        for at in [0, u64::from(handle.len) / 2, u64::from(handle.len) - 1] {
            let (sim, _, _) = setup(3000);
            sim.flip_bit(Path::new(PATH), handle.offset + at, 0)
                .unwrap();
            let err = block_on(open(&sim)).unwrap_err();
            assert_names(&err, handle.offset);
        }
    }
}

#[test]
fn a_flipped_bit_in_the_footer_fails_open() {
    let (_, _, meta) = setup(500);
    let footer_at = meta.file_size_bytes - FOOTER_BYTES as u64;
    for at in 0..FOOTER_BYTES as u64 {
        let (sim, _, _) = setup(500);
        sim.flip_bit(Path::new(PATH), footer_at + at, (at % 8) as u8)
            .unwrap();
        let err = block_on(open(&sim)).unwrap_err();
        if at >= FOOTER_BYTES as u64 - 8 {
            assert!(matches!(err, TableError::BadMagic { .. }), "{err}");
            assert!(err.to_string().contains(PATH));
        } else {
            assert_names(&err, footer_at);
        }
    }
}

#[test]
fn truncated_files_fail_open_cleanly() {
    let (_, _, meta) = setup(500);
    let size = meta.file_size_bytes;
    for len in [0, 1, 100, 4095, 4096, size / 2, size - 4096, size - 1] {
        let (sim, _, _) = setup(500);
        sim.truncate_file(Path::new(PATH), len).unwrap();
        let err = block_on(open(&sim)).unwrap_err();
        assert!(err.is_corruption(), "length {len}: {err}");
        assert!(err.to_string().contains(PATH), "{err}");
    }
}

#[test]
fn garbage_files_fail_open_cleanly() {
    for size in [0usize, 1, 127, 128, 4096, 8192, 65536] {
        let sim = SimStorage::new(size as u64);
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        put_file(&sim, &bytes);
        let err = block_on(open(&sim)).unwrap_err();
        assert!(err.is_corruption(), "size {size}: {err}");
    }
}

/// Writes `bytes` (any length) as the segment file.
fn put_file(sim: &SimStorage, bytes: &[u8]) {
    let path = Path::new(PATH);
    block_on(async {
        let file = sim.open(path, OpenMode::Create).await.unwrap();
        let mut padded = bytes.to_vec();
        padded.resize(mantis_storage::align_up(bytes.len()), 0);
        if !padded.is_empty() {
            file.write_at(0, &padded).await.unwrap();
        }
    });
    sim.truncate_file(path, bytes.len() as u64).unwrap();
}

/// Every read of a mutated file either fails or returns exactly the original data.
async fn check_never_wrong(sim: &SimStorage, entries: &[Entry]) {
    let Ok(seg) = open(sim).await else {
        return;
    };
    for (i, e) in entries.iter().enumerate() {
        match seg.get(&e.key).await {
            Ok(found) => assert!(found.as_ref() == Some(e), "get {i} returned wrong data"),
            Err(err) => assert!(err.is_corruption(), "{err}"),
        }
        if let Ok(found) = seg.get(&common::absent_key(i)).await {
            assert_eq!(found, None);
        }
    }
    let mut it = seg.iter((Bound::Unbounded, Bound::Unbounded));
    let mut n = 0;
    loop {
        match it.next().await {
            Ok(Some(e)) => {
                assert!(e == entries[n], "iteration entry {n} wrong");
                n += 1;
            }
            Ok(None) => {
                assert_eq!(n, entries.len(), "iteration ended early without an error");
                break;
            }
            Err(err) => {
                assert!(err.is_corruption(), "{err}");
                break;
            }
        }
    }
    if let Err(err) = seg.verify().await {
        assert!(err.is_corruption(), "{err}");
    }
}

fn valid_file() -> (Vec<u8>, Vec<Entry>) {
    let (sim, entries, _) = setup(300);
    (sim.contents(Path::new(PATH)).unwrap(), entries)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_damage_never_yields_wrong_data(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (mut bytes, entries) = valid_file();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let sim = SimStorage::new(1);
        put_file(&sim, &bytes);
        block_on(check_never_wrong(&sim, &entries));
    }

    #[test]
    fn random_garbage_never_opens_or_panics(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
        let sim = SimStorage::new(1);
        put_file(&sim, &bytes);
        block_on(check_never_wrong(&sim, &[]));
    }

    #[test]
    fn a_valid_tail_on_garbage_blocks_never_yields_wrong_data(
        seed in any::<u64>(),
    ) {
        // Keep the footer and meta blocks valid, scramble the data blocks: gets and scans must
        // fail on every damaged block rather than return something.
        let (mut bytes, entries) = valid_file();
        let (_, _, meta) = setup(300);
        let data_end = meta.index_handle.offset as usize;
        let mut x = seed | 1;
        for b in &mut bytes[..data_end] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let sim = SimStorage::new(1);
        put_file(&sim, &bytes);
        block_on(async {
            let seg = open(&sim).await.unwrap();
            for e in &entries {
                let r = seg.get(&e.key).await;
                prop_assert!(
                    r.as_ref().is_err_and(TableError::is_corruption),
                    "a scrambled block was read without a corruption error"
                );
            }
            Ok(())
        })?;
    }
}
