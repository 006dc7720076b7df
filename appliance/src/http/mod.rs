//! The HTTP/1.1 front end: hyper 1 on a glommio socket (through `smol-hyper`'s futures-io
//! adapter), routing, bearer-token authentication, and per-route metrics.

pub mod alerts;
pub mod backup;
pub mod compression;
pub mod documents;
pub mod encoding;
pub mod error;
pub mod health;
pub mod integrity;
pub mod kv;
pub mod locks;
pub mod sql;
pub mod txn;

use std::convert::Infallible;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use glommio::net::TcpStream;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION};
use hyper::{Method, Request};

use self::error::{ApiError, HttpResponse};
use crate::server::{register_client, ConnectionSlot, Shared};

/// Route names for metrics (the `command` label of protocol "http").
pub const ROUTES: &[&str] = &[
    "kv_get",
    "kv_put",
    "kv_delete",
    "kv_batch",
    "kv_list",
    "health",
    "live",
    "ready",
    "metrics",
    "sql",
    "integrity",
    "integrity_scrub",
    "compression_stats",
    "compression_recommendations",
    "alerts",
    "metrics_json",
    locks::ROUTE_STATS,
    locks::ROUTE_RESOURCE,
    locks::ROUTE_DETECT,
    "checkpoints",
    "backups",
    "rpo",
    "doc_insert",
    "doc_get",
    "doc_replace",
    "doc_patch",
    "doc_delete",
    "doc_query",
    "doc_indexes",
    txn::ROUTE,
];

/// The smallest read buffer hyper accepts.
const HYPER_BUF_BYTES_MIN: usize = 8192;

/// Serves one HTTP connection (keep-alive: possibly many requests).
pub async fn serve(stream: TcpStream, shared: Arc<Shared>, slot: ConnectionSlot) {
    let registration = register_client(stream.as_raw_fd());
    crate::monitoring::ensure_started(&shared);
    let _ = stream.set_nodelay(true);
    if let Some(idle) = shared.config.idle_timeout {
        let _ = stream.set_read_timeout(Some(idle));
        let _ = stream.set_write_timeout(Some(idle));
    }
    let io = smol_hyper::rt::FuturesIo::new(stream);
    let svc_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&svc_shared);
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Bounds the request head (request line + headers); larger heads get 431.
        .max_buf_size(shared.config.http_header_bytes_max.max(HYPER_BUF_BYTES_MIN))
        .serve_connection(io, service);
    if let Err(e) = conn.await {
        tracing::debug!(client = slot.client_id, error = %e, "http connection ended");
    }
    drop(registration);
    drop(slot);
}

