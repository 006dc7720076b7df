//! The key-value REST API under `/api/v1/kv`.
//!
//! - `GET /api/v1/kv/{key}`: the raw value (`application/octet-stream`), expiry in
//!   `X-Expires-At-Ms`; 404 when absent.
//! - `PUT /api/v1/kv/{key}`: the body is the value; TTL from `?ttl=<seconds>` or `X-TTL`; 204.
//! - `DELETE /api/v1/kv/{key}`: 204, or 404 when there was nothing to delete.
//! - `POST /api/v1/kv`: a JSON batch of puts and deletes; atomic per shard.
//! - `GET /api/v1/kv?prefix=&limit=&cursor=`: a page of entries in key order.
//!
//! Keys are bytes: path segments are percent-decoded (`%FF` is a key byte); JSON carries keys
//! and values as UTF-8 strings or, for binary ones, as `key_base64` / `value_base64`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use mantis_engine::{BatchOp, ScanRange};
use serde::Deserialize;

use super::encoding::{base64_decode, base64_encode, hex_decode, hex_encode, query_pairs};
use super::error::{json_response, ApiError, HttpResponse};
use crate::kvtxn::plain;
use crate::resp::args::EXPIRES_AT_MS_MAX;
use crate::server::{now_ms, Shared};

/// Entries one list request may return.
pub const LIST_LIMIT_MAX: usize = 1000;
const LIST_LIMIT_DEFAULT: usize = 100;
/// Operations in one batch request.
pub const BATCH_OPS_MAX: usize = 10_000;

/// Reads the whole body, refusing (413) anything over `body_bytes_max`: by the declared
/// Content-Length before reading, and by counting while reading for chunked bodies.
pub async fn read_body(req: Request<Incoming>, body_bytes_max: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        ApiError::payload_too_large(format!(
            "request body exceeds http_body_bytes_max ({body_bytes_max} bytes)"
        ))
    };
    if declared.is_some_and(|n| n > body_bytes_max as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), body_bytes_max)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(
            "bad_request",
            format!("reading the body failed: {e}"),
        )),
    }
}

/// TTL in seconds from `?ttl=` or the `X-TTL` header, as an absolute expiry.
fn ttl_expiry(req: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    let from_query = query_pairs(req.uri().query())
        .into_iter()
        .find(|(n, _)| n == "ttl")
        .map(|(_, v)| v);
    let from_header = req.headers().get("x-ttl").map(|v| v.as_bytes().to_vec());
    let Some(text) = from_query.or(from_header) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_ttl",
            format!(
                "ttl must be a whole number of seconds between 1 and the year 9999, got {:?}",
                String::from_utf8_lossy(&text)
            ),
        )
    };
    let seconds = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .ok_or_else(invalid)?;
    let at = seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(now_ms()))
        .filter(|&at| at <= EXPIRES_AT_MS_MAX)
        .ok_or_else(invalid)?;
    Ok(Some(at))
}

