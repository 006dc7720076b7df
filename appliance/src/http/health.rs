//! `/health`, `/health/live`, `/health/ready` and `/metrics`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use mantis_engine::ShardStats;

use super::error::{json_response, ApiError, HttpResponse};
use crate::metrics::ShardSample;
use crate::server::Shared;

/// How long a health check or scrape waits for every shard to answer.
pub const SHARD_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The engine's statistics, or why they could not be had in time.
async fn shard_stats(shared: &Shared) -> Result<Vec<ShardStats>, String> {
    let probe = async { Ok(shared.engine.stats().await) };
    match glommio::timer::timeout(SHARD_PROBE_TIMEOUT, probe).await {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "shards did not answer within {} ms",
            SHARD_PROBE_TIMEOUT.as_millis()
        )),
    }
}

pub fn sample(s: &ShardStats) -> ShardSample {
    ShardSample {
        live_keys: s.live_keys_estimate,
        memtable_bytes: s.memtable_bytes,
        segments: s.segments,
        segment_bytes: s.segment_bytes,
        wal_records: s.wal_records,
        wal_bytes_written: s.wal_bytes_written,
        wal_syncs: s.wal_syncs,
        wal_sync_latency_us_max: s.wal_sync_latency_us_max,
        flushes: s.flushes,
        compactions: s.compactions,
        cache_hits: s.cache_hits,
        cache_misses: s.cache_misses,
        torn_tail_bytes: s.torn_tail_bytes,
        last_lsn: s.last_lsn,
        flushed_lsn: s.flushed_lsn,
        recovered_records: s.recovered_records,
        read_only: s.read_only,
        disk_full: s.disk_full,
    }
}

pub fn live() -> HttpResponse {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "live" }))
}

pub fn ready(shared: &Shared) -> HttpResponse {
    if shared.is_ready() {
        json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" }))
    } else if shared.is_draining() {
        ApiError::not_ready("shutting down").response()
    } else {
        ApiError::not_ready("recovery has not finished").response()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Pass,
    /// Degraded: serving, but something needs attention (non-critical check failed).
    Warn,
    /// A critical check failed.
    Fail,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Pass => "pass",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

fn check(level: Level, critical: bool, detail: String) -> (Level, serde_json::Value) {
    (
        level,
        serde_json::json!({ "status": level.as_str(), "critical": critical, "detail": detail }),
    )
}

/// Every check with its status; 200 when healthy or degraded, 503 when unhealthy.
pub async fn health(shared: &Shared) -> HttpResponse {
    let mut checks = serde_json::Map::new();
    let mut worst = Level::Pass;
    let mut add = |name: &str, (level, body): (Level, serde_json::Value)| {
        worst = worst.max(level);
        checks.insert(name.into(), body);
    };
    add(
        "recovery",
        if shared.is_ready() || shared.is_draining() {
            check(Level::Pass, true, "recovery finished".into())
        } else {
            check(Level::Fail, true, "recovery running".into())
        },
    );
    add(
        "accepting",
        if shared.is_draining() {
            check(Level::Fail, true, "shutting down: not accepting".into())
        } else {
            check(Level::Pass, true, "accepting connections".into())
        },
    );
    match shard_stats(shared).await {
        Ok(stats) => {
            let read_only: Vec<usize> = stats
                .iter()
                .filter(|s| s.read_only)
                .map(|s| s.shard)
                .collect();
            let full: Vec<usize> = stats
                .iter()
                .filter(|s| s.disk_full)
                .map(|s| s.shard)
                .collect();
            add(
                "shards",
                check(
                    Level::Pass,
                    true,
                    format!("{} shards answering", stats.len()),
                ),
            );
            add(
                "wal",
                if read_only.is_empty() {
                    check(Level::Pass, true, "every WAL accepts writes".into())
                } else {
                    check(
                        Level::Fail,
                        true,
                        format!("read-only after an fsync failure: shards {read_only:?}"),
                    )
                },
            );
            add(
                "disk",
                if full.is_empty() {
                    check(Level::Pass, false, "space available".into())
                } else {
                    check(Level::Warn, false, format!("disk full on shards {full:?}"))
                },
            );
            // Issue 7: any corruption seen (on a read or by the scrubber) degrades health.
            let corrupt: Vec<usize> = stats
                .iter()
                .filter(|s| s.corruption_events > 0)
                .map(|s| s.shard)
                .collect();
            add(
                "integrity",
                if corrupt.is_empty() {
                    check(Level::Pass, false, "no corruption seen".into())
                } else {
                    check(
                        Level::Warn,
                        false,
                        format!("corruption events on shards {corrupt:?}: GET /api/v1/integrity"),
                    )
                },
            );
        }
        Err(reason) => add("shards", check(Level::Fail, true, reason)),
    }
    add("disk_space", disk_space(shared));
    add("audit", audit_trail(shared));
    // Issue 8 / 10: backup destinations and RPO compliance.
    add("backup_destinations", backup_destinations());
    add("rpo", rpo_compliance());
    let (status, word) = match worst {
        Level::Pass => (StatusCode::OK, "healthy"),
        Level::Warn => (StatusCode::OK, "degraded"),
        Level::Fail => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
    };
    shared.metrics.set_health(match worst {
        Level::Pass => 0,
        Level::Warn => 1,
        Level::Fail => 2,
    });
    json_response(
        status,
        &serde_json::json!({
            "status": word,
            "uptime_seconds": shared.uptime().as_secs(),
            "checks": checks,
        }),
    )
}

/// Non-critical: a filling disk degrades before writes fail with ENOSPC (the `disk` check).
fn disk_space(shared: &Shared) -> (Level, serde_json::Value) {
    match nix::sys::statvfs::statvfs(shared.config.data_dir.as_path()) {
        Ok(fs) => {
            let block = fs.fragment_size();
            let free_bytes = fs.blocks_available().saturating_mul(block);
            let total_bytes = fs.blocks().saturating_mul(block);
            let detail = format!("{free_bytes} of {total_bytes} bytes free");
            if free_bytes < shared.config.monitor.disk_free_bytes_min {
                check(Level::Warn, false, format!("low: {detail}"))
            } else {
                check(Level::Pass, false, detail)
            }
        }
        Err(e) => check(Level::Warn, false, format!("statvfs: {e}")),
    }
}

/// Non-critical: a trail that could not be opened (broken chain) stops auditing.
fn audit_trail(shared: &Shared) -> (Level, serde_json::Value) {
    if !shared.config.monitor.audit {
        return check(
            Level::Pass,
            false,
            "auditing disabled by configuration".into(),
        );
    }
    match crate::monitoring::get() {
        Some(_) if crate::monitoring::auditing() => {
            check(Level::Pass, false, "audit trail writing".into())
        }
        Some(_) => check(
            Level::Warn,
            false,
            "audit trail refused (see the log; mantisctl audit verify)".into(),
        ),
        None => check(Level::Pass, false, "monitor not started yet".into()),
    }
}

/// Non-critical: a backup destination (the WAL archive's, a schedule's) that fails uploads
/// or probes, or holds an upload unanswered past the RPO target, degrades health; the data is
/// still served and durable locally. Each destination is listed with its state.
fn backup_destinations() -> (Level, serde_json::Value) {
    let reports = crate::backup_health::reports();
    let failing: Vec<String> = reports
        .iter()
        .filter(|r| r.health.is_failing())
        .map(|r| {
            format!(
                "{} {} ({}): {}",
                destination_severity(&r.health),
                r.role,
                r.destination,
                r.health.last_error.as_deref().unwrap_or("failing")
            )
        })
        .collect();
    let (level, detail) = if reports.is_empty() {
        (Level::Pass, "no backup destination configured".to_string())
    } else if failing.is_empty() {
        (
            Level::Pass,
            format!("{} destination(s) reachable", reports.len()),
        )
    } else {
        (Level::Warn, format!("failing: {}", failing.join("; ")))
    };
    let (level, mut body) = check(level, false, detail);
    if let Some(o) = body.as_object_mut() {
        let destinations: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("severity".into(), destination_severity(&r.health).into());
                }
                v
            })
            .collect();
        o.insert("destinations".into(), destinations.into());
    }
    (level, body)
}

