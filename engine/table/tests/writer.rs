//! Writer behaviour at the edges: order violations, oversized entries, bad options, a full
//! disk and a failed fsync.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use futures_lite::future::block_on;
use mantis_storage::{SimFaults, SimStorage};
use mantis_table::{
    Codec, Entry, SegmentWriter, TableError, WriterOptions, KEY_MAX_BYTES, VALUE_MAX_BYTES,
};

#[test]
#[should_panic(expected = "strictly increasing")]
fn keys_out_of_order_are_a_bug() {
    let storage = SimStorage::new(1).handle();
    block_on(async {
        let mut w = SegmentWriter::create(&storage, Path::new("/s"), WriterOptions::default())
            .await
            .unwrap();
        w.add(&Entry::put(b"b".to_vec(), 1, b"x".to_vec()))
            .await
            .unwrap();
        w.add(&Entry::delete(b"b".to_vec(), 2)).await.unwrap();
    });
}

#[test]
fn oversized_entries_and_bad_options_are_errors() {
    let storage = SimStorage::new(1).handle();
    block_on(async {
        let mut w = SegmentWriter::create(&storage, Path::new("/s"), WriterOptions::default())
            .await
            .unwrap();
        let err = w
            .add(&Entry::delete(vec![0; KEY_MAX_BYTES + 1], 1))
            .await
            .unwrap_err();
        assert!(matches!(err, TableError::KeyTooLarge { .. }), "{err}");
        let err = w
            .add(&Entry::put(b"k".to_vec(), 1, vec![0; VALUE_MAX_BYTES + 1]))
            .await
            .unwrap_err();
        assert!(matches!(err, TableError::ValueTooLarge { .. }), "{err}");
        // The writer is still usable: nothing was written.
        w.add(&Entry::put(b"k".to_vec(), 1, b"v".to_vec()))
            .await
            .unwrap();
        assert_eq!(w.finish().await.unwrap().properties.entry_count, 1);

        for options in [
            WriterOptions {
                block_size_bytes: 0,
                ..WriterOptions::default()
            },
            WriterOptions {
                write_buffer_bytes: 5000,
                ..WriterOptions::default()
            },
            WriterOptions {
                codec: Codec::Zstd { level: 1000 },
                ..WriterOptions::default()
            },
        ] {
            let err = SegmentWriter::create(&storage, Path::new("/t"), options)
                .await
                .err()
                .unwrap();
            assert!(matches!(err, TableError::InvalidOptions { .. }), "{err}");
        }
        // An existing segment is never overwritten.
        let err = SegmentWriter::create(&storage, Path::new("/s"), WriterOptions::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TableError::Storage(_)), "{err}");
    });
}

#[test]
fn a_full_disk_fails_the_writer_and_abort_removes_the_file() {
    let sim = SimStorage::with_faults(
        1,
        SimFaults {
            capacity_bytes: Some(1 << 20),
            ..SimFaults::default()
        },
    );
    let storage = sim.handle();
    let path = Path::new("/seg/full.seg");
    let entries = common::entries(3, 50_000, 0, 0);
    block_on(async {
        let mut w = SegmentWriter::create(&storage, path, common::options(Codec::None))
            .await
            .unwrap();
        let mut err = None;
        for e in &entries {
            if let Err(e) = w.add(e).await {
                err = Some(e);
                break;
            }
        }
        let err = match err {
            Some(e) => e,
            None => w.finish().await.err().unwrap(),
        };
        assert!(err.is_disk_full(), "{err}");
    });
    // A second writer on the same disk: abort after a failure removes the partial file.
    let path2 = Path::new("/seg/full2.seg");
    block_on(async {
        storage.remove(path).await.unwrap();
        let mut w = SegmentWriter::create(&storage, path2, common::options(Codec::None))
            .await
            .unwrap();
        for e in &entries[..100] {
            w.add(e).await.unwrap();
        }
        w.abort().await.unwrap();
        assert!(!storage.exists(path2).await.unwrap());
    });
    assert_eq!(sim.used_bytes(), 0);
}

#[test]
fn a_failed_fsync_fails_finish() {
    let sim = SimStorage::with_faults(
        1,
        SimFaults {
            fail_sync_path_contains: Some("seg".into()),
            ..SimFaults::default()
        },
    );
    let storage = sim.handle();
    let entries = common::entries(3, 1000, 0, 0);
    block_on(async {
        let mut w =
            SegmentWriter::create(&storage, Path::new("/seg/x.seg"), WriterOptions::default())
                .await
                .unwrap();
        for e in &entries {
            w.add(e).await.unwrap();
        }
        let err = w.finish().await.unwrap_err();
        assert!(
            matches!(
                err,
                TableError::Storage(mantis_storage::StorageError::SyncFailed { .. })
            ),
            "{err}"
        );
    });
}