pub async fn get(shared: &Shared, key: Vec<u8>) -> Result<HttpResponse, ApiError> {
    let entry = shared
        .engine
        .get_entry(&key)
        .await?
        .ok_or_else(|| ApiError::not_found("no such key"))?;
    let mut resp = Response::new(Full::new(Bytes::from(entry.value)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(at) = entry.expires_at_ms {
        resp.headers_mut()
            .insert("x-expires-at-ms", HeaderValue::from(at));
    }
    Ok(resp)
}

pub async fn put(
    shared: &Shared,
    key: Vec<u8>,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let expires_at_ms = ttl_expiry(&req)?;
    let value = read_body(req, shared.config.http_body_bytes_max).await?;
    // Issue 9: admitted like a plain RESP write (isolated from `POST /api/v1/txn` and EXEC).
    let engine = shared.engine.clone();
    let k = key.clone();
    plain::guarded(&shared.engine, key, move || async move {
        let r = engine
            .put_expiring_at(k, value.to_vec(), expires_at_ms)
            .await;
        let modified = r.is_ok();
        (r, modified)
    })
    .await
    .map_err(txn_error)??;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// A plain write that could not be admitted (its key's lock timed out).
fn txn_error(e: crate::kvtxn::TxnError) -> ApiError {
    match e {
        crate::kvtxn::TxnError::Engine(e) => ApiError::from(e),
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "lock_timeout",
            other.to_string(),
        ),
    }
}

pub async fn delete(shared: &Shared, key: Vec<u8>) -> Result<HttpResponse, ApiError> {
    let engine = shared.engine.clone();
    let k = key.clone();
    let deleted = plain::guarded(&shared.engine, key, move || async move {
        let r = engine.delete(k).await;
        let modified = matches!(r, Ok(true));
        (r, modified)
    })
    .await
    .map_err(txn_error)??;
    if deleted {
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::not_found("no such key"))
    }
}

pub fn empty(status: StatusCode) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    ops: Vec<BatchItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    op: String,
    key: Option<String>,
    key_base64: Option<String>,
    value: Option<String>,
    value_base64: Option<String>,
    /// Seconds.
    ttl: Option<u64>,
}

fn text_or_base64(
    text: Option<String>,
    b64: Option<String>,
    what: &str,
    index: usize,
) -> Result<Option<Vec<u8>>, ApiError> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_batch",
            format!("ops[{index}]: give {what} or {what}_base64, not both"),
        )),
        (Some(t), None) => Ok(Some(t.into_bytes())),
        (None, Some(b)) => base64_decode(&b).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_batch",
                format!("ops[{index}]: {what}_base64 is not valid base64"),
            )
        }),
        (None, None) => Ok(None),
    }
}

fn batch_op(index: usize, item: BatchItem, now: u64) -> Result<BatchOp, ApiError> {
    let key = text_or_base64(item.key, item.key_base64, "key", index)?.ok_or_else(|| {
        ApiError::bad_request("invalid_batch", format!("ops[{index}]: key is missing"))
    })?;
    let value = text_or_base64(item.value, item.value_base64, "value", index)?;
    match item.op.as_str() {
        "put" => {
            let value = value.ok_or_else(|| {
                ApiError::bad_request("invalid_batch", format!("ops[{index}]: value is missing"))
            })?;
            let expires_at_ms = match item.ttl {
                None => None,
                Some(s) => Some(
                    s.checked_mul(1000)
                        .and_then(|ms| ms.checked_add(now))
                        .filter(|&at| s > 0 && at <= EXPIRES_AT_MS_MAX)
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "invalid_ttl",
                                format!("ops[{index}]: ttl out of range"),
                            )
                        })?,
                ),
            };
            Ok(BatchOp::Put {
                key,
                value,
                expires_at_ms,
            })
        }
        "delete" => Ok(BatchOp::Delete { key }),
        other => Err(ApiError::bad_request(
            "invalid_batch",
            format!("ops[{index}]: op must be \"put\" or \"delete\", got {other:?}"),
        )),
    }
}

pub async fn batch(shared: &Shared, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let body = read_body(req, shared.config.http_body_bytes_max).await?;
    let parsed: BatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    if parsed.ops.len() > BATCH_OPS_MAX {
        return Err(ApiError::payload_too_large(format!(
            "{} operations; at most {BATCH_OPS_MAX} per batch",
            parsed.ops.len()
        )));
    }
    let now = now_ms();
    let ops = parsed
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, item)| batch_op(i, item, now))
        .collect::<Result<Vec<_>, _>>()?;
    let applied = ops.len();
    if applied > 0 {
        // Issue 9: under the keys' X locks, like a transaction (isolated from EXEC and
        // `POST /api/v1/txn`, and their watchers see the writes).
        let keys: Vec<Vec<u8>> = ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { key, .. } | BatchOp::Delete { key } => key.clone(),
            })
            .collect();
        let mut locked =
            crate::kvtxn::lockset::lock_and_read(&shared.engine, keys.clone(), Vec::new())
                .await
                .map_err(txn_error)?;
        let written = shared.engine.write_batch(ops).await;
        locked.held.release(keys).await;
        written?;
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "applied": applied }),
    ))
}

