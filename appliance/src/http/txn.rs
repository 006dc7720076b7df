//! `POST /api/v1/txn`: a list of operations run atomically and in isolation, under the same
//! locking as RESP MULTI/EXEC (`crate::kvtxn`): X locks on every key named, in one global
//! order, the conditions checked and the reads done under them, ONE `write_batch`.
//!
//! ```json
//! {"ops": [
//!   {"op": "expect", "key": "a", "equals": "1"},
//!   {"op": "expect", "key": "b", "absent": true},
//!   {"op": "get", "key": "a"},
//!   {"op": "put", "key": "b", "value": "x", "ttl_ms": 5000},
//!   {"op": "delete", "key": "c"}
//! ]}
//! ```
//! Keys and values are UTF-8 text, or base64 under `key_base64` / `value_base64` /
//! `equals_base64`. Operations see the effects of earlier ones. 200 with one result per
//! operation; 409 `condition_failed` (nothing written) when an `expect` does not hold; 409
//! `deadlock_detected` (SQLSTATE 40P01) or 503 `lock_timeout` (55P03) when the locks could
//! not be taken: retry.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::encoding::{base64_decode, base64_encode};
use super::error::{json_response, ApiError, HttpResponse};
use super::kv::read_body;
use crate::kvtxn::lockset::lock_and_read;
use crate::kvtxn::TxnError;
use crate::resp::args::EXPIRES_AT_MS_MAX;
use crate::resp::txn_eval::Overlay;
use crate::server::{now_ms, Shared};

pub const ROUTE: &str = "txn";
pub const PATH: &str = "/api/v1/txn";
/// Operations in one transaction request.
pub const TXN_OPS_MAX: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnRequest {
    ops: Vec<OpItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpItem {
    op: String,
    key: Option<String>,
    key_base64: Option<String>,
    value: Option<String>,
    value_base64: Option<String>,
    ttl_ms: Option<u64>,
    equals: Option<String>,
    equals_base64: Option<String>,
    absent: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Get(Vec<u8>),
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    Delete(Vec<u8>),
    ExpectEquals(Vec<u8>, Vec<u8>),
    ExpectAbsent(Vec<u8>),
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Get(k) | Op::Delete(k) | Op::ExpectAbsent(k) | Op::ExpectEquals(k, _) => k,
            Op::Put { key, .. } => key,
        }
    }
}

fn invalid(index: usize, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_txn", format!("ops[{index}]: {message}"))
}

fn bytes_field(
    text: Option<String>,
    b64: Option<String>,
    what: &str,
    index: usize,
) -> Result<Option<Vec<u8>>, ApiError> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(invalid(index, format!("give {what} or {what}_base64"))),
        (Some(t), None) => Ok(Some(t.into_bytes())),
        (None, Some(b)) => base64_decode(&b)
            .map(Some)
            .ok_or_else(|| invalid(index, format!("{what}_base64 is not valid base64"))),
        (None, None) => Ok(None),
    }
}

fn parse_op(index: usize, item: OpItem, now: u64) -> Result<Op, ApiError> {
    let key = bytes_field(item.key, item.key_base64, "key", index)?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| invalid(index, "key is missing or empty"))?;
    let value = bytes_field(item.value, item.value_base64, "value", index)?;
    let equals = bytes_field(item.equals, item.equals_base64, "equals", index)?;
    match item.op.as_str() {
        "get" => Ok(Op::Get(key)),
        "delete" => Ok(Op::Delete(key)),
        "put" => {
            let value = value.ok_or_else(|| invalid(index, "value is missing"))?;
            let expires_at_ms = match item.ttl_ms {
                None => None,
                Some(ms) => Some(
                    now.checked_add(ms)
                        .filter(|&at| ms > 0 && at <= EXPIRES_AT_MS_MAX)
                        .ok_or_else(|| invalid(index, "ttl_ms out of range"))?,
                ),
            };
            Ok(Op::Put {
                key,
                value,
                expires_at_ms,
            })
        }
        "expect" => match (equals, item.absent) {
            (Some(v), None | Some(false)) => Ok(Op::ExpectEquals(key, v)),
            (None, Some(true)) => Ok(Op::ExpectAbsent(key)),
            _ => Err(invalid(
                index,
                "expect needs exactly one of equals / equals_base64 / \"absent\": true",
            )),
        },
        other => Err(invalid(
            index,
            format!("op must be get, put, delete or expect, got {other:?}"),
        )),
    }
}

fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: Vec<u8>) {
    match String::from_utf8(bytes) {
        Ok(text) => obj.insert(name.into(), text.into()),
        Err(e) => obj.insert(format!("{name}_base64"), base64_encode(e.as_bytes()).into()),
    };
}

