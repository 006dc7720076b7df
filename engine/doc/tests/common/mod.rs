//! Shared helpers for the document tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use mantis_engine::{Engine, EngineConfig};
use mantis_storage::SimStorage;

/// A small engine on a simulated disk: small memtables, so flushes and compactions happen.
pub fn sim_config(sim: &SimStorage, shards: usize) -> EngineConfig {
    EngineConfig {
        data_dir: PathBuf::from("/sim"),
        shards,
        pin_cpus: false,
        memtable_bytes_max: 256 << 10,
        block_cache_bytes: 1 << 20,
        wal_segment_bytes: 1 << 20,
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
