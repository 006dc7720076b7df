//! An Azure Blob Storage destination through the REST API with Shared Key authorization
//! (HMAC-SHA256 over the canonical request, so a signing bug is refused by the service).
//! Small objects go up in one Put Blob, large ones as Put Block (Content-MD5 per block) and
//! Put Block List; every blob carries its whole MD5 (`x-ms-blob-content-md5`) and downloads
//! are checked against the Content-MD5 the service returns.

use std::time::SystemTime;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::http::{self, RetryPolicy};
use super::{check_name, Destination};
use crate::error::{BackupError, Result};

/// The REST API version we speak (Put Block List XML, list with markers).
const API_VERSION: &str = "2021-08-06";
/// Azure allows at most this many blocks per blob.
const BLOCKS_MAX: usize = 50_000;
/// Azure's largest block (4000 MiB); the default block size is far below it.
const BLOCK_SIZE_BYTES_MAX: usize = 4000 << 20;
/// Blobs per list page we ask for (the API's maximum).
const LIST_PAGE_BLOBS_MAX: u32 = 5000;

/// The well-known development account of the Azure storage emulators (Azurite), published
/// by Microsoft: for tests and local setups only.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// `https://<account>.blob.core.windows.net`, or an emulator's
    /// `http://host:port/<account>` (path-style).
    pub endpoint: String,
    pub account: String,
    /// The account key, base64 as the portal shows it.
    pub key: String,
    pub container: String,
    /// Prepended (with `/`) to every object name; empty for the container's root.
    pub prefix: String,
    /// Objects above this go up as blocks of this size.
    pub block_size_bytes: usize,
    pub retries_max: u32,
    pub backoff_base_ms: u64,
    pub request_timeout_secs: u64,
    /// Issue 10: PEM CA certificates for an `https://` endpoint signed by a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl AzureConfig {
    /// The public-cloud endpoint of `account`.
    pub fn new(account: &str, key: &str) -> Self {
        AzureConfig {
            endpoint: format!("https://{account}.blob.core.windows.net"),
            account: account.to_string(),
            key: key.to_string(),
            container: String::new(),
            prefix: String::new(),
            block_size_bytes: 8 << 20,
            retries_max: 5,
            backoff_base_ms: 100,
            request_timeout_secs: 300,
            ca_file: None,
        }
    }
}

pub struct Azure {
    cfg: AzureConfig,
    key: Vec<u8>,
    /// The endpoint's path (`/devstoreaccount1` for emulators, empty in the cloud): part of
    /// every canonicalized resource.
    base_path: String,
    agent: ureq::Agent,
}

