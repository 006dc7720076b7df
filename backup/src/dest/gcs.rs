//! A Google Cloud Storage destination through the JSON API: small objects go up in one
//! multipart upload (metadata with the object's MD5, which the service checks), large ones
//! through a resumable upload session in chunks; every upload's answer must report the MD5 we
//! computed, and every download is checked against the `x-goog-hash` MD5 the service sends.
//! Credentials: an OAuth 2 bearer token (from a flag or the environment); none for emulators.

use base64::Engine as _;
use md5::Digest as _;
use serde::Deserialize;

use super::http::{self, RetryPolicy};
use super::{check_name, Destination};
use crate::error::{BackupError, Result};

/// Resumable chunks must be multiples of 256 KiB (the API's rule).
pub const CHUNK_QUANTUM_BYTES: usize = 256 << 10;
/// Chunks per object: bounds the upload loop (16 GiB objects at the default 8 MiB).
const CHUNKS_MAX: usize = 2048;
/// Objects per list page we ask for (the API's maximum).
const LIST_PAGE_OBJECTS_MAX: u32 = 1000;

#[derive(Debug, Clone)]
pub struct GcsConfig {
    /// `https://storage.googleapis.com`, or an emulator's `http://host:port`.
    pub endpoint: String,
    pub bucket: String,
    /// Prepended (with `/`) to every object name; empty for the bucket's root.
    pub prefix: String,
    /// OAuth 2 access token sent as `Authorization: Bearer`; None for emulators.
    pub token: Option<String>,
    /// Objects above this go up through a resumable session in chunks of this size.
    pub chunk_size_bytes: usize,
    pub retries_max: u32,
    pub backoff_base_ms: u64,
    pub request_timeout_secs: u64,
    /// Issue 10: PEM CA certificates for an `https://` endpoint signed by a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl GcsConfig {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        GcsConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: String::new(),
            prefix: String::new(),
            token,
            chunk_size_bytes: 8 << 20,
            retries_max: 5,
            backoff_base_ms: 100,
            request_timeout_secs: 300,
            ca_file: None,
        }
    }
}

pub struct Gcs {
    cfg: GcsConfig,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct ObjectResource {
    #[serde(rename = "md5Hash")]
    md5_hash: Option<String>,
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    items: Vec<ListItem>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ListItem {
    name: String,
}

/// The MD5 in an `x-goog-hash: crc32c=...,md5=...` header.
fn goog_md5(header: &str) -> Option<&str> {
    header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("md5="))
        .next()
}

impl Gcs {
    pub fn new(cfg: GcsConfig) -> Result<Self> {
        url::Url::parse(&cfg.endpoint)
            .map_err(|e| BackupError::Invalid(format!("GCS endpoint {}: {e}", cfg.endpoint)))?;
        if cfg.bucket.is_empty() {
            return Err(BackupError::Invalid("GCS: no bucket name".into()));
        }
        if cfg.chunk_size_bytes == 0 || !cfg.chunk_size_bytes.is_multiple_of(CHUNK_QUANTUM_BYTES) {
            return Err(BackupError::Invalid(format!(
                "GCS chunk size {} is not a positive multiple of {CHUNK_QUANTUM_BYTES} bytes",
                cfg.chunk_size_bytes
            )));
        }
        let tls = http::TlsOptions {
            ca_file: cfg.ca_file.clone(),
        };
        let agent = http::agent(&cfg.endpoint, cfg.request_timeout_secs, &tls)?;
        Ok(Gcs { cfg, agent })
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries_max: self.cfg.retries_max,
            backoff_base_ms: self.cfg.backoff_base_ms,
        }
    }

