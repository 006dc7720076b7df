//! `/api/v1/documents/{collection}`: JSON document collections (issue 11, crate mantis-doc).
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `/{c}` | insert (id from `_id` in the body or generated) → 201 `{"id"}` |
//! | GET/PUT/PATCH/DELETE | `/{c}/{id}` | the original text / replace / patch (set, unset) / delete |
//! | POST | `/{c}/_query` | `{filter, sort, limit}` → `{"documents": [{"id","doc"}], "plan"}` |
//! | POST | `/{c}/_explain` | the plan only |
//! | POST/GET | `/{c}/_indexes` | create (`{"path"}`, back-filled) / list |
//!
//! Documents are answered as stored, byte for byte. Errors are the API's JSON errors.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use mantis_doc::{DocError, DocStore, PatchOp, Query};

use super::encoding::percent_decode;
use super::error::{json_response, ApiError, HttpResponse};
use super::kv::read_body;
use crate::server::Shared;

pub const PREFIX: &str = "/api/v1/documents/";

type Answer = (&'static str, Result<HttpResponse, ApiError>);

/// Routes a request under [`PREFIX`].
pub async fn route(shared: &Shared, req: Request<Incoming>, path: &str) -> Answer {
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    let mut parts = rest.splitn(2, '/');
    let collection = parts.next().unwrap_or_default().to_string();
    let tail = parts.next().map(str::to_string);
    let store = DocStore::new(shared.engine.clone());
    let method = req.method().clone();
    match (tail.as_deref(), method) {
        (None | Some(""), Method::POST) => {
            ("doc_insert", insert(shared, &store, &collection, req).await)
        }
        (None | Some(""), _) => ("other", Err(ApiError::method_not_allowed("POST"))),
        (Some("_query"), Method::POST) => (
            "doc_query",
            query(shared, &store, &collection, req, false).await,
        ),
        (Some("_explain"), Method::POST) => (
            "doc_query",
            query(shared, &store, &collection, req, true).await,
        ),
        (Some("_indexes"), Method::POST) => (
            "doc_indexes",
            create_index(shared, &store, &collection, req).await,
        ),
        (Some("_indexes"), Method::GET) => ("doc_indexes", list_indexes(&store, &collection).await),
        (Some("_query" | "_explain"), _) => ("other", Err(ApiError::method_not_allowed("POST"))),
        (Some("_indexes"), _) => ("other", Err(ApiError::method_not_allowed("GET, POST"))),
        (Some(raw_id), m) => {
            let Some(id) = percent_decode(raw_id, false).and_then(|b| String::from_utf8(b).ok())
            else {
                return (
                    "other",
                    Err(ApiError::bad_request(
                        "invalid_id",
                        "the id is not validly percent-encoded UTF-8",
                    )),
                );
            };
            match m {
                Method::GET => ("doc_get", get(&store, &collection, &id).await),
                Method::PUT => (
                    "doc_replace",
                    replace(shared, &store, &collection, &id, req).await,
                ),
                Method::PATCH => (
                    "doc_patch",
                    patch(shared, &store, &collection, &id, req).await,
                ),
                Method::DELETE => ("doc_delete", delete(&store, &collection, &id).await),
                _ => (
                    "other",
                    Err(ApiError::method_not_allowed("GET, PUT, PATCH, DELETE")),
                ),
            }
        }
    }
}

/// The API error for a document error: 4xx for the client's mistakes, 500 for corruption.
pub fn api_error(e: DocError) -> ApiError {
    let msg = e.to_string();
    match e {
        DocError::Engine(inner) => ApiError::from(&inner),
        DocError::TooLarge { .. } => ApiError::payload_too_large(msg),
        DocError::BadJson { .. } | DocError::TooDeep { .. } => {
            ApiError::bad_request("invalid_json", msg)
        }
        DocError::NotAnObject => ApiError::bad_request("not_an_object", msg),
        DocError::BadPath { .. } => ApiError::bad_request("invalid_path", msg),
        DocError::BadCollection { .. } => ApiError::bad_request("invalid_collection", msg),
        DocError::BadId { .. } => ApiError::bad_request("invalid_id", msg),
        DocError::BadFilter(_) => ApiError::bad_request("invalid_filter", msg),
        DocError::BadPatch(_) => ApiError::bad_request("invalid_patch", msg),
        DocError::BadQuery(_) => ApiError::bad_request("invalid_query", msg),
        DocError::Exists { .. } => ApiError::new(StatusCode::CONFLICT, "exists", msg),
        DocError::NotFound { .. } => ApiError::not_found(msg),
        DocError::NoIndex { .. } => ApiError::not_found(msg),
        DocError::TooManyIndexes { .. } => ApiError::bad_request("too_many_indexes", msg),
        DocError::TooManyResults { .. } => ApiError::bad_request("too_many_results", msg),
        _ => {
            tracing::error!(error = %msg, "document store error on HTTP request");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corruption", msg)
        }
    }
}

fn raw_json(status: StatusCode, body: String) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn body_text(shared: &Shared, req: Request<Incoming>) -> Result<String, ApiError> {
    let body = read_body(req, shared.config.http_body_bytes_max).await?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))
}

