//! Shared helpers for the engine's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use mantis_engine::{Engine, EngineConfig};
use mantis_storage::SimStorage;

/// A small engine on a simulated disk: tiny memtables so flushes and compactions happen
/// within a few hundred writes.
pub fn sim_config(sim: &SimStorage, shards: usize) -> EngineConfig {
    EngineConfig {
        data_dir: PathBuf::from("/sim"),
        shards,
        pin_cpus: false,
        memtable_bytes_max: 32 << 10,
        block_cache_bytes: 256 << 10,
        wal_segment_bytes: 256 << 10,
        segments_max: 3,
        sim_storage: Some(sim.clone()),
        ..EngineConfig::default()
    }
}

pub fn open(cfg: &EngineConfig) -> Engine {
    Engine::open(cfg.clone()).unwrap_or_else(|e| panic!("open engine: {e}"))
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Files of the simulated disk with extension `ext`, sorted.
pub fn files_with(sim: &SimStorage, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = sim
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// The manifest files of the simulated disk, sorted (the newest generation last).
pub fn manifest_files(sim: &SimStorage) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = sim
        .files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("MANIFEST-")
        })
        .collect();
    v.sort();
    v
}
