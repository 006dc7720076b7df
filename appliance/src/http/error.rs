//! API errors: a stable machine-readable `code`, a human `message`, and the HTTP status.
//! Body: `{"error":{"code":"...","message":"..."}}`. The codes are part of the API contract
//! (docs/http.md); change them only with a new API version.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use mantis_engine::EngineError;

pub type HttpResponse = Response<Full<Bytes>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <password>)",
        )
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// Issue 7: stored data failed verification (checksum mismatch, damaged block). The code
    /// is `data_corrupted`, the status 502 (docs/http.md, "Corruption").
    pub fn data_corrupted(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, "data_corrupted", message)
    }

    pub fn not_ready(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
    }

    pub fn method_not_allowed(allowed: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("allowed methods: {allowed}"),
        )
    }

    /// The response for this error.
    pub fn response(&self) -> HttpResponse {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut resp = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mantisdb\""),
            );
        }
        resp
    }
}

impl From<&EngineError> for ApiError {
    fn from(e: &EngineError) -> ApiError {
        match e {
            EngineError::DiskFull { .. } => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string())
            }
            EngineError::ReadOnly { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "read_only", e.to_string())
            }
            EngineError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
            EngineError::ValueTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "value_too_large",
                e.to_string(),
            ),
            EngineError::KeyTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "key_too_large",
                e.to_string(),
            ),
            EngineError::EmptyKey => ApiError::bad_request("invalid_key", e.to_string()),
            // Issue 7: the stored data failed its checksum. 502 because the server's own
            // storage (its "upstream") gave an invalid answer; never the data itself.
            EngineError::Corruption { .. } => ApiError::data_corrupted(e.to_string()),
            EngineError::TtlOverflow { .. } => ApiError::bad_request("invalid_ttl", e.to_string()),
            _ if e.is_client_error() => ApiError::bad_request("bad_request", e.to_string()),
            _ => {
                tracing::error!(error = %e, "engine error on HTTP request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        ApiError::from(&e)
    }
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mantis_table_error() -> mantis_engine::TableError {
        mantis_engine::TableError::ChecksumMismatch {
            file: "shard-0/segments/1.seg".into(),
            offset: 4096,
            expected: 1,
            found: 2,
        }
    }

    #[test]
    fn engine_errors_map_to_statuses() {
        let e = ApiError::from(EngineError::DiskFull { shard: 1 });
        assert_eq!((e.status.as_u16(), e.code), (507, "disk_full"));
        let e = ApiError::from(EngineError::ValueTooLarge { len: 10, max: 5 });
        assert_eq!((e.status.as_u16(), e.code), (413, "value_too_large"));
        let e = ApiError::from(EngineError::Corruption {
            shard: 0,
            source: mantis_table_error(),
        });
        assert_eq!((e.status.as_u16(), e.code), (502, "data_corrupted"));
        let e = ApiError::from(EngineError::ShuttingDown);
        assert_eq!(e.status.as_u16(), 503);
        let resp = ApiError::unauthorized().response();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(resp.headers().contains_key("www-authenticate"));
    }
}
