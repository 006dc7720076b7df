//! The global deadlock detector: every shard breaks its own cycles (its lock manager's tick),
//! but a cycle whose edges lie on several shards is invisible to each of them. Shard 0 runs a
//! global pass every `interval`: it gathers every shard's wait-for edges by message, merges
//! them, picks victims and aborts them everywhere (`mantis_sql::txlock::detect_global`). The
//! victim's statement fails with 40P01 within about one interval, instead of waiting out the
//! lock timeout (seconds) and failing with 55P03.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mantis_engine::EngineHandle;
use serde_json::{json, Value};

use crate::server::Shared;

static PASSES_TOTAL: AtomicU64 = AtomicU64::new(0);
static VICTIMS_TOTAL: AtomicU64 = AtomicU64::new(0);
static ERRORS_TOTAL: AtomicU64 = AtomicU64::new(0);
static LAST_PASS_US: AtomicU64 = AtomicU64::new(0);
static INTERVAL_MS: AtomicU64 = AtomicU64::new(0);

/// The global pass's own figures (for `GET /api/v1/locks`).
pub fn detector_stats() -> Value {
    json!({
        "interval_ms": INTERVAL_MS.load(Ordering::Relaxed),
        "passes_total": PASSES_TOTAL.load(Ordering::Relaxed),
        "victims_total": VICTIMS_TOTAL.load(Ordering::Relaxed),
        "errors_total": ERRORS_TOTAL.load(Ordering::Relaxed),
        "last_pass_us": LAST_PASS_US.load(Ordering::Relaxed),
    })
}

/// Starts the global pass if this is shard 0 of several. Runs on the shard's executor.
pub fn start_shard(shared: &Arc<Shared>) {
    let engine = shared.engine.clone();
    if EngineHandle::current_shard() != Some(0) || engine.shard_count() < 2 {
        return;
    }
    let interval_ms = mantis_sql::txlock::configured().detect_interval_ms.max(1);
    INTERVAL_MS.store(interval_ms, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    glommio::spawn_local(async move {
        let interval = Duration::from_millis(interval_ms);
        loop {
            glommio::timer::sleep(interval).await;
            if shared.is_draining() {
                break;
            }
            pass(&engine).await;
        }
    })
    .detach();
}

async fn pass(engine: &EngineHandle) {
    let started = Instant::now();
    match mantis_sql::txlock::detect_global(engine).await {
        Ok(resolution) => {
            PASSES_TOTAL.fetch_add(1, Ordering::Relaxed);
            LAST_PASS_US.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            if !resolution.victims.is_empty() {
                VICTIMS_TOTAL.fetch_add(resolution.victims.len() as u64, Ordering::Relaxed);
                tracing::warn!(
                    victims = ?resolution.victims,
                    nodes = resolution.nodes,
                    edges = resolution.edges,
                    "deadlock across shards broken"
                );
            }
        }
        Err(e) => {
            ERRORS_TOTAL.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "global deadlock pass failed");
        }
    }
}
