//! Issue 7 over real HTTP against the real mantisd: scrub on demand and its progress, the
//! compression stats and recommendations, the health check's integrity entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Options};

fn json(d: &Daemon, method: &str, path: &str) -> (u16, serde_json::Value) {
    let r = d.http(method, path, &[], b"");
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()));
    (r.status, v)
}

#[test]
fn scrub_on_demand_and_compression_endpoints() {
    let d = Daemon::start(Options::default());
    for i in 0..200 {
        let body = format!(r#"{{"id":{i},"name":"user-{i}","email":"user{i}@example.com"}}"#);
        let r = d.http("PUT", &format!("/api/v1/kv/doc{i}"), &[], body.as_bytes());
        assert_eq!(r.status, 204);
    }
    let (code, v) = json(&d, "GET", "/api/v1/integrity");
    assert_eq!(code, 200);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["shards"].as_array().unwrap().len(), 2);

    let (code, _) = json(&d, "POST", "/api/v1/integrity/scrub");
    assert_eq!(code, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = json(&d, "GET", "/api/v1/integrity/scrub");
        let shards = v["shards"].as_array().unwrap();
        if shards
            .iter()
            .all(|s| s["passes_completed"].as_u64().unwrap() >= 1)
        {
            assert!(shards
                .iter()
                .all(|s| s["last_full_pass_end_unix_ms"].as_u64().unwrap() > 0));
            assert_eq!(v["corruption_events"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "scrub never finished: {v}");
        std::thread::yield_now();
    }
    let r = d.http("DELETE", "/api/v1/integrity/scrub", &[], b"");
    assert_eq!(r.status, 405);

    let (code, v) = json(&d, "GET", "/api/v1/compression/stats");
    assert_eq!(code, 200);
    for key in [
        "raw_bytes",
        "stored_bytes",
        "ratio",
        "cold_fraction",
        "by_codec",
    ] {
        assert!(!v["total"][key].is_null(), "{key} missing: {v}");
    }
    assert!(v["total"]["by_codec"]["zstd"].is_object());
    let (code, v) = json(&d, "GET", "/api/v1/compression/recommendations");
    assert_eq!(code, 200);
    assert!(v["recommendations"].is_array());

    let (_, v) = json(&d, "GET", "/health");
    assert_eq!(v["checks"]["integrity"]["status"], "pass", "{v}");
}