fn lock_error(e: TxnError) -> ApiError {
    match &e {
        TxnError::Lock(l) if l.sqlstate() == "40P01" => ApiError::new(
            StatusCode::CONFLICT,
            "deadlock_detected",
            format!("SQLSTATE 40P01: {l}; retry the transaction"),
        ),
        TxnError::Lock(l) if l.sqlstate() == "55P03" => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "lock_timeout",
            format!("SQLSTATE 55P03: {l}; retry the transaction"),
        ),
        TxnError::Engine(engine) => ApiError::from(engine),
        TxnError::TooManyKeys { .. } => ApiError::payload_too_large(e.to_string()),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "lock_manager",
            e.to_string(),
        ),
    }
}

/// Handles `POST /api/v1/txn`.
pub async fn run(shared: &Shared, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let body = read_body(req, shared.config.http_body_bytes_max).await?;
    let parsed: TxnRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    if parsed.ops.len() > TXN_OPS_MAX {
        return Err(ApiError::payload_too_large(format!(
            "{} operations; at most {TXN_OPS_MAX} per transaction",
            parsed.ops.len()
        )));
    }
    let now = now_ms();
    let ops = parsed
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_op(i, item, now))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = ops.iter().map(|o| o.key().to_vec()).collect();
    let mut locked = lock_and_read(&shared.engine, keys, Vec::new())
        .await
        .map_err(lock_error)?;
    let mut overlay = Overlay::new(std::mem::take(&mut locked.entries), now_ms());
    let mut results = Vec::with_capacity(ops.len());
    for (index, op) in ops.into_iter().enumerate() {
        match evaluate(&mut overlay, op) {
            Ok(result) => results.push(result),
            Err(failed) => {
                locked.held.release(Vec::new()).await;
                return Ok(json_response(
                    StatusCode::CONFLICT,
                    &json!({
                        "error": {
                            "code": "condition_failed",
                            "message": format!("ops[{index}]: {failed}; nothing was written"),
                        },
                        "failed_op": index,
                    }),
                ));
            }
        }
    }
    let (writes, modified) = overlay.into_writes();
    let written = writes.len();
    let outcome = if writes.is_empty() {
        Ok(())
    } else {
        shared.engine.write_batch(writes).await
    };
    locked.held.release(modified).await;
    outcome?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results, "written": written }),
    ))
}

/// One operation on the overlay: its result, or why its condition failed.
fn evaluate(overlay: &mut Overlay, op: Op) -> Result<Value, String> {
    let mut out = Map::new();
    match op {
        Op::Get(key) => {
            out.insert("op".into(), "get".into());
            match overlay.get(&key) {
                Some(e) => {
                    out.insert("found".into(), true.into());
                    put_bytes(&mut out, "value", e.value);
                    out.insert("expires_at_ms".into(), json!(e.expires_at_ms));
                }
                None => {
                    out.insert("found".into(), false.into());
                }
            }
        }
        Op::Put {
            key,
            value,
            expires_at_ms,
        } => {
            out.insert("op".into(), "put".into());
            overlay.put(&key, value, expires_at_ms);
        }
        Op::Delete(key) => {
            out.insert("op".into(), "delete".into());
            out.insert("deleted".into(), overlay.delete(&key).into());
        }
        Op::ExpectEquals(key, want) => {
            let found = overlay.get(&key).map(|e| e.value);
            if found.as_deref() != Some(&want[..]) {
                return Err(match found {
                    None => "expected a value, the key is absent".to_string(),
                    Some(_) => "the value differs from the expected one".to_string(),
                });
            }
            out.insert("op".into(), "expect".into());
            out.insert("ok".into(), true.into());
        }
        Op::ExpectAbsent(key) => {
            if overlay.get(&key).is_some() {
                return Err("expected the key to be absent, it exists".to_string());
            }
            out.insert("op".into(), "expect".into());
            out.insert("ok".into(), true.into());
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn item(v: Value) -> OpItem {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn operations_parse_and_bad_ones_are_refused() {
        let now = 1_000;
        let op = parse_op(
            0,
            item(json!({"op":"put","key":"k","value":"v","ttl_ms":5})),
            now,
        );
        assert_eq!(
            op.unwrap(),
            Op::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expires_at_ms: Some(1_005)
            }
        );
        let op = parse_op(0, item(json!({"op":"expect","key":"k","absent":true})), now);
        assert_eq!(op.unwrap(), Op::ExpectAbsent(b"k".to_vec()));
        let op = parse_op(
            0,
            item(json!({"op":"expect","key_base64":"AP8=","equals":"x"})),
            now,
        );
        assert_eq!(op.unwrap(), Op::ExpectEquals(vec![0, 255], b"x".to_vec()));
        for bad in [
            json!({"op":"put","key":"k"}),
            json!({"op":"put","key":"k","value":"v","ttl_ms":0}),
            json!({"op":"expect","key":"k"}),
            json!({"op":"expect","key":"k","equals":"a","absent":true}),
            json!({"op":"get","key":""}),
            json!({"op":"scan","key":"k"}),
        ] {
            assert!(parse_op(3, item(bad.clone()), now).is_err(), "{bad}");
        }
    }
}