    fn key(&self, name: &str) -> String {
        if self.cfg.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.cfg.prefix)
        }
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.cfg.endpoint,
            http::percent_encode(&self.cfg.bucket, false),
            http::percent_encode(key, false)
        )
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.cfg.token {
            Some(t) => req.header("authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// Creates the bucket (tests, first use); an existing bucket is fine.
    pub fn create_bucket(&self, project: &str) -> Result<()> {
        let url = format!(
            "{}/storage/v1/b?project={}",
            self.cfg.endpoint,
            http::percent_encode(project, false)
        );
        let body = serde_json::json!({ "name": self.cfg.bucket }).to_string();
        let sent = http::send(&self.describe(), "", self.policy(), http::success, || {
            self.auth(self.agent.post(&url))
                .header("content-type", "application/json")
                .send(body.as_bytes())
        });
        match sent {
            Ok(_) | Err(BackupError::Http { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Checks the object resource the service answered an upload with.
    fn check_uploaded(&self, name: &str, body: &[u8], md5: &str) -> Result<()> {
        let resource: ObjectResource =
            serde_json::from_slice(body).map_err(|e| BackupError::Destination {
                destination: self.describe(),
                object: name.to_string(),
                reason: format!("upload answer is not an object resource: {e}"),
            })?;
        match resource.md5_hash.as_deref() {
            Some(found) if found == md5 => Ok(()),
            Some(found) => Err(http::md5_mismatch(&self.describe(), name, md5, found)),
            None => Err(BackupError::Destination {
                destination: self.describe(),
                object: name.to_string(),
                reason: "upload answer carries no md5Hash".into(),
            }),
        }
    }

    fn put_multipart(&self, name: &str, key: &str, data: &[u8], md5: &str) -> Result<()> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.cfg.endpoint,
            http::percent_encode(&self.cfg.bucket, false)
        );
        let metadata = serde_json::json!({ "name": key, "md5Hash": md5 }).to_string();
        // The boundary differs per object (derived from its digest), bounded and ASCII.
        let boundary = format!(
            "mantis-{}",
            http::percent_encode(md5, false).replace('%', "")
        );
        let mut body = Vec::with_capacity(data.len() + metadata.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\ncontent-type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/related; boundary={boundary}");
        let resp = http::send(&self.describe(), name, self.policy(), http::success, || {
            self.auth(self.agent.post(&url))
                .header("content-type", &content_type)
                .send(&body[..])
        })?;
        let answer = http::read_body(&self.describe(), name, resp)?;
        self.check_uploaded(name, &answer, md5)
    }

    fn put_resumable(&self, name: &str, key: &str, data: &[u8], md5: &str) -> Result<()> {
        let chunks = data.len().div_ceil(self.cfg.chunk_size_bytes);
        if chunks > CHUNKS_MAX {
            return Err(BackupError::Invalid(format!(
                "object {name}: {chunks} chunks of {} bytes exceed {CHUNKS_MAX}; raise the chunk size",
                self.cfg.chunk_size_bytes
            )));
        }
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&name={}",
            self.cfg.endpoint,
            http::percent_encode(&self.cfg.bucket, false),
            http::percent_encode(key, false)
        );
        let metadata = serde_json::json!({ "name": key, "md5Hash": md5 }).to_string();
        let resp = http::send(&self.describe(), name, self.policy(), http::success, || {
            self.auth(self.agent.post(&url))
                .header("content-type", "application/json; charset=UTF-8")
                .header("x-upload-content-length", &data.len().to_string())
                .send(metadata.as_bytes())
        })?;
        let session = http::header(&resp, "location")
            .ok_or_else(|| BackupError::Destination {
                destination: self.describe(),
                object: name.to_string(),
                reason: "resumable upload started without a session URI".into(),
            })?
            .to_string();
        let total = data.len();
        let mut answer = Vec::new();
        for (i, chunk) in data.chunks(self.cfg.chunk_size_bytes).enumerate() {
            let first = i * self.cfg.chunk_size_bytes;
            let last_byte = first + chunk.len() - 1;
            let range = format!("bytes {first}-{last_byte}/{total}");
            let final_chunk = last_byte + 1 == total;
            // 308 "resume incomplete" acknowledges an intermediate chunk.
            let ok = |s: u16| http::success(s) || (!final_chunk && s == 308);
            let resp = http::send(&self.describe(), name, self.policy(), ok, || {
                self.auth(self.agent.put(&session))
                    .header("content-range", &range)
                    .send(chunk)
            })?;
            if final_chunk {
                answer = http::read_body(&self.describe(), name, resp)?;
            }
        }
        self.check_uploaded(name, &answer, md5)
    }

    fn describe_object(&self, name: &str) -> String {
        format!("{}/{name}", self.describe())
    }
}

impl Destination for Gcs {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        check_name(&self.describe(), name)?;
        let key = self.key(name);
        let md5 = http::content_md5(data);
        if data.len() > self.cfg.chunk_size_bytes {
            self.put_resumable(name, &key, data, &md5)
        } else {
            self.put_multipart(name, &key, data, &md5)
        }
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        check_name(&self.describe(), name)?;
        let url = format!("{}?alt=media", self.object_url(&self.key(name)));
        let resp = match http::send(&self.describe(), name, self.policy(), http::success, || {
            self.auth(self.agent.get(&url)).call()
        }) {
            Ok(resp) => resp,
            Err(BackupError::Http { status: 404, .. }) => {
                return Err(BackupError::NotFound {
                    destination: self.describe(),
                    object: name.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        let stated = http::header(&resp, "x-goog-hash")
            .and_then(goog_md5)
            .map(str::to_string);
        let data = http::read_body(&self.describe(), name, resp)?;
        if let Some(stated) = stated {
            let found = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&data));
            if found != stated {
                tracing::warn!(object = %self.describe_object(name), "download MD5 mismatch");
                return Err(http::md5_mismatch(&self.describe(), name, &stated, &found));
            }
        }
        Ok(data)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = if self.cfg.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.cfg.prefix)
        };
        let base = format!(
            "{}/storage/v1/b/{}/o?maxResults={LIST_PAGE_OBJECTS_MAX}&prefix={}",
            self.cfg.endpoint,
            http::percent_encode(&self.cfg.bucket, false),
            http::percent_encode(&format!("{root}{prefix}"), false)
        );
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let url = match &token {
                Some(t) => format!("{base}&pageToken={}", http::percent_encode(t, false)),
                None => base.clone(),
            };
            let resp = http::send(
                &self.describe(),
                prefix,
                self.policy(),
                http::success,
                || self.auth(self.agent.get(&url)).call(),
            )?;
            let body = http::read_body(&self.describe(), prefix, resp)?;
            let page: ListPage =
                serde_json::from_slice(&body).map_err(|e| BackupError::Destination {
                    destination: self.describe(),
                    object: prefix.to_string(),
                    reason: format!("list answer: {e}"),
                })?;
            out.extend(
                page.items
                    .into_iter()
                    .filter_map(|item| item.name.strip_prefix(&root).map(str::to_string)),
            );
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(&self.describe(), name)?;
        let url = self.object_url(&self.key(name));
        match http::send(&self.describe(), name, self.policy(), http::success, || {
            self.auth(self.agent.delete(&url)).call()
        }) {
            Ok(_) | Err(BackupError::Http { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        if self.cfg.prefix.is_empty() {
            format!("gs://{}", self.cfg.bucket)
        } else {
            format!("gs://{}/{}", self.cfg.bucket, self.cfg.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_md5_of_x_goog_hash() {
        assert_eq!(
            goog_md5("crc32c=n03x6A==, md5=1B2M2Y8AsgTpgAmY7PhCfg=="),
            Some("1B2M2Y8AsgTpgAmY7PhCfg==")
        );
        assert_eq!(goog_md5("crc32c=n03x6A=="), None);
        let mut cfg = GcsConfig::new("http://127.0.0.1:1", None);
        cfg.bucket = "b".into();
        cfg.chunk_size_bytes = 1000;
        assert!(
            Gcs::new(cfg).is_err(),
            "a chunk size off the 256 KiB grid is refused"
        );
    }
}
