//! `/api/v1/alerts` (list, acknowledge, silence) and `/api/v1/metrics` (JSON, or plain text
//! with `?format=text`).
//!
//! Routes:
//! - `GET /api/v1/alerts`: active alerts, silences, rules and recent history.
//! - `POST /api/v1/alerts/{rule}/ack`: acknowledge a firing alert.
//! - `POST /api/v1/alerts/{rule}/silence?minutes=N`: silence a rule's notifications.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use mantis_monitor::alerts::AlertError;

use super::error::{json_response, ApiError, HttpResponse};
use crate::monitoring;
use crate::server::{now_ms, Shared};

pub const ALERTS_PREFIX: &str = "/api/v1/alerts";
/// History entries a list returns (the newest).
const HISTORY_LISTED_MAX: usize = 200;
/// Longest silence accepted: a week.
const SILENCE_MINUTES_MAX: u64 = 7 * 24 * 60;

/// Answers the alert routes; `None` when `path` is not one of them.
pub fn route(
    req: &Request<Incoming>,
    path: &str,
) -> Option<(&'static str, Result<HttpResponse, ApiError>)> {
    let rest = path.strip_prefix(ALERTS_PREFIX)?;
    if rest.is_empty() || rest == "/" {
        return Some(match *req.method() {
            Method::GET => ("alerts", list()),
            _ => ("other", Err(ApiError::method_not_allowed("GET"))),
        });
    }
    let rest = rest.strip_prefix('/')?;
    let (rule, action) = rest.rsplit_once('/')?;
    if *req.method() != Method::POST {
        return Some(("other", Err(ApiError::method_not_allowed("POST"))));
    }
    let who = "http";
    Some(match action {
        "ack" => ("alerts", acknowledge(rule, who)),
        "silence" => ("alerts", silence(rule, who, req.uri().query())),
        _ => return None,
    })
}

fn engine_error(e: AlertError) -> ApiError {
    match e {
        AlertError::NoSuchRule(_) => ApiError::not_found(e.to_string()),
        AlertError::NotFiring(_) => ApiError::bad_request("not_firing", e.to_string()),
        AlertError::Io { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "alert_history",
            e.to_string(),
        ),
    }
}

fn monitor() -> Result<&'static monitoring::Monitor, ApiError> {
    monitoring::get().ok_or_else(|| ApiError::not_ready("the monitor has not started"))
}

/// The alert engine, locked (the alerts thread evaluates rules under the same lock).
fn alert_engine() -> Result<std::sync::MutexGuard<'static, mantis_monitor::alerts::Engine>, ApiError>
{
    monitor()?.alerts.lock().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "poisoned",
            "alert engine poisoned",
        )
    })
}

fn list() -> Result<HttpResponse, ApiError> {
    let engine = alert_engine()?;
    let history: Vec<_> = engine.history().collect();
    let skip = history.len().saturating_sub(HISTORY_LISTED_MAX);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "active": engine.active().collect::<Vec<_>>(),
            "silences": engine.silences(),
            "rules": engine.rules(),
            "history": &history[skip..],
        }),
    ))
}

fn acknowledge(rule: &str, who: &str) -> Result<HttpResponse, ApiError> {
    let result = alert_engine()?.acknowledge(rule, who, now_ms());
    audit_admin("alert.ack", rule, &result);
    result.map_err(engine_error)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "acknowledged": rule }),
    ))
}

fn silence(rule: &str, who: &str, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let minutes = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("minutes="))
        .map_or(Ok(60), str::parse::<u64>)
        .map_err(|_| ApiError::bad_request("invalid_minutes", "minutes must be a number"))?;
    if minutes == 0 || minutes > SILENCE_MINUTES_MAX {
        return Err(ApiError::bad_request(
            "invalid_minutes",
            format!("minutes must be 1..={SILENCE_MINUTES_MAX}"),
        ));
    }
    let now = now_ms();
    let until_ms = now + minutes * 60_000;
    let result = alert_engine()?.silence(rule, until_ms, who, now);
    audit_admin("alert.silence", rule, &result);
    result.map_err(engine_error)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "silenced": rule, "until_ms": until_ms }),
    ))
}

fn audit_admin(what: &str, rule: &str, result: &Result<(), AlertError>) {
    let outcome = match result {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    monitoring::record("http", "http", "http", what, rule.into(), &outcome);
}

/// `GET /api/v1/metrics`: the registry as JSON, or as plain text with `?format=text`.
pub fn metrics(shared: &Shared, req: &Request<Incoming>) -> Result<HttpResponse, ApiError> {
    if *req.method() != Method::GET {
        return Err(ApiError::method_not_allowed("GET"));
    }
    let text = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=text"));
    if !text {
        return Ok(json_response(StatusCode::OK, &shared.metrics.render_json()));
    }
    let mut resp = Response::new(Full::new(Bytes::from(shared.metrics.render_plain())));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// Audits one HTTP call when its route modifies data.
pub fn audit_route(route: &str, path: &str, status: StatusCode) {
    if !matches!(route, "kv_put" | "kv_delete" | "kv_batch" | "sql") {
        return;
    }
    let outcome = if status.is_success() {
        "ok".to_string()
    } else {
        status.as_u16().to_string()
    };
    let target = monitoring::truncate_target(path.as_bytes());
    monitoring::record("http", "http", "http", route, target, &outcome);
}
