//! An S3-compatible destination: rusty-s3 signs each request (SigV4, presigned URLs with the
//! Content-MD5 header signed), ureq carries it. Objects larger than one part go up as a
//! multipart upload, one Content-MD5 per part; every request is retried with exponential
//! backoff on transport errors, 5xx, 408 and 429, at most `retries_max` times.

use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use rusty_s3::actions::{CreateMultipartUpload, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use ureq::http::Response;
use ureq::Body;

use super::http::{self, RetryPolicy};
use super::{check_name, Destination};
use crate::error::{BackupError, Result};

/// How long a signed URL stays valid: longer than any single request with its retries.
const SIGN_EXPIRY: Duration = Duration::from_secs(3600);
/// S3 allows at most this many parts per multipart upload.
const PARTS_MAX: usize = 10_000;
/// S3's smallest part (all but the last); the default part size is above it.
pub const PART_SIZE_BYTES_MIN: usize = 5 << 20;
/// The largest object we read into memory.
const OBJECT_BYTES_MAX: u64 = 16 << 30;

#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http(s)://host:port` of the S3 service.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Prepended (with `/`) to every object name; empty for the bucket's root.
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
    /// Path-style URLs (`endpoint/bucket/key`): what self-hosted services expect.
    pub path_style: bool,
    /// Objects above this go up in parts of this size.
    pub part_size_bytes: usize,
    /// Retries after the first attempt of each request.
    pub retries_max: u32,
    pub backoff_base_ms: u64,
    pub request_timeout_secs: u64,
    /// Issue 10: PEM CA certificates for an `https://` endpoint signed by a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl S3Config {
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        S3Config {
            endpoint: endpoint.to_string(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            path_style: true,
            part_size_bytes: 8 << 20,
            retries_max: 5,
            backoff_base_ms: 100,
            request_timeout_secs: 300,
            ca_file: None,
        }
    }
}

pub struct S3 {
    cfg: S3Config,
    bucket: Bucket,
    creds: Credentials,
    agent: ureq::Agent,
}

