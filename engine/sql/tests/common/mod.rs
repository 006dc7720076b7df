//! Shared helpers: an engine on a simulated disk and a blocking way to run SQL.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use mantis_engine::{Engine, EngineConfig};
use mantis_sql::{Session, SqlEngine, StatementResult, Value};
use mantis_storage::SimStorage;

pub fn sim_config(sim: &SimStorage, shards: usize) -> EngineConfig {
    EngineConfig {
        data_dir: PathBuf::from("/sim"),
        shards,
        pin_cpus: false,
        memtable_bytes_max: 1 << 20,
        block_cache_bytes: 1 << 20,
        wal_segment_bytes: 1 << 20,
        sim_storage: Some(sim.clone()),
        ..EngineConfig::default()
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// An engine with `shards` shards on a fresh simulated disk, and a SQL engine over it.
pub fn setup(shards: usize) -> (Engine, SqlEngine, SimStorage) {
    let sim = SimStorage::new(7);
    let engine = Engine::open(sim_config(&sim, shards)).unwrap();
    let sql = block_on(SqlEngine::open(engine.handle())).unwrap();
    (engine, sql, sim)
}

pub fn run(s: &mut Session, sql: &str) -> Vec<StatementResult> {
    block_on(s.execute(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The rows of the last statement of `sql`, as text (NULL as "NULL").
pub fn rows(s: &mut Session, sql: &str) -> Vec<Vec<String>> {
    match run(s, sql).pop() {
        Some(StatementResult::Rows { rows, .. }) => rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.to_pg_text().unwrap_or_else(|| "NULL".into()))
                    .collect()
            })
            .collect(),
        other => panic!("{sql}: expected rows, got {other:?}"),
    }
}

/// The SQLSTATE `sql` fails with.
pub fn err(s: &mut Session, sql: &str) -> &'static str {
    match block_on(s.execute(sql)) {
        Ok(r) => panic!("{sql}: expected an error, got {r:?}"),
        Err(e) => {
            assert_eq!(e.sqlstate.len(), 5);
            e.sqlstate
        }
    }
}

pub fn int(v: i64) -> Value {
    Value::Int64(v)
}