/// One request as Shared Key signs it: the headers it covers and the query it carries.
struct Signed<'a> {
    verb: &'a str,
    /// URL path below the endpoint, already percent-encoded (`/container/blob`).
    path: String,
    /// Decoded query parameters; sorted by name when signed.
    query: Vec<(&'a str, String)>,
    content_length: usize,
    content_md5: Option<String>,
    content_type: Option<&'a str>,
    /// `x-ms-*` headers other than date and version.
    ms_headers: Vec<(&'a str, String)>,
}

impl<'a> Signed<'a> {
    fn new(verb: &'a str, path: String) -> Self {
        Signed {
            verb,
            path,
            query: Vec::new(),
            content_length: 0,
            content_md5: None,
            content_type: None,
            ms_headers: Vec::new(),
        }
    }
}

/// The string Shared Key signs (blob service, version 2015-02-21 and later): empty
/// Content-Length for an empty body, canonicalized `x-ms-*` headers, then the resource.
fn string_to_sign(
    account: &str,
    base_path: &str,
    req: &Signed<'_>,
    ms_headers: &[(String, String)],
) -> String {
    let length = if req.content_length == 0 {
        String::new()
    } else {
        req.content_length.to_string()
    };
    let mut s = format!(
        "{}\n\n\n{length}\n{}\n{}\n\n\n\n\n\n\n",
        req.verb,
        req.content_md5.as_deref().unwrap_or(""),
        req.content_type.unwrap_or("")
    );
    let mut headers: Vec<(String, String)> = ms_headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    for (k, v) in headers {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&format!("/{account}{base_path}{}", req.path));
    let mut query: Vec<(String, &String)> = req
        .query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    query.sort();
    for (k, v) in query {
        s.push_str(&format!("\n{k}:{v}"));
    }
    s
}

fn sign(key: &[u8], text: &str) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| BackupError::Invalid(format!("Azure account key: {e}")))?;
    mac.update(text.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The text of every `<tag>...</tag>` in `xml`, entities decoded. The list answers we read
/// are flat and ours (no CDATA, no nesting of the tags asked for).
fn xml_texts(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(
            after[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[end + close.len()..];
    }
    out
}

impl Azure {
    pub fn new(cfg: AzureConfig) -> Result<Self> {
        let url = url::Url::parse(&cfg.endpoint)
            .map_err(|e| BackupError::Invalid(format!("Azure endpoint {}: {e}", cfg.endpoint)))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(cfg.key.trim())
            .map_err(|e| BackupError::Invalid(format!("Azure account key is not base64: {e}")))?;
        if cfg.account.is_empty() || cfg.container.is_empty() {
            return Err(BackupError::Invalid(
                "Azure: an account and a container are needed".into(),
            ));
        }
        if cfg.block_size_bytes == 0 || cfg.block_size_bytes > BLOCK_SIZE_BYTES_MAX {
            return Err(BackupError::Invalid(format!(
                "Azure block size {} is not in 1..={BLOCK_SIZE_BYTES_MAX} bytes",
                cfg.block_size_bytes
            )));
        }
        let base_path = url.path().trim_end_matches('/').to_string();
        let tls = http::TlsOptions {
            ca_file: cfg.ca_file.clone(),
        };
        let agent = http::agent(&cfg.endpoint, cfg.request_timeout_secs, &tls)?;
        Ok(Azure {
            cfg,
            key,
            base_path,
            agent,
        })
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries_max: self.cfg.retries_max,
            backoff_base_ms: self.cfg.backoff_base_ms,
        }
    }

    fn blob_path(&self, name: &str) -> String {
        let key = if self.cfg.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.cfg.prefix)
        };
        format!(
            "/{}/{}",
            http::percent_encode(&self.cfg.container, false),
            http::percent_encode(&key, true)
        )
    }

    /// Signs and sends `req` (fresh date and signature on every attempt) with `body`.
    fn call(
        &self,
        object: &str,
        req: &Signed<'_>,
        body: &[u8],
        ok: impl Fn(u16) -> bool,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut url = format!("{}{}", self.cfg.endpoint.trim_end_matches('/'), req.path);
        for (i, (k, v)) in req.query.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            url.push_str(&format!("{sep}{k}={}", http::percent_encode(v, false)));
        }
        http::send(&self.describe(), object, self.policy(), ok, || {
            let mut ms: Vec<(String, String)> = vec![
                (
                    "x-ms-date".into(),
                    httpdate::fmt_http_date(SystemTime::now()),
                ),
                ("x-ms-version".into(), API_VERSION.into()),
            ];
            ms.extend(
                req.ms_headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone())),
            );
            let text = string_to_sign(&self.cfg.account, &self.base_path, req, &ms);
            let signature =
                sign(&self.key, &text).map_err(|e| ureq::Error::BadUri(e.to_string()))?;
            let mut b = ureq::http::Request::builder()
                .method(req.verb)
                .uri(url.as_str())
                .header(
                    "authorization",
                    format!("SharedKey {}:{signature}", self.cfg.account),
                );
            for (k, v) in &ms {
                b = b.header(k.as_str(), v.as_str());
            }
            if let Some(md5) = &req.content_md5 {
                b = b.header("content-md5", md5.as_str());
            }
            if let Some(ct) = req.content_type {
                b = b.header("content-type", ct);
            }
            let bad = |e: ureq::http::Error| ureq::Error::BadUri(e.to_string());
            if body.is_empty() {
                // Azure wants an explicit zero length on an empty PUT (411 otherwise).
                if req.verb == "PUT" {
                    b = b.header("content-length", "0");
                }
                self.agent.run(b.body(()).map_err(bad)?)
            } else {
                self.agent.run(b.body(body).map_err(bad)?)
            }
        })
    }

    /// Creates the container (tests, first use); an existing one is fine.
    pub fn create_container(&self) -> Result<()> {
        let mut req = Signed::new(
            "PUT",
            format!("/{}", http::percent_encode(&self.cfg.container, false)),
        );
        req.query.push(("restype", "container".into()));
        match self.call("", &req, &[], http::success) {
            Ok(_) | Err(BackupError::Http { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn put_blob(&self, name: &str, data: &[u8], md5: &str) -> Result<()> {
        let mut req = Signed::new("PUT", self.blob_path(name));
        req.content_length = data.len();
        req.content_md5 = Some(md5.to_string());
        req.content_type = Some("application/octet-stream");
        req.ms_headers.push(("x-ms-blob-type", "BlockBlob".into()));
        self.call(name, &req, data, http::success)?;
        Ok(())
    }

    fn put_blocks(&self, name: &str, data: &[u8], md5: &str) -> Result<()> {
        let blocks = data.len().div_ceil(self.cfg.block_size_bytes);
        if blocks > BLOCKS_MAX {
            return Err(BackupError::Invalid(format!(
                "object {name}: {blocks} blocks of {} bytes exceed Azure's {BLOCKS_MAX}; raise the block size",
                self.cfg.block_size_bytes
            )));
        }
        let mut ids = Vec::with_capacity(blocks);
        for (i, chunk) in data.chunks(self.cfg.block_size_bytes).enumerate() {
            // Every block id of a blob must have the same length: fixed-width numbers.
            let id = base64::engine::general_purpose::STANDARD.encode(format!("block-{i:08}"));
            let mut req = Signed::new("PUT", self.blob_path(name));
            req.query.push(("comp", "block".into()));
            req.query.push(("blockid", id.clone()));
            req.content_length = chunk.len();
            req.content_md5 = Some(http::content_md5(chunk));
            req.content_type = Some("application/octet-stream");
            self.call(name, &req, chunk, http::success)?;
            ids.push(id);
        }
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            xml.push_str(&format!("<Latest>{id}</Latest>"));
        }
        xml.push_str("</BlockList>");
        let mut req = Signed::new("PUT", self.blob_path(name));
        req.query.push(("comp", "blocklist".into()));
        req.content_length = xml.len();
        req.content_md5 = Some(http::content_md5(xml.as_bytes()));
        req.content_type = Some("application/xml");
        req.ms_headers
            .push(("x-ms-blob-content-md5", md5.to_string()));
        self.call(name, &req, xml.as_bytes(), http::success)?;
        Ok(())
    }
}

impl Destination for Azure {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        check_name(&self.describe(), name)?;
        let md5 = http::content_md5(data);
        if data.len() > self.cfg.block_size_bytes {
            self.put_blocks(name, data, &md5)
        } else {
            self.put_blob(name, data, &md5)
        }
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        check_name(&self.describe(), name)?;
        let req = Signed::new("GET", self.blob_path(name));
        let resp = match self.call(name, &req, &[], http::success) {
            Ok(resp) => resp,
            Err(BackupError::Http { status: 404, .. }) => {
                return Err(BackupError::NotFound {
                    destination: self.describe(),
                    object: name.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        let stated = http::header(&resp, "content-md5").map(str::to_string);
        let data = http::read_body(&self.describe(), name, resp)?;
        if let Some(stated) = stated {
            let found = http::content_md5(&data);
            if found != stated {
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
        let full_prefix = format!("{root}{prefix}");
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = Signed::new(
                "GET",
                format!("/{}", http::percent_encode(&self.cfg.container, false)),
            );
            req.query.push(("restype", "container".into()));
            req.query.push(("comp", "list".into()));
            req.query
                .push(("maxresults", LIST_PAGE_BLOBS_MAX.to_string()));
            if !full_prefix.is_empty() {
                req.query.push(("prefix", full_prefix.clone()));
            }
            if let Some(m) = &marker {
                req.query.push(("marker", m.clone()));
            }
            let resp = self.call(prefix, &req, &[], http::success)?;
            let body = http::read_body(&self.describe(), prefix, resp)?;
            let xml = String::from_utf8_lossy(&body);
            for blob in xml_texts(&xml, "Blob") {
                if let Some(name) = xml_texts(&blob, "Name").into_iter().next() {
                    if let Some(rel) = name.strip_prefix(&root) {
                        out.push(rel.to_string());
                    }
                }
            }
            marker = xml_texts(&xml, "NextMarker")
                .into_iter()
                .next()
                .filter(|m| !m.is_empty());
            if marker.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(&self.describe(), name)?;
        let req = Signed::new("DELETE", self.blob_path(name));
        match self.call(name, &req, &[], http::success) {
            Ok(_) | Err(BackupError::Http { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        if self.cfg.prefix.is_empty() {
            format!("az://{}", self.cfg.container)
        } else {
            format!("az://{}/{}", self.cfg.container, self.cfg.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_string_and_xml_texts() {
        let mut req = Signed::new("PUT", "/c/a/b".into());
        req.query.push(("comp", "block".into()));
        req.query.push(("blockid", "QQ==".into()));
        req.content_length = 3;
        req.content_md5 = Some("md5".into());
        req.content_type = Some("application/octet-stream");
        let ms = vec![
            ("x-ms-version".to_string(), "v".to_string()),
            ("x-ms-date".to_string(), "d".to_string()),
        ];
        assert_eq!(
            string_to_sign("acct", "/acct", &req, &ms),
            "PUT\n\n\n3\nmd5\napplication/octet-stream\n\n\n\n\n\n\nx-ms-date:d\nx-ms-version:v\n/acct/acct/c/a/b\nblockid:QQ==\ncomp:block"
        );
        let xml = "<Blobs><Blob><Name>a&amp;b</Name></Blob><Blob><Name>c</Name></Blob></Blobs><NextMarker />";
        let names: Vec<String> = xml_texts(xml, "Blob")
            .iter()
            .flat_map(|b| xml_texts(b, "Name"))
            .collect();
        assert_eq!(names, ["a&b", "c"]);
        assert!(xml_texts(xml, "NextMarker").is_empty());
        // HMAC-SHA256 of RFC 4231 test case 2 ("Jefe"), base64.
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?").unwrap(),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }
}
