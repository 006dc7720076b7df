//! Damage in the manifest must never turn into silently lost data.
//!
//! The story: the manifest reader stopped at the first damaged record and recovered the state
//! before it. The shard then deleted every segment file that older state did not list — files
//! holding committed data whose WAL had already been truncated — before the WAL replay noticed
//! the gap. A flipped bit in the middle of the manifest thus lost data; one in the last record
//! lost data *and* refused to start. Now the newest valid record wins wherever the damage is,
//! and orphan files are removed only after the WAL replay proved the state complete.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{block_on, files_with, manifest_files, open, sim_config};
use mantis_engine::{Engine, EngineConfig};
use mantis_storage::SimStorage;

const RECORD_MAGIC: [u8; 4] = 0x4d4d_414e_u32.to_le_bytes();

fn key(i: usize) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; 200]
}

/// Writes `n` keys with small memtables (many flushes, compactions and manifest records).
fn load(sim: &SimStorage, n: usize) -> EngineConfig {
    let mut cfg = sim_config(sim, 1);
    cfg.memtable_bytes_max = 64 << 10;
    let engine = open(&cfg);
    let h = engine.handle();
    for i in 0..n {
        block_on(h.put(key(i), value(i), None)).unwrap();
    }
    engine.shutdown().unwrap();
    cfg
}

fn manifest_file(sim: &SimStorage) -> PathBuf {
    manifest_files(sim).pop().unwrap()
}

/// Offsets of the blocks that start a manifest record.
fn record_offsets(sim: &SimStorage, manifest: &Path) -> Vec<u64> {
    let data = sim.contents(manifest).unwrap();
    (0..data.len() / 4096)
        .filter(|b| data[b * 4096..b * 4096 + 4] == RECORD_MAGIC)
        .map(|b| (b * 4096) as u64)
        .collect()
}

fn segment_files(sim: &SimStorage) -> Vec<PathBuf> {
    files_with(sim, "seg")
}

fn assert_all_keys(engine: &Engine, n: usize) {
    let h = engine.handle();
    for i in 0..n {
        assert_eq!(block_on(h.get(&key(i))).unwrap(), Some(value(i)), "key {i}");
    }
}

#[test]
fn damaged_middle_manifest_record_loses_nothing() {
    let n = 3000;
    let sim = SimStorage::new(81);
    let cfg = load(&sim, n);
    let manifest = manifest_file(&sim);
    let records = record_offsets(&sim, &manifest);
    assert!(records.len() >= 4, "want several records: {records:?}");
    let middle = records[records.len() / 2];
    sim.flip_bit(&manifest, middle + 40, 3).unwrap();
    let engine = Engine::open(cfg).unwrap();
    assert_all_keys(&engine, n);
    engine.shutdown().unwrap();
}

#[test]
fn damaged_last_manifest_record_never_deletes_committed_files() {
    let n = 3000;
    let sim = SimStorage::new(82);
    let cfg = load(&sim, n);
    let manifest = manifest_file(&sim);
    let last = *record_offsets(&sim, &manifest).last().unwrap();
    sim.flip_bit(&manifest, last + 40, 3).unwrap();
    let before = segment_files(&sim);
    match Engine::open(cfg) {
        // The older state may still be complete (the WAL still covers it): then every key
        // must be there.
        Ok(engine) => {
            assert_all_keys(&engine, n);
            engine.shutdown().unwrap();
        }
        // Or the start is refused — and then nothing may have been deleted.
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            assert_eq!(
                segment_files(&sim),
                before,
                "refused start deleted files: {msg}"
            );
        }
    }
}

/// Damage in the newest few records leaves a state whose segments were compacted away and
/// whose WAL history was recycled: the start must be refused with every file still in place
/// (the operator restores or repairs; the first version deleted the newer segments first).
#[test]
fn damaged_newest_manifest_records_refuse_start_and_delete_nothing() {
    let n = 3000;
    let sim = SimStorage::new(83);
    let cfg = load(&sim, n);
    let manifest = manifest_file(&sim);
    let records = record_offsets(&sim, &manifest);
    assert!(records.len() >= 8, "want many records: {records:?}");
    for &at in &records[records.len() - 4..] {
        sim.flip_bit(&manifest, at + 40, 3).unwrap();
    }
    let before = segment_files(&sim);
    let err = match Engine::open(cfg) {
        Ok(_) => panic!("opened on a state four commits old"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        segment_files(&sim),
        before,
        "refused start deleted files: {err}"
    );
}
