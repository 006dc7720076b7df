//! Shared helpers for the segment tests: seeded entry sets, writing, and a full round-trip
//! check against the input.
#![allow(clippy::unwrap_used, dead_code)]

use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;

use mantis_storage::Storage;
use mantis_table::{
    BlockCache, CachePolicy, Codec, Entry, Segment, SegmentMeta, SegmentWriter, WriterOptions,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A key range as `Segment::iter` takes it.
pub type KeyRange<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

pub const CODECS: [Codec; 4] = [
    Codec::None,
    Codec::Lz4,
    Codec::Snappy,
    Codec::Zstd { level: 3 },
];

/// Present keys are `k` + 3*i (ten digits) + a suffix of varying length; `absent_key(i)`
/// falls between them.
pub fn key(i: usize, rng: &mut SmallRng) -> Vec<u8> {
    let mut k = format!("k{:010}", i * 3).into_bytes();
    let suffix = rng.gen_range(0..24);
    k.extend((0..suffix).map(|_| rng.gen_range(b'a'..=b'z')));
    k
}

pub fn absent_key(i: usize) -> Vec<u8> {
    format!("k{:010}", i * 3 + 1).into_bytes()
}

fn value(rng: &mut SmallRng, len: usize) -> Vec<u8> {
    if rng.gen_bool(0.5) {
        // Compressible: words from a small vocabulary.
        let words: [&[u8]; 4] = [b"mantis ", b"segment ", b"block ", b"value "];
        words
            .iter()
            .cycle()
            .skip(rng.gen_range(0..4))
            .flat_map(|w| w.iter().copied())
            .take(len)
            .collect()
    } else {
        (0..len).map(|_| rng.gen()).collect()
    }
}

/// `n` entries in key order: puts, expiring puts and tombstones, with `big` values of
/// `big_len` bytes spread through the set.
pub fn entries(seed: u64, n: usize, big: usize, big_len: usize) -> Vec<Entry> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let big_every = n.checked_div(big).unwrap_or(usize::MAX);
    (0..n)
        .map(|i| {
            let k = key(i, &mut rng);
            let lsn = rng.gen_range(1..1_000_000_000);
            if i % 10 == 3 {
                Entry::delete(k, lsn)
            } else {
                let len = if big_every != usize::MAX && i % big_every == big_every / 2 {
                    big_len
                } else {
                    rng.gen_range(0..300)
                };
                let v = value(&mut rng, len);
                if i % 7 == 0 {
                    Entry::put_expiring(k, lsn, v, 1_700_000_000_000 + rng.gen_range(0..1_000_000))
                } else {
                    Entry::put(k, lsn, v)
                }
            }
        })
        .collect()
}

pub async fn write(
    storage: &Rc<dyn Storage>,
    path: &Path,
    entries: &[Entry],
    options: WriterOptions,
) -> SegmentMeta {
    let mut w = SegmentWriter::create(storage, path, options).await.unwrap();
    for e in entries {
        w.add(e).await.unwrap();
    }
    w.finish().await.unwrap()
}

pub fn options(codec: Codec) -> WriterOptions {
    WriterOptions {
        codec,
        ..WriterOptions::default()
    }
}

/// Collects a range from a segment.
pub async fn collect(seg: &Rc<Segment>, range: KeyRange<'_>) -> Vec<Entry> {
    let mut it = seg.iter(range);
    let mut out = Vec::new();
    while let Some(e) = it.next().await.unwrap() {
        out.push(e);
    }
    out
}

fn in_range(k: &[u8], range: KeyRange<'_>) -> bool {
    let lower_ok = match range.0 {
        Bound::Included(l) => k >= l,
        Bound::Excluded(l) => k > l,
        Bound::Unbounded => true,
    };
    let upper_ok = match range.1 {
        Bound::Included(u) => k <= u,
        Bound::Excluded(u) => k < u,
        Bound::Unbounded => true,
    };
    lower_ok && upper_ok
}