/// Whether the request carries the configured password as a bearer token (or none is set).
fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    let Some(password) = shared.config.password.as_deref() else {
        return true;
    };
    let Some(token) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (token.trim().as_bytes(), password.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers one request, recording its route's metrics.
pub async fn handle(shared: &Shared, req: Request<Incoming>) -> HttpResponse {
    use tracing::Instrument as _;
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let trace_id = crate::trace::from_headers(req.headers());
    let span = tracing::info_span!("request", trace_id = %trace_id, method = %req.method());
    let (route, result) = route(shared, req).instrument(span).await;
    let mut resp = result.unwrap_or_else(|e| e.response());
    // Valid as a header value: from_headers only returns hex or [A-Za-z0-9-_.:].
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        resp.headers_mut().insert("x-trace-id", v);
    }
    if shared.is_draining() {
        // Tell keep-alive clients to go elsewhere; this connection ends after the response.
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    alerts::audit_route(route, &path, resp.status());
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    if let Some(m) = shared.metrics.command_static("http", route) {
        m.observe(started.elapsed(), failed);
    }
    resp
}

const KV_PREFIX: &str = "/api/v1/kv";

async fn route(
    shared: &Shared,
    req: Request<Incoming>,
) -> (&'static str, Result<HttpResponse, ApiError>) {
    let path = req.uri().path().to_string();
    backup::register_metrics(shared.metrics.registry());
    match path.as_str() {
        "/health/live" => return ("live", Ok(health::live())),
        "/health/ready" => return ("ready", Ok(health::ready(shared))),
        _ => {}
    }
    if !authorized(shared, &req) {
        return ("other", Err(ApiError::unauthorized()));
    }
    match path.as_str() {
        "/health" => return ("health", Ok(health::health(shared).await)),
        "/metrics" => return ("metrics", Ok(health::metrics(shared).await)),
        _ => {}
    }
    if shared.is_draining() {
        return ("other", Err(ApiError::not_ready("shutting down")));
    }
    if path == "/api/v1/metrics" {
        health::refresh_metrics(shared).await;
        return ("metrics_json", alerts::metrics(shared, &req));
    }
    if let Some(answer) = alerts::route(&req, &path) {
        return answer;
    }
    if let Some(answer) = integrity::route(shared, &req, &path).await {
        return answer;
    }
    if let Some(answer) = compression::route(shared, &req, &path).await {
        return answer;
    }
    if let Some(answer) = locks::route(shared, &req, &path).await {
        return answer;
    }
    if path.starts_with("/api/v1/checkpoints") || path.starts_with("/api/v1/backups") {
        if let Some(answer) = backup::route(shared, req, &path).await {
            return answer;
        }
        return (
            "other",
            Err(ApiError::not_found(format!("no route for {path}"))),
        );
    }
    if path == "/api/v1/rpo" {
        return ("rpo", rpo_status(&req));
    }
    if path.starts_with(documents::PREFIX) {
        return documents::route(shared, req, &path).await;
    }
    if path == txn::PATH {
        return match *req.method() {
            Method::POST => (txn::ROUTE, txn::run(shared, req).await),
            _ => ("other", Err(ApiError::method_not_allowed("POST"))),
        };
    }
    if path == "/api/v1/sql" {
        return match *req.method() {
            Method::POST => ("sql", sql::run(shared, req).await),
            _ => ("other", Err(ApiError::method_not_allowed("POST"))),
        };
    }
    if path == KV_PREFIX || path == "/api/v1/kv/" {
        return match *req.method() {
            Method::GET => ("kv_list", kv::list(shared, &req).await),
            Method::POST => ("kv_batch", kv::batch(shared, req).await),
            _ => ("other", Err(ApiError::method_not_allowed("GET, POST"))),
        };
    }
    let Some(raw_key) = path.strip_prefix("/api/v1/kv/") else {
        return (
            "other",
            Err(ApiError::not_found(format!("no route for {path}"))),
        );
    };
    let Some(key) = encoding::percent_decode(raw_key, false) else {
        return (
            "other",
            Err(ApiError::bad_request(
                "invalid_key",
                "the key is not validly percent-encoded",
            )),
        );
    };
    match *req.method() {
        Method::GET | Method::HEAD => ("kv_get", kv::get(shared, key).await),
        Method::PUT => ("kv_put", kv::put(shared, key, req).await),
        Method::DELETE => ("kv_delete", kv::delete(shared, key).await),
        _ => (
            "other",
            Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
        ),
    }
}

/// `(protocol, command)` pairs to pre-register in the metrics registry.
pub fn metric_names() -> Vec<(&'static str, &'static str)> {
    ROUTES.iter().map(|r| ("http", *r)).collect()
}

/// Issue 10: `GET /api/v1/rpo`: level, exposure per shard, compliance over time.
fn rpo_status(
    req: &hyper::Request<hyper::body::Incoming>,
) -> Result<error::HttpResponse, ApiError> {
    if req.method() != Method::GET {
        return Err(ApiError::method_not_allowed("GET"));
    }
    let body = match crate::rpo::status() {
        Some(s) => {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("enabled".into(), true.into());
                o.insert(
                    "compliant_ratio".into(),
                    s.compliance.compliant_ratio().into(),
                );
            }
            v
        }
        None => serde_json::json!({"enabled": false}),
    };
    Ok(error::json_response(hyper::StatusCode::OK, &body))
}