/// A key or value as JSON: UTF-8 text under `name`, anything else base64 under `name_base64`.
fn put_bytes(obj: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: Vec<u8>) {
    match String::from_utf8(bytes) {
        Ok(text) => {
            obj.insert(name.into(), text.into());
        }
        Err(e) => {
            obj.insert(format!("{name}_base64"), base64_encode(e.as_bytes()).into());
        }
    }
}

pub async fn list(shared: &Shared, req: &Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let mut prefix = Vec::new();
    let mut limit = LIST_LIMIT_DEFAULT;
    let mut cursor = None;
    for (name, value) in query_pairs(req.uri().query()) {
        match name.as_str() {
            "prefix" => prefix = value,
            "limit" => {
                limit = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| (1..=LIST_LIMIT_MAX).contains(&n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_limit",
                            format!("limit must be between 1 and {LIST_LIMIT_MAX}"),
                        )
                    })?
            }
            "cursor" if !value.is_empty() => {
                cursor = Some(hex_decode(&value).ok_or_else(|| {
                    ApiError::bad_request("invalid_cursor", "cursor is not one we returned")
                })?)
            }
            _ => {}
        }
    }
    let mut range = ScanRange::prefix(&prefix);
    if let Some(after) = cursor {
        range = range.after(&after);
    }
    let entries = shared.engine.scan(range, limit).await?;
    let next_cursor = match entries.last() {
        Some((k, _)) if entries.len() == limit => serde_json::Value::from(hex_encode(k)),
        _ => serde_json::Value::Null,
    };
    let items: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|(k, e)| {
            let mut obj = serde_json::Map::new();
            put_bytes(&mut obj, "key", k);
            put_bytes(&mut obj, "value", e.value);
            obj.insert(
                "expires_at_ms".into(),
                e.expires_at_ms.map_or(serde_json::Value::Null, Into::into),
            );
            serde_json::Value::Object(obj)
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": items, "next_cursor": next_cursor }),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn batch_items_validate() {
        let parse = |json: &str| -> Result<Vec<BatchOp>, ApiError> {
            let r: BatchRequest = serde_json::from_str(json).unwrap();
            r.ops
                .into_iter()
                .enumerate()
                .map(|(i, it)| batch_op(i, it, 1000))
                .collect()
        };
        let ops = parse(
            r#"{"ops":[{"op":"put","key":"a","value":"1","ttl":2},
                       {"op":"put","key_base64":"/w==","value_base64":"AA=="},
                       {"op":"delete","key":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(
            ops[0],
            BatchOp::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                expires_at_ms: Some(3000)
            }
        );
        assert_eq!(
            ops[1],
            BatchOp::Put {
                key: vec![0xff],
                value: vec![0],
                expires_at_ms: None
            }
        );
        assert_eq!(ops[2], BatchOp::Delete { key: b"b".to_vec() });
        let err = parse(r#"{"ops":[{"op":"put","key":"a"}]}"#).unwrap_err();
        assert_eq!(err.code, "invalid_batch");
        let err = parse(r#"{"ops":[{"op":"frob","key":"a"}]}"#).unwrap_err();
        assert!(err.message.contains("ops[0]"));
        let err = parse(r#"{"ops":[{"op":"put","key":"a","value":"v","ttl":0}]}"#).unwrap_err();
        assert_eq!(err.code, "invalid_ttl");
        assert!(serde_json::from_str::<BatchRequest>(r#"{"ops":[],"x":1}"#).is_err());
    }
}
