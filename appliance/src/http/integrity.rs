//! `GET /api/v1/integrity` (scrubber progress and corruption events per shard) and
//! `POST /api/v1/integrity/scrub` (start a pass on every shard now; 202 with the progress).

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use mantis_engine::scrub::CorruptionEvent;
use mantis_engine::ShardStats;
use serde_json::{json, Value};

use super::error::{json_response, ApiError, HttpResponse};
use crate::server::Shared;

pub const ROUTE_STATUS: &str = "integrity";
pub const ROUTE_SCRUB: &str = "integrity_scrub";

/// Answers the integrity routes; `None` for other paths.
pub async fn route(
    shared: &Shared,
    req: &Request<Incoming>,
    path: &str,
) -> Option<(&'static str, Result<HttpResponse, ApiError>)> {
    match path {
        "/api/v1/integrity" | "/api/v1/integrity/scrub" if req.method() == Method::GET => {
            Some((ROUTE_STATUS, status(shared, StatusCode::OK).await))
        }
        "/api/v1/integrity/scrub" if req.method() == Method::POST => {
            Some((ROUTE_SCRUB, scrub(shared).await))
        }
        "/api/v1/integrity/scrub" => {
            Some(("other", Err(ApiError::method_not_allowed("GET, POST"))))
        }
        "/api/v1/integrity" => Some(("other", Err(ApiError::method_not_allowed("GET")))),
        _ => None,
    }
}

async fn scrub(shared: &Shared) -> Result<HttpResponse, ApiError> {
    shared.engine.request_scrub().await?;
    status(shared, StatusCode::ACCEPTED).await
}

async fn status(shared: &Shared, code: StatusCode) -> Result<HttpResponse, ApiError> {
    let stats = shared.engine.stats().await?;
    Ok(json_response(code, &report(&stats)))
}

/// The JSON report over every shard; `degraded` once any corruption was seen.
pub fn report(stats: &[ShardStats]) -> Value {
    let events: u64 = stats.iter().map(|s| s.corruption_events).sum();
    let shards: Vec<Value> = stats
        .iter()
        .map(|s| {
            let sc = &s.scrub;
            json!({
                "shard": s.shard,
                "scrub_running": sc.running,
                "passes_completed": sc.passes_completed,
                "pass_bytes_done": sc.pass_bytes_done,
                "pass_bytes_total": sc.pass_bytes_total,
                "bytes_scrubbed_total": sc.bytes_scrubbed_total,
                "blocks_scrubbed_total": sc.blocks_scrubbed_total,
                "wal_records_scrubbed_total": sc.wal_records_scrubbed_total,
                "last_full_pass_end_unix_ms": sc.last_full_pass_end_unix_ms,
                "last_full_pass_duration_ms": sc.last_full_pass_duration_ms,
                "corruptions_found_by_scrub": sc.corruptions_found,
                "corruption_events": s.corruption_events,
                "last_corruption": s.last_corruption.as_ref().map(event_json),
            })
        })
        .collect();
    json!({
        "status": if events > 0 { "degraded" } else { "ok" },
        "corruption_events": events,
        "shards": shards,
    })
}

pub fn event_json(e: &CorruptionEvent) -> Value {
    json!({
        "shard": e.shard,
        "site": e.site.as_str(),
        "file": e.file.display().to_string(),
        "offset": e.offset,
        "expected_crc32": e.expected_crc.map(|c| format!("{c:08x}")),
        "found_crc32": e.found_crc.map(|c| format!("{c:08x}")),
        "detail": e.detail,
        "at_unix_ms": e.at_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mantis_engine::scrub::Site;

    #[test]
    fn a_corruption_event_makes_the_report_degraded() {
        let mut s = ShardStats::default();
        assert_eq!(report(&[s.clone()])["status"], "ok");
        s.corruption_events = 1;
        s.last_corruption = Some(CorruptionEvent {
            shard: 0,
            site: Site::Segment,
            file: "/d/shard-0/seg/1.seg".into(),
            offset: 4096,
            expected_crc: Some(0xdead_beef),
            found_crc: Some(1),
            detail: "checksum mismatch".into(),
            at_unix_ms: 5,
        });
        let r = report(&[s]);
        assert_eq!(r["status"], "degraded");
        let ev = &r["shards"][0]["last_corruption"];
        assert_eq!(ev["expected_crc32"], "deadbeef");
        assert_eq!(ev["found_crc32"], "00000001");
        assert_eq!(ev["offset"], 4096);
    }
}
