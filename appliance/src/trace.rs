//! Trace ids for log correlation (issue 8).
//!
//! Every HTTP request runs inside a `request` span whose `trace_id` field appears in each log
//! line written while serving it (text: `request{trace_id=…}`; JSON: the `span` object), and is
//! sent back in the `x-trace-id` response header. A caller that already has an id passes it in
//! a W3C `traceparent` header (its trace-id part is used) or an `x-request-id` header, so the
//! daemon's lines join the caller's trace. RESP and PostgreSQL connections have no per-request
//! headers: their lines carry a `conn` span with protocol and client id instead.
//!
//! Generated ids are unique within a process without shared state: the executor's thread
//! makes them from its own counter, with a per-thread prefix drawn at random once.

use std::cell::Cell;

use hyper::header::HeaderMap;

/// Longest caller-supplied id kept (a longer one is replaced by a generated id: ids are logged
/// on every line, and a client must not be able to make lines arbitrarily long).
pub const CALLER_ID_BYTES_MAX: usize = 64;

thread_local! {
    /// `(prefix, next)`: the prefix is random per thread so two executors never collide.
    static NEXT: Cell<(u32, u32)> = Cell::new((rand::random::<u32>(), 0));
}

/// A fresh id: 16 hex digits.
pub fn generate() -> String {
    let (prefix, n) = NEXT.with(|c| {
        let (prefix, n) = c.get();
        c.set((prefix, n.wrapping_add(1)));
        (prefix, n)
    });
    format!("{prefix:08x}{n:08x}")
}

/// The caller's id if it sent a usable one, else a generated one.
pub fn from_headers(headers: &HeaderMap) -> String {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let request_id = || {
        headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_safe_id(v))
            .map(str::to_string)
    };
    traceparent.or_else(request_id).unwrap_or_else(generate)
}

/// The trace-id field of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); an all-zero
/// trace id is invalid by the spec.
fn parse_traceparent(value: &str) -> Option<String> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then(|| trace.to_ascii_lowercase())
}

/// Letters, digits and `-_.:` only, 1 to [`CALLER_ID_BYTES_MAX`] bytes: safe to log and echo.
fn is_safe_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= CALLER_ID_BYTES_MAX
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_differ_and_are_hex() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn caller_ids_are_taken_when_valid() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(from_headers(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "job-42:a.b_c".parse().unwrap());
        assert_eq!(from_headers(&h), "job-42:a.b_c");
    }

    #[test]
    fn bad_caller_ids_are_replaced() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "garbage",
        ] {
            let mut h = HeaderMap::new();
            h.insert("traceparent", bad.parse().unwrap());
            assert_eq!(from_headers(&h).len(), 16, "{bad}");
        }
        for bad in [
            "has space",
            "semi;colon",
            &"x".repeat(CALLER_ID_BYTES_MAX + 1),
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-request-id", bad.parse().unwrap());
            let id = from_headers(&h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16);
        }
    }
}
