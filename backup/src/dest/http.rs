//! What the REST destinations (GCS, Azure Blob) share: a ureq agent that hands every status
//! back (no redirects: GCS answers 308 to a partial resumable upload), a request loop that
//! retries with exponential backoff, bounded body reads, Content-MD5 and percent-encoding.

use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use ureq::http::Response;
use ureq::Body;

use crate::error::{BackupError, Result};

/// The largest object we read into memory.
pub(crate) const OBJECT_BYTES_MAX: u64 = 16 << 30;
/// How much of an error response we keep for the error message.
const ERROR_BODY_BYTES_MAX: u64 = 4096;
/// The backoff between retries doubles from the base up to this.
const BACKOFF_MS_MAX: u64 = 10_000;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries_max: u32,
    pub backoff_base_ms: u64,
}

/// The client side of one destination's connections.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    /// PEM file of the CA certificates that sign the server's certificate (a private CA);
    /// None trusts the public web PKI (Mozilla's roots, built in).
    pub ca_file: Option<std::path::PathBuf>,
}

/// An agent for `endpoint`. WHY `https_only` for an `https://` endpoint: a redirect or a
/// misconfiguration must never downgrade a backup stream to plain HTTP. A `ca_file` with a
/// plain `http://` endpoint is refused: the operator asked for TLS and would not get it.
pub(crate) fn agent(
    endpoint: &str,
    request_timeout_secs: u64,
    tls: &TlsOptions,
) -> Result<ureq::Agent> {
    let https = endpoint.to_ascii_lowercase().starts_with("https://");
    if tls.ca_file.is_some() && !https {
        return Err(BackupError::Invalid(format!(
            "{endpoint}: a ca_file is set but the endpoint is not https:// (TLS would not be used)"
        )));
    }
    let mut tls_config = ureq::tls::TlsConfig::builder();
    if let Some(path) = &tls.ca_file {
        tls_config = tls_config.root_certs(ureq::tls::RootCerts::from(ca_certificates(path)?));
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .https_only(https)
        .tls_config(tls_config.build())
        .timeout_global(Some(Duration::from_secs(request_timeout_secs)))
        .build()
        .new_agent())
}

/// The certificates of a PEM file (a CA bundle); at least one, or the file is refused.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let invalid =
        |reason: String| BackupError::Invalid(format!("ca_file {}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| invalid(e.to_string()))? {
            ureq::tls::PemItem::Certificate(c) => certs.push(c),
            // A key in a CA bundle is odd but harmless: only certificates are trusted.
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(invalid("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Whether a transport error is the TLS layer refusing the connection: permanent, so it is
/// reported at once (retrying would only repeat the same refusal).
pub(crate) fn tls_refusal(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::TlsRequired => true,
        ureq::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

/// Transient answers: the service is overloaded, restarting, or timed out.
pub(crate) fn retryable(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

pub(crate) fn content_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` when asked):
/// object names go into URL paths and query values.
pub(crate) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `attempt` until its answer passes `ok`, fails for good, or the retries are spent.
/// Transport errors, 5xx, 408 and 429 are retried; any other answer is final.
pub(crate) fn send(
    destination: &str,
    object: &str,
    policy: RetryPolicy,
    ok: impl Fn(u16) -> bool,
    attempt: impl Fn() -> std::result::Result<Response<Body>, ureq::Error>,
) -> Result<Response<Body>> {
    let mut tries = 0u32;
    loop {
        tries += 1;
        let last = tries > policy.retries_max;
        match attempt() {
            Ok(resp) if ok(resp.status().as_u16()) => return Ok(resp),
            Ok(resp) if retryable(resp.status().as_u16()) && !last => {
                let status = resp.status().as_u16();
                tracing::warn!(
                    destination,
                    object,
                    status,
                    tries,
                    "request failed; retrying"
                );
            }
            Ok(mut resp) => {
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(ERROR_BODY_BYTES_MAX)
                    .read_to_string()
                    .unwrap_or_default();
                return Err(BackupError::Http {
                    destination: destination.to_string(),
                    object: object.to_string(),
                    status: resp.status().as_u16(),
                    attempts: tries,
                    body,
                });
            }
            Err(e) if tls_refusal(&e) => {
                return Err(BackupError::Tls {
                    destination: destination.to_string(),
                    object: object.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(e) if !last => {
                tracing::warn!(destination, object, error = %e, tries, "request failed; retrying");
            }
            Err(e) => {
                return Err(BackupError::Destination {
                    destination: destination.to_string(),
                    object: object.to_string(),
                    reason: format!("after {tries} attempt(s): {e}"),
                })
            }
        }
        let shift = (tries - 1).min(16);
        let backoff_ms = (policy.backoff_base_ms << shift).min(BACKOFF_MS_MAX);
        // Backing off from a failed remote: there is no event to wait on.
        std::thread::sleep(Duration::from_millis(backoff_ms));
    }
}

pub(crate) fn success(status: u16) -> bool {
    (200..300).contains(&status)
}

pub(crate) fn read_body(
    destination: &str,
    object: &str,
    mut resp: Response<Body>,
) -> Result<Vec<u8>> {
    resp.body_mut()
        .with_config()
        .limit(OBJECT_BYTES_MAX)
        .read_to_vec()
        .map_err(|e| BackupError::Destination {
            destination: destination.to_string(),
            object: object.to_string(),
            reason: format!("read response: {e}"),
        })
}

pub(crate) fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A transfer whose MD5 the service reported differs from what we sent or read.
pub(crate) fn md5_mismatch(
    destination: &str,
    object: &str,
    expected: &str,
    found: &str,
) -> BackupError {
    BackupError::Destination {
        destination: destination.to_string(),
        object: object.to_string(),
        reason: format!("MD5 mismatch in transit (expected {expected}, service says {found})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_names_for_paths_and_queries() {
        assert_eq!(percent_encode("a/b c+d", true), "a/b%20c%2Bd");
        assert_eq!(percent_encode("a/b", false), "a%2Fb");
        assert_eq!(percent_encode("x-1_2.~", false), "x-1_2.~");
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert!(retryable(503) && retryable(429) && !retryable(404));
    }
}