#[test]
fn blocks_follow_the_target_size_and_big_values_get_their_own_block() {
    let storage = SimStorage::new(1).handle();
    let path = Path::new("/seg/sizes.seg");
    let mut entries: Vec<Entry> = (0..2000u32)
        .map(|i| {
            Entry::put(
                format!("k{i:06}").into_bytes(),
                u64::from(i),
                vec![b'v'; 100],
            )
        })
        .collect();
    entries[1000] = Entry::put(entries[1000].key.clone(), 1, vec![b'w'; 100_000]);
    let options = WriterOptions {
        block_size_bytes: 4096,
        codec: Codec::None,
        ..WriterOptions::default()
    };
    block_on(async {
        let meta = common::write(&storage, path, &entries, options).await;
        let cache = std::rc::Rc::new(mantis_table::BlockCache::new(
            1 << 20,
            mantis_table::CachePolicy::Lfu,
        ));
        let seg = mantis_table::Segment::open(&storage, path, 3, cache)
            .await
            .unwrap();
        let mut big_blocks = 0;
        for b in seg.blocks() {
            // Stored raw: stored length = raw length + 9 bytes of trailer.
            if b.handle.len > 4096 + 9 {
                big_blocks += 1;
                assert_eq!(
                    b.last_key, entries[1000].key,
                    "only the big value overflows"
                );
            }
        }
        assert_eq!(big_blocks, 1);
        // About 2000 * 121 bytes / 4 KiB blocks, plus the block holding the big value alone.
        assert!(
            (60..=70).contains(&seg.blocks().len()),
            "{}",
            seg.blocks().len()
        );
        assert_eq!(
            meta.properties.codec_stats.blocks_by_codec[0],
            meta.properties.block_count
        );
    });
}

/// Keys under a keyspace prefix land in blocks of that keyspace's codec, every other key in
/// blocks of the segment codec; the longest prefix wins, and every value reads back.
#[test]
fn keyspace_codecs_pick_the_block_codec() {
    let storage = SimStorage::new(1).handle();
    let path = Path::new("/seg/keyspaces.seg");
    let mut entries: Vec<Entry> = Vec::new();
    for prefix in ["a:", "logs:", "logs:raw:", "z:"] {
        for i in 0..300u32 {
            let value =
                format!("{{\"n\":{i},\"text\":\"compressible compressible compressible\"}}");
            entries.push(Entry::put(
                format!("{prefix}{i:06}").into_bytes(),
                u64::from(i) + 1,
                value.into_bytes(),
            ));
        }
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let options = WriterOptions {
        block_size_bytes: 4096,
        codec: Codec::Lz4,
        keyspace_codecs: vec![
            mantis_table::KeyspaceCodec {
                prefix: b"logs:".to_vec(),
                codec: Codec::Zstd { level: 3 },
            },
            mantis_table::KeyspaceCodec {
                prefix: b"logs:raw:".to_vec(),
                codec: Codec::Snappy,
            },
        ],
        ..WriterOptions::default()
    };
    assert_eq!(options.codec_for(b"logs:raw:1"), Codec::Snappy);
    block_on(async {
        common::write(&storage, path, &entries, options.clone()).await;
        let cache = std::rc::Rc::new(mantis_table::BlockCache::new(
            1 << 20,
            mantis_table::CachePolicy::Lru,
        ));
        let seg = mantis_table::Segment::open(&storage, path, 1, cache)
            .await
            .unwrap();
        let mut seen = [0u32; 4];
        for e in &entries {
            let (found, block) = seg.get_located(&e.key).await.unwrap().unwrap();
            assert_eq!(&found, e);
            let want = options.codec_for(&e.key).id();
            let got = seg.blocks()[block].codec_id;
            assert_eq!(got, want, "key {:?}", String::from_utf8_lossy(&e.key));
            seen[usize::from(got)] += 1;
        }
        assert_eq!(seen, [0, 600, 300, 300], "none, lz4, snappy, zstd");
    });
}

#[test]
fn too_many_keyspace_codecs_are_refused() {
    let storage = SimStorage::new(1).handle();
    let options = WriterOptions {
        keyspace_codecs: (0..=mantis_table::KEYSPACE_CODECS_MAX)
            .map(|i| mantis_table::KeyspaceCodec {
                prefix: format!("p{i}:").into_bytes(),
                codec: Codec::None,
            })
            .collect(),
        ..WriterOptions::default()
    };
    block_on(async {
        let err = SegmentWriter::create(&storage, Path::new("/k"), options)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TableError::InvalidOptions { .. }), "{err}");
    });
}
