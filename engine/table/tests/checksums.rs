//! Issue 7: the block checksum algorithm is chosen per file and recorded in its footer
//! (format 3). Every algorithm guards every block; files of format 2 (before the algorithm
//! byte, all CRC32) still read.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::rc::Rc;

use futures_lite::future::block_on;
use mantis_storage::SimStorage;
use mantis_table::{
    BlockCache, CachePolicy, ChecksumAlgorithm, Codec, Segment, TableError, WriterOptions,
    FOOTER_BYTES,
};

const PATH: &str = "/seg/0000000000000003.seg";

fn options(checksum: ChecksumAlgorithm) -> WriterOptions {
    WriterOptions {
        block_size_bytes: 2048,
        codec: Codec::Lz4,
        checksum,
        ..WriterOptions::default()
    }
}

async fn open(sim: &SimStorage) -> Result<Rc<Segment>, TableError> {
    let cache = Rc::new(BlockCache::new(1 << 20, CachePolicy::Lru));
    Segment::open(&sim.handle(), Path::new(PATH), 1, cache).await
}

/// Makes the file hold `new` at `offset` (SimStorage changes files bit by bit).
fn overwrite(sim: &SimStorage, offset: u64, new: &[u8]) {
    let path = Path::new(PATH);
    let old = sim.contents(path).unwrap();
    for (i, (&a, &b)) in old[offset as usize..].iter().zip(new).enumerate() {
        for bit in 0..8u8 {
            if (a ^ b) & (1 << bit) != 0 {
                sim.flip_bit(path, offset + i as u64, bit).unwrap();
            }
        }
    }
}

#[test]
fn every_algorithm_round_trips_and_catches_a_flipped_bit() {
    for algorithm in ChecksumAlgorithm::ALL {
        let sim = SimStorage::new(3);
        let entries = common::entries(11, 2000, 0, 0);
        let meta = block_on(common::write(
            &sim.handle(),
            Path::new(PATH),
            &entries,
            options(algorithm),
        ));
        assert_eq!(meta.checksum, algorithm);
        block_on(async {
            let seg = open(&sim).await.unwrap();
            assert_eq!(seg.meta().checksum, algorithm);
            assert!(
                seg.blocks().len() > 10,
                "{algorithm}: {}",
                seg.blocks().len()
            );
            for e in &entries {
                assert_eq!(
                    seg.get(&e.key).await.unwrap().as_ref(),
                    Some(e),
                    "{algorithm}"
                );
            }
            seg.verify().await.unwrap();
            // Damage one data block's payload: its reads fail, naming file and offset.
            let victim = seg.blocks()[4].clone();
            sim.flip_bit(Path::new(PATH), victim.handle.offset + 7, 2)
                .unwrap();
            let cold = open(&sim).await.unwrap();
            let err = cold.get(&victim.last_key).await.err().unwrap();
            let at = match &err {
                TableError::ChecksumMismatch { offset, .. } => {
                    assert_eq!(algorithm, ChecksumAlgorithm::Crc32, "{err}");
                    *offset
                }
                TableError::DigestMismatch {
                    offset,
                    algorithm: name,
                    expected,
                    found,
                    ..
                } => {
                    assert_eq!(*name, algorithm.name());
                    assert_eq!(expected.len(), algorithm.digest_bytes() * 2);
                    assert_ne!(expected, found);
                    *offset
                }
                other => panic!("{algorithm}: {other}"),
            };
            assert_eq!(at, victim.handle.offset);
            assert!(err.is_corruption());
            assert!(err.to_string().contains(PATH), "{err}");
            assert!(cold.verify().await.is_err());
        });
    }
}

/// Rewrites the footer as format 2 wrote it: version 2, no algorithm byte, CRC recomputed.
fn make_version_2(sim: &SimStorage) {
    let raw = sim.contents(Path::new(PATH)).unwrap();
    let at = raw.len() - FOOTER_BYTES;
    let mut footer = raw[at..].to_vec();
    footer[72] = 0;
    footer[112..116].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&footer[..116]);
    footer[116..120].copy_from_slice(&crc.to_le_bytes());
    overwrite(sim, at as u64, &footer);
}

#[test]
fn format_2_files_read_as_crc32() {
    let sim = SimStorage::new(4);
    let entries = common::entries(12, 1500, 0, 0);
    block_on(common::write(
        &sim.handle(),
        Path::new(PATH),
        &entries,
        options(ChecksumAlgorithm::Crc32),
    ));
    make_version_2(&sim);
    block_on(async {
        let seg = open(&sim).await.unwrap();
        assert_eq!(seg.meta().checksum, ChecksumAlgorithm::Crc32);
        for e in &entries {
            assert_eq!(seg.get(&e.key).await.unwrap().as_ref(), Some(e));
        }
        seg.verify().await.unwrap();
    });
}

/// The algorithm byte is what the reader goes by: a SHA-256 file whose footer claimed the
/// old format (CRC32) is refused, not misread.
#[test]
fn a_footer_that_lies_about_the_algorithm_is_refused() {
    let sim = SimStorage::new(5);
    let entries = common::entries(13, 500, 0, 0);
    block_on(common::write(
        &sim.handle(),
        Path::new(PATH),
        &entries,
        options(ChecksumAlgorithm::Sha256),
    ));
    make_version_2(&sim);
    let err = block_on(open(&sim)).err().unwrap();
    assert!(err.is_corruption(), "{err}");
}
