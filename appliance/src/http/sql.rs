//! `POST /api/v1/sql`: runs `{"sql": "..."}` (one or more statements) on this shard's SQL
//! engine and answers the last statement's result as JSON:
//! `{"columns": ["id", ...], "types": ["integer", ...], "rows": [[1, ...]], "command": "SELECT 1"}`.
//! Errors are `{"error": {"code": "<SQLSTATE>", "message": ..., "position": ...}}` with 400
//! (500 for internal and I/O classes). Each request is its own session: no transaction spans
//! requests.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use mantis_sql::{StatementResult, Value};
use serde::Deserialize;

use super::error::{json_response, ApiError, HttpResponse};
use super::kv::read_body;
use crate::server::Shared;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

/// Runs the statements of the request body.
pub async fn run(shared: &Shared, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let body = read_body(req, shared.config.http_body_bytes_max).await?;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("expected {{\"sql\": \"...\"}}: {e}"),
        )
    })?;
    let engine = crate::pg::listen::shard_engine(&shared.engine)
        .await
        .map_err(|e| sql_error(e.sqlstate, &e.message, e.position))?;
    let mut session = engine.session();
    let started = std::time::Instant::now();
    let results = session.execute(&request.sql).await;
    // Same slow-query log as the wire protocols; the request span adds the trace id.
    crate::monitoring::note_slow("http", "sql", "http", &request.sql, started.elapsed());
    let results = results.map_err(|e| sql_error(e.sqlstate, &e.message, e.position))?;
    let body = match results.into_iter().last() {
        None => serde_json::json!({ "columns": [], "types": [], "rows": [], "command": "" }),
        Some(StatementResult::Command { tag }) => {
            serde_json::json!({ "columns": [], "types": [], "rows": [], "command": tag })
        }
        Some(StatementResult::Rows { columns, rows }) => serde_json::json!({
            "columns": columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            "types": columns.iter().map(|c| c.ty.display_name()).collect::<Vec<_>>(),
            "command": format!("SELECT {}", rows.len()),
            "rows": rows
                .iter()
                .map(|r| r.iter().map(json_value).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        }),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// An SQL error as the API reports it: the SQLSTATE is the code.
fn sql_error(sqlstate: &'static str, message: &str, position: Option<u32>) -> ApiError {
    let status = if sqlstate == mantis_sql::error::state::DATA_CORRUPTED {
        // Same status as the KV API's `data_corrupted` (issue 7).
        StatusCode::BAD_GATEWAY
    } else if sqlstate.starts_with("XX") || sqlstate.starts_with("58") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    let message = match position {
        Some(p) => format!("{message} (at character {p})"),
        None => message.to_string(),
    };
    ApiError::new(status, sqlstate, message)
}

/// Numbers stay numbers where JSON can hold them exactly; everything else is PostgreSQL's
/// text form (numeric keeps its digits as a string, bytea is `\x...`).
pub fn json_value(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int16(i) => J::from(*i),
        Value::Int32(i) => J::from(*i),
        Value::Int64(i) => J::from(*i),
        Value::Float32(f) if f.is_finite() => J::from(f64::from(*f)),
        Value::Float64(f) if f.is_finite() => J::from(*f),
        Value::Jsonb(j) => j.clone(),
        other => other.to_pg_text().map_or(J::Null, J::String),
    }
}