async fn body_json(shared: &Shared, req: Request<Incoming>) -> Result<serde_json::Value, ApiError> {
    let text = body_text(shared, req).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}

async fn insert(
    shared: &Shared,
    store: &DocStore,
    coll: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let text = body_text(shared, req).await?;
    let id = store.insert(coll, None, &text).await.map_err(api_error)?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "id": id }),
    ))
}

async fn get(store: &DocStore, coll: &str, id: &str) -> Result<HttpResponse, ApiError> {
    match store.get(coll, id).await.map_err(api_error)? {
        Some(text) => Ok(raw_json(StatusCode::OK, text)),
        None => Err(ApiError::not_found(format!(
            "no document {id:?} in collection {coll:?}"
        ))),
    }
}

async fn replace(
    shared: &Shared,
    store: &DocStore,
    coll: &str,
    id: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let text = body_text(shared, req).await?;
    store.replace(coll, id, &text).await.map_err(api_error)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "id": id, "replaced": true }),
    ))
}

async fn patch(
    shared: &Shared,
    store: &DocStore,
    coll: &str,
    id: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let text = body_text(shared, req).await?;
    let ops = PatchOp::parse_list(&text).map_err(|e| match e {
        DocError::BadJson { .. } | DocError::TooDeep { .. } | DocError::BadPath { .. } => {
            api_error(e)
        }
        other => api_error(DocError::BadPatch(other.to_string())),
    })?;
    let new_text = store.patch(coll, id, ops).await.map_err(api_error)?;
    Ok(raw_json(StatusCode::OK, new_text))
}

async fn delete(store: &DocStore, coll: &str, id: &str) -> Result<HttpResponse, ApiError> {
    if store.delete(coll, id).await.map_err(api_error)? {
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "deleted": true }),
        ))
    } else {
        Err(ApiError::not_found(format!(
            "no document {id:?} in collection {coll:?}"
        )))
    }
}

async fn query(
    shared: &Shared,
    store: &DocStore,
    coll: &str,
    req: Request<Incoming>,
    explain_only: bool,
) -> Result<HttpResponse, ApiError> {
    let body = body_json(shared, req).await?;
    let q = Query::parse(&body).map_err(api_error)?;
    if explain_only {
        let plan = store.explain(coll, &q).await.map_err(api_error)?;
        return Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "plan": plan }),
        ));
    }
    let result = store.query(coll, &q).await.map_err(api_error)?;
    // The documents go out as stored (exact text), so the body is assembled, not serialized.
    let mut out = String::from("{\"documents\":[");
    for (i, (id, text)) in result.documents.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        out.push_str(&serde_json::Value::from(id.as_str()).to_string());
        out.push_str(",\"doc\":");
        out.push_str(text);
        out.push('}');
    }
    out.push_str("],\"plan\":");
    out.push_str(&serde_json::to_string(&result.plan).unwrap_or_else(|_| "null".into()));
    out.push('}');
    Ok(raw_json(StatusCode::OK, out))
}

async fn create_index(
    shared: &Shared,
    store: &DocStore,
    coll: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body = body_json(shared, req).await?;
    let path = body
        .get("path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| ApiError::bad_request("invalid_index", "expected {\"path\": \"a.b\"}"))?;
    let def = store.create_index(coll, path).await.map_err(api_error)?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::to_value(def).unwrap_or_default(),
    ))
}

async fn list_indexes(store: &DocStore, coll: &str) -> Result<HttpResponse, ApiError> {
    let list = store.list_indexes(coll).await.map_err(api_error)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "indexes": list }),
    ))
}
