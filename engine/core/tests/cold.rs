//! Cold-data detection on a scripted access pattern: exactly the segments nobody read for the
//! window are rewritten with ZSTD, every value survives, and data read again returns to LZ4
//! at compaction.
#![allow(clippy::unwrap_used)]

mod common;

use common::{block_on, open, sim_config};
use mantis_engine::cold::{ColdConfig, CompressionStats};
use mantis_engine::{Codec, EngineHandle};
use mantis_storage::SimStorage;

const LZ4: usize = 1;
const ZSTD: usize = 3;
const PER_RANGE: usize = 800;

fn key(range: usize, i: usize) -> Vec<u8> {
    format!("{}-key{i:05}", ["a", "b", "c"][range]).into_bytes()
}

/// A JSON-ish document: compressible, different per key.
fn value(range: usize, i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"range":{range},"name":"user-{i}","email":"user{i}@example.com","tags":["alpha","beta","gamma"],"active":{}}}"#,
        i.is_multiple_of(2)
    )
    .into_bytes()
}

fn read_range(h: &EngineHandle, range: usize) {
    for i in 0..PER_RANGE {
        assert_eq!(
            block_on(h.get(&key(range, i))).unwrap(),
            Some(value(range, i))
        );
    }
}

fn compression(h: &EngineHandle) -> CompressionStats {
    block_on(h.stats()).unwrap().remove(0).compression
}

#[test]
fn untouched_segments_turn_zstd_and_hot_data_returns_to_lz4() {
    let sim = SimStorage::new(70);
    let mut cfg = sim_config(&sim, 1);
    cfg.memtable_bytes_max = 8 << 20;
    cfg.segments_max = 100;
    cfg.compression = Codec::Lz4;
    cfg.cold = ColdConfig {
        epoch_secs: 0,
        cold_after_epochs: 2,
        cold_codec: Codec::Zstd { level: 6 },
        recompress_rate_bytes_per_sec: 0,
    };
    let engine = open(&cfg);
    let h = engine.handle();
    // Three segments, one per key range.
    let mut raw_by_range = Vec::new();
    for range in 0..3 {
        for i in 0..PER_RANGE {
            block_on(h.put(key(range, i), value(range, i), None)).unwrap();
        }
        block_on(h.flush()).unwrap();
        let before: u64 = raw_by_range.iter().sum();
        raw_by_range.push(compression(&h).raw_data_bytes - before);
    }
    let s = compression(&h);
    assert_eq!(s.raw_bytes_by_codec[LZ4], s.raw_data_bytes);
    assert_eq!(s.recompressions, 0);

    // Epoch 0 closes with no reads; epoch 1 reads ranges a and c.
    block_on(h.cold_tick()).unwrap();
    read_range(&h, 0);
    read_range(&h, 2);
    // Window = epochs 0 and 1: only range b went unread.
    block_on(h.cold_tick()).unwrap();
    let s = compression(&h);
    assert_eq!(s.recompressions, 1, "{s:?}");
    assert_eq!(s.raw_bytes_by_codec[ZSTD], raw_by_range[1], "{s:?}");
    assert!(s.recompressed_bytes_out <= s.recompressed_bytes_in, "{s:?}");

    // Epoch 2 reads range a only; then the window (1, 2) still holds c's reads of epoch 1.
    read_range(&h, 0);
    block_on(h.cold_tick()).unwrap();
    assert_eq!(compression(&h).recompressions, 1);
    // Epoch 3: nothing read; window (2, 3) no longer sees c.
    block_on(h.cold_tick()).unwrap();
    let s = compression(&h);
    assert_eq!(s.recompressions, 2, "{s:?}");
    assert_eq!(
        s.raw_bytes_by_codec[ZSTD],
        raw_by_range[1] + raw_by_range[2]
    );
    assert_eq!(s.raw_bytes_by_codec[LZ4], raw_by_range[0]);
    assert!(s.blocks_by_codec[ZSTD] > 0);

    // Every value survived the rewrites (these reads make b and c hot again).
    for range in 0..3 {
        read_range(&h, range);
    }
    // Compaction writes the hot codec.
    block_on(h.compact()).unwrap();
    let s = compression(&h);
    assert_eq!(s.raw_bytes_by_codec[ZSTD], 0, "{s:?}");
    assert_eq!(s.raw_bytes_by_codec[LZ4], s.raw_data_bytes);
    for range in 0..3 {
        read_range(&h, range);
    }
    engine.shutdown().unwrap();

    // And after a restart.
    let engine = open(&cfg);
    for range in 0..3 {
        read_range(&engine.handle(), range);
    }
    engine.shutdown().unwrap();
}