/// Issue 10: a failing destination's severity, as the backup schedule's alert escalates it:
/// `warning`, then `critical` after `FAILURES_CRITICAL` failures in a row. Health stays
/// degraded either way (the data is served and durable locally); the severity says how
/// urgent the off-host copy is.
fn destination_severity(h: &mantis_backup::archive::DestinationHealth) -> &'static str {
    let critical = u64::from(crate::backup_schedule::FAILURES_CRITICAL);
    if !h.is_failing() {
        "ok"
    } else if h.failures_in_a_row >= critical {
        "critical"
    } else {
        "warning"
    }
}

/// Non-critical: the RPO level breached (committed writes older than the target not archived).
fn rpo_compliance() -> (Level, serde_json::Value) {
    match crate::rpo::status() {
        None => check(Level::Pass, false, "WAL archiving off".into()),
        Some(s) if s.state == "breached" => check(
            Level::Warn,
            false,
            format!(
                "breached: exposure {} ms, target {} ms (GET /api/v1/rpo)",
                s.exposure_max_ms, s.target_ms
            ),
        ),
        Some(s) => check(
            Level::Pass,
            false,
            format!(
                "compliant: exposure {} ms, target {} ms",
                s.exposure_max_ms, s.target_ms
            ),
        ),
    }
}

/// Copies the engine's per-shard statistics into the registry (a scrape, and the alerts
/// thread before it evaluates the rules).
pub async fn refresh_metrics(shared: &Shared) {
    match shard_stats(shared).await {
        Ok(stats) => {
            let samples: Vec<ShardSample> = stats.iter().map(sample).collect();
            shared.metrics.record_shards(&samples);
            shared.metrics.integrity.record(&stats);
            // Issue 9: two-phase-commit counters.
            crate::twopc_metrics::record(shared.metrics.registry(), &stats);
        }
        Err(reason) => tracing::warn!(%reason, "metrics refresh without engine statistics"),
    }
    let latency = glommio::timer::timeout(SHARD_PROBE_TIMEOUT, async {
        Ok(crate::latency::gather(&shared.engine).await)
    });
    match latency.await {
        Ok(Ok(merged)) => shared.metrics.record_latency(&merged),
        Ok(Err(reason)) => tracing::warn!(%reason, "metrics refresh without latency quantiles"),
        Err(_) => {
            tracing::warn!("metrics refresh without latency quantiles: shards did not answer")
        }
    }
    // Issue 9: the lock managers' figures.
    crate::lock_metrics::refresh(shared).await;
}

pub async fn metrics(shared: &Shared) -> HttpResponse {
    refresh_metrics(shared).await;
    let mut resp = Response::new(Full::new(Bytes::from(shared.metrics.render())));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