/// Compares entries without printing megabytes of values on failure.
pub fn assert_same(found: &[Entry], expected: &[Entry], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: entry count");
    for (i, (f, e)) in found.iter().zip(expected).enumerate() {
        assert!(
            f == e,
            "{what}: entry {i} differs (key {:?} vs {:?})",
            String::from_utf8_lossy(&f.key),
            String::from_utf8_lossy(&e.key)
        );
    }
}

/// Opens the segment and checks point gets (present and absent), full and range iteration,
/// the properties and `verify` against `entries`.
pub async fn check_round_trip(
    storage: &Rc<dyn Storage>,
    path: &Path,
    entries: &[Entry],
    meta: &SegmentMeta,
) {
    let cache = Rc::new(BlockCache::new(8 << 20, CachePolicy::Lru));
    let seg = Segment::open(storage, path, 7, cache.clone())
        .await
        .unwrap();
    assert_eq!(seg.meta(), meta, "reopened meta equals the writer's");
    check_properties(&seg, entries);

    for (i, e) in entries.iter().enumerate() {
        let got = seg.get(&e.key).await.unwrap();
        assert!(got.as_ref() == Some(e), "get of entry {i}");
        if i % 10 == 0 {
            assert_eq!(seg.get(&absent_key(i)).await.unwrap(), None);
        }
    }
    assert_eq!(seg.get(b"").await.unwrap(), None);
    assert_eq!(seg.get(b"zzz").await.unwrap(), None);

    let all = collect(&seg, (Bound::Unbounded, Bound::Unbounded)).await;
    assert_same(&all, entries, "full iteration");

    let n = entries.len();
    let k = |i: usize| entries[i].key.as_slice();
    let absent: Vec<Vec<u8>> = [n / 3, n / 2].iter().map(|&i| absent_key(i)).collect();
    let ranges: Vec<KeyRange> = vec![
        (Bound::Included(k(n / 4)), Bound::Excluded(k(n / 2))),
        (Bound::Excluded(k(n / 4)), Bound::Included(k(n / 2))),
        (Bound::Unbounded, Bound::Included(k(n / 10))),
        (Bound::Included(k(n - 5)), Bound::Unbounded),
        (Bound::Excluded(k(n - 1)), Bound::Unbounded),
        (Bound::Included(&absent[0]), Bound::Excluded(&absent[1])),
        (Bound::Included(k(n / 2)), Bound::Included(k(n / 2))),
        (Bound::Included(k(n / 2)), Bound::Excluded(k(n / 3))),
        (Bound::Included(b"a"), Bound::Excluded(b"b")),
    ];
    for range in ranges {
        let expected: Vec<Entry> = entries
            .iter()
            .filter(|e| in_range(&e.key, range))
            .cloned()
            .collect();
        let found = collect(&seg, range).await;
        assert_same(&found, &expected, &format!("range {range:?}"));
    }
    let report = seg.verify().await.unwrap();
    assert_eq!(report.entries_checked, n as u64);
    assert_eq!(report.blocks_checked, seg.blocks().len() as u64);
}

pub fn check_properties(seg: &Segment, entries: &[Entry]) {
    let p = seg.properties();
    assert_eq!(p.entry_count, entries.len() as u64);
    assert_eq!(
        p.tombstone_count,
        entries.iter().filter(|e| e.is_tombstone()).count() as u64
    );
    assert_eq!(p.put_count + p.tombstone_count, p.entry_count);
    assert_eq!(
        p.expiring_count,
        entries
            .iter()
            .filter(|e| e.expires_at_ms().is_some())
            .count() as u64
    );
    assert_eq!(
        p.earliest_expiry_ms,
        entries.iter().filter_map(|e| e.expires_at_ms()).min()
    );
    assert_eq!(p.min_lsn, entries.iter().map(|e| e.lsn).min().unwrap());
    assert_eq!(p.max_lsn, entries.iter().map(|e| e.lsn).max().unwrap());
    assert_eq!(p.min_key, entries[0].key);
    assert_eq!(p.max_key, entries[entries.len() - 1].key);
    assert_eq!(p.block_count, seg.blocks().len() as u64);
    let stats = &p.codec_stats;
    assert_eq!(stats.blocks_by_codec.iter().sum::<u64>(), p.block_count);
}
