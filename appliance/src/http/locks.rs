//! `GET /api/v1/locks` (every shard's lock statistics, wait/hold percentiles and contention
//! hotspots), `GET /api/v1/locks/resource/{id}` (one resource's holders, queue and history on
//! every shard; `{id}` as printed: `db:0`, `db:0/table:7`, `db:0/table:7/row:<16 hex>`) and
//! `POST /api/v1/locks/detect` (a global deadlock pass now). The periodic global pass that
//! breaks deadlocks spanning shards lives in `crate::locks`.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use mantis_lock::{LockStats, ResourceId};
use serde_json::{json, Value};

use super::error::{json_response, ApiError, HttpResponse};
use crate::server::Shared;

pub const ROUTE_STATS: &str = "locks";
pub const ROUTE_RESOURCE: &str = "locks_resource";
pub const ROUTE_DETECT: &str = "locks_detect";

const RESOURCE_PREFIX: &str = "/api/v1/locks/resource/";

/// Answers the lock routes; `None` for other paths.
pub async fn route(
    shared: &Shared,
    req: &Request<Incoming>,
    path: &str,
) -> Option<(&'static str, Result<HttpResponse, ApiError>)> {
    if path == "/api/v1/locks" {
        return Some(match *req.method() {
            Method::GET => (ROUTE_STATS, stats(shared).await),
            _ => ("other", Err(ApiError::method_not_allowed("GET"))),
        });
    }
    if path == "/api/v1/locks/detect" {
        return Some(match *req.method() {
            Method::POST => (ROUTE_DETECT, detect(shared).await),
            _ => ("other", Err(ApiError::method_not_allowed("POST"))),
        });
    }
    let text = path.strip_prefix(RESOURCE_PREFIX)?;
    Some(match *req.method() {
        Method::GET => (ROUTE_RESOURCE, resource(shared, text).await),
        _ => ("other", Err(ApiError::method_not_allowed("GET"))),
    })
}

fn sql_error(e: mantis_sql::SqlError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "lock_manager",
        e.to_string(),
    )
}

async fn stats(shared: &Shared) -> Result<HttpResponse, ApiError> {
    let shards = mantis_sql::txlock::lock_stats(&shared.engine)
        .await
        .map_err(sql_error)?;
    Ok(json_response(StatusCode::OK, &report(&shards)))
}

/// Totals over every shard, then each shard's own figures.
pub fn report(shards: &[LockStats]) -> Value {
    let sum = |f: fn(&LockStats) -> u64| shards.iter().map(f).sum::<u64>();
    json!({
        "totals": {
            "acquires_total": sum(|s| s.acquires_total),
            "waits_total": sum(|s| s.waits_total),
            "timeouts_total": sum(|s| s.timeouts_total),
            "deadlock_victims_total": sum(|s| s.deadlock_victims_total),
            "granted_now": sum(|s| s.granted_now),
            "waiting_now": sum(|s| s.waiting_now),
            "txns_now": sum(|s| s.txns_now),
        },
        "global_detector": crate::locks::detector_stats(),
        "shards": shards,
    })
}

async fn detect(shared: &Shared) -> Result<HttpResponse, ApiError> {
    let resolution = mantis_sql::txlock::detect_global(&shared.engine)
        .await
        .map_err(sql_error)?;
    Ok(json_response(StatusCode::OK, &json!(resolution)))
}

async fn resource(shared: &Shared, text: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_resource(text).ok_or_else(|| {
        ApiError::bad_request(
            "bad_resource",
            format!(
                "resource {text:?}: want db:N, db:N/table:M or db:N/table:M/row:<16 hex digits>"
            ),
        )
    })?;
    let views = mantis_sql::txlock::resource_views(&shared.engine, id)
        .await
        .map_err(sql_error)?;
    let shards: Vec<Value> = views
        .iter()
        .enumerate()
        .map(|(shard, v)| json!({"shard": shard, "view": v}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"resource": id.to_string(), "shards": shards}),
    ))
}

/// Parses a resource as `ResourceId`'s `Display` prints it.
pub fn parse_resource(text: &str) -> Option<ResourceId> {
    let mut parts = text.split('/');
    let database: u32 = parts.next()?.strip_prefix("db:")?.parse().ok()?;
    let Some(table) = parts.next() else {
        return Some(ResourceId::Database(database));
    };
    let table: u32 = table.strip_prefix("table:")?.parse().ok()?;
    let Some(row) = parts.next() else {
        return Some(ResourceId::Table { database, table });
    };
    let hex = row.strip_prefix("row:")?;
    if parts.next().is_some() || hex.len() != 16 {
        return None;
    }
    let key_hash = u64::from_str_radix(hex, 16).ok()?;
    Some(ResourceId::Row {
        database,
        table,
        key_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_as_they_print() {
        for id in [
            ResourceId::Database(0),
            ResourceId::Table {
                database: 0,
                table: 7,
            },
            ResourceId::Row {
                database: 1,
                table: 2,
                key_hash: 0x00ab_cdef_0123_4567,
            },
        ] {
            assert_eq!(parse_resource(&id.to_string()), Some(id));
        }
        for bad in [
            "",
            "db:",
            "db:x",
            "db:0/t:1",
            "db:0/table:1/row:12",
            "db:0/table:1/row:00000000000000000/x",
        ] {
            assert_eq!(parse_resource(bad), None, "{bad}");
        }
    }
}