fn content_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl S3 {
    pub fn new(cfg: S3Config) -> Result<Self> {
        let invalid =
            |reason: String| BackupError::Invalid(format!("S3 {}: {reason}", cfg.endpoint));
        let url = url::Url::parse(&cfg.endpoint).map_err(|e| invalid(e.to_string()))?;
        let style = if cfg.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(url, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| invalid(format!("{e:?}")))?;
        if cfg.part_size_bytes < PART_SIZE_BYTES_MIN {
            return Err(invalid(format!(
                "part size {} is below S3's minimum of {PART_SIZE_BYTES_MIN} bytes",
                cfg.part_size_bytes
            )));
        }
        let creds = Credentials::new(cfg.access_key.clone(), cfg.secret_key.clone());
        let tls = http::TlsOptions {
            ca_file: cfg.ca_file.clone(),
        };
        let agent = http::agent(&cfg.endpoint, cfg.request_timeout_secs, &tls)?;
        Ok(S3 {
            cfg,
            bucket,
            creds,
            agent,
        })
    }

    fn key(&self, name: &str) -> String {
        if self.cfg.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.cfg.prefix)
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent (the
    /// REST destinations' loop: transport errors, 5xx, 408 and 429 retried; TLS refusals not).
    fn send(
        &self,
        object: &str,
        attempt: impl Fn() -> std::result::Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>> {
        let policy = RetryPolicy {
            retries_max: self.cfg.retries_max,
            backoff_base_ms: self.cfg.backoff_base_ms,
        };
        http::send(&self.describe(), object, policy, http::success, attempt)
    }

    fn read_body(&self, object: &str, mut resp: Response<Body>) -> Result<Vec<u8>> {
        resp.body_mut()
            .with_config()
            .limit(OBJECT_BYTES_MAX)
            .read_to_vec()
            .map_err(|e| BackupError::Destination {
                destination: self.describe(),
                object: object.to_string(),
                reason: format!("read response: {e}"),
            })
    }

    /// Creates the bucket (tests, first use); an existing bucket of ours is fine.
    pub fn create_bucket(&self) -> Result<()> {
        let url = self.bucket.create_bucket(&self.creds).sign(SIGN_EXPIRY);
        match self.send("", || self.agent.put(url.as_str()).send_empty()) {
            Ok(_) => Ok(()),
            Err(BackupError::Http { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn put_single(&self, name: &str, key: &str, data: &[u8]) -> Result<()> {
        let md5 = content_md5(data);
        let mut action = self.bucket.put_object(Some(&self.creds), key);
        action.headers_mut().insert("content-md5", md5.clone());
        let url = action.sign(SIGN_EXPIRY);
        self.send(name, || {
            self.agent
                .put(url.as_str())
                .header("content-md5", &md5)
                .send(data)
        })?;
        Ok(())
    }

    fn put_multipart(&self, name: &str, key: &str, data: &[u8]) -> Result<()> {
        let parts = data.len().div_ceil(self.cfg.part_size_bytes);
        if parts > PARTS_MAX {
            return Err(BackupError::Invalid(format!(
                "object {name}: {parts} parts of {} bytes exceed S3's {PARTS_MAX}; raise the part size",
                self.cfg.part_size_bytes
            )));
        }
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.creds), key)
            .sign(SIGN_EXPIRY);
        let resp = self.send(name, || self.agent.post(url.as_str()).send_empty())?;
        let body = self.read_body(name, resp)?;
        let created =
            CreateMultipartUpload::parse_response(&body).map_err(|e| BackupError::Destination {
                destination: self.describe(),
                object: name.to_string(),
                reason: format!("create multipart upload: {e}"),
            })?;
        let upload_id = created.upload_id();
        let uploaded = self.upload_parts(name, key, upload_id, data);
        if uploaded.is_err() {
            let url = self
                .bucket
                .abort_multipart_upload(Some(&self.creds), key, upload_id)
                .sign(SIGN_EXPIRY);
            if let Err(e) = self.send(name, || self.agent.delete(url.as_str()).call()) {
                tracing::warn!(object = name, error = %e, "could not abort the multipart upload");
            }
        }
        uploaded
    }

    fn upload_parts(&self, name: &str, key: &str, upload_id: &str, data: &[u8]) -> Result<()> {
        let mut etags: Vec<String> = Vec::new();
        for (i, chunk) in data.chunks(self.cfg.part_size_bytes).enumerate() {
            let number = u16::try_from(i + 1)
                .map_err(|_| BackupError::Invalid(format!("object {name}: too many parts")))?;
            let md5 = content_md5(chunk);
            let mut action = self
                .bucket
                .upload_part(Some(&self.creds), key, number, upload_id);
            action.headers_mut().insert("content-md5", md5.clone());
            let url = action.sign(SIGN_EXPIRY);
            let resp = self.send(name, || {
                self.agent
                    .put(url.as_str())
                    .header("content-md5", &md5)
                    .send(chunk)
            })?;
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| BackupError::Destination {
                    destination: self.describe(),
                    object: name.to_string(),
                    reason: format!("part {number}: no ETag in the answer"),
                })?;
            etags.push(etag.to_string());
        }
        let complete = self.bucket.complete_multipart_upload(
            Some(&self.creds),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = complete.sign(SIGN_EXPIRY);
        let body = complete.body();
        let resp = self.send(name, || self.agent.post(url.as_str()).send(body.as_bytes()))?;
        // S3 can answer 200 and still report a failure in the body.
        let answer = self.read_body(name, resp)?;
        if String::from_utf8_lossy(&answer).contains("<Error>") {
            return Err(BackupError::Destination {
                destination: self.describe(),
                object: name.to_string(),
                reason: format!(
                    "complete multipart upload: {}",
                    String::from_utf8_lossy(&answer)
                ),
            });
        }
        Ok(())
    }
}

impl Destination for S3 {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        check_name(&self.describe(), name)?;
        let key = self.key(name);
        if data.len() > self.cfg.part_size_bytes {
            self.put_multipart(name, &key, data)
        } else {
            self.put_single(name, &key, data)
        }
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        check_name(&self.describe(), name)?;
        let key = self.key(name);
        let url = self
            .bucket
            .get_object(Some(&self.creds), &key)
            .sign(SIGN_EXPIRY);
        match self.send(name, || self.agent.get(url.as_str()).call()) {
            Ok(resp) => self.read_body(name, resp),
            Err(BackupError::Http { status: 404, .. }) => Err(BackupError::NotFound {
                destination: self.describe(),
                object: name.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = if self.cfg.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.cfg.prefix)
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.creds));
            action.with_prefix(format!("{root}{prefix}"));
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGN_EXPIRY);
            let resp = self.send(prefix, || self.agent.get(url.as_str()).call())?;
            let body = self.read_body(prefix, resp)?;
            let page =
                ListObjectsV2::parse_response(&body).map_err(|e| BackupError::Destination {
                    destination: self.describe(),
                    object: prefix.to_string(),
                    reason: format!("list: {e}"),
                })?;
            out.extend(
                page.contents
                    .into_iter()
                    .filter_map(|c| c.key.strip_prefix(&root).map(str::to_string)),
            );
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(&self.describe(), name)?;
        let key = self.key(name);
        let url = self
            .bucket
            .delete_object(Some(&self.creds), &key)
            .sign(SIGN_EXPIRY);
        match self.send(name, || self.agent.delete(url.as_str()).call()) {
            Ok(_) | Err(BackupError::Http { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        if self.cfg.prefix.is_empty() {
            format!("s3://{}", self.cfg.bucket)
        } else {
            format!("s3://{}/{}", self.cfg.bucket, self.cfg.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        // MD5 of the empty body is d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert!(http::retryable(503) && http::retryable(429) && !http::retryable(400));
    }
}
