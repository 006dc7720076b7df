//! The REST API, health probes and metrics over real HTTP against the real mantisd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Daemon, Options};

#[test]
fn kv_get_put_delete_with_ttl() {
    let d = Daemon::start(Options::default());
    let r = d.http("PUT", "/api/v1/kv/greeting", &[], b"hello");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = d.http("GET", "/api/v1/kv/greeting", &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(r.header("x-expires-at-ms").is_none());

    let r = d.http("PUT", "/api/v1/kv/t1?ttl=100", &[], b"x");
    assert_eq!(r.status, 204);
    let r = d.http("PUT", "/api/v1/kv/t2", &[("X-TTL", "200")], b"y");
    assert_eq!(r.status, 204);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let at: u64 = d
        .http("GET", "/api/v1/kv/t1", &[], b"")
        .header("x-expires-at-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        at > now_ms + 90_000 && at <= now_ms + 100_000,
        "{at} vs {now_ms}"
    );
    let at: u64 = d
        .http("GET", "/api/v1/kv/t2", &[], b"")
        .header("x-expires-at-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(at > now_ms + 190_000);
    // The same keys through RESP.
    assert_eq!(d.cli(&["GET", "greeting"]), "hello");
    let ttl: i64 = d.cli(&["TTL", "t1"]).parse().unwrap();
    assert!((95..=100).contains(&ttl));

    for bad in ["0", "-1", "abc", "99999999999999999999"] {
        let r = d.http("PUT", &format!("/api/v1/kv/bad?ttl={bad}"), &[], b"v");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "invalid_ttl"),
            "ttl={bad}"
        );
    }
    assert_eq!(d.http("GET", "/api/v1/kv/bad", &[], b"").status, 404);

    let r = d.http("DELETE", "/api/v1/kv/greeting", &[], b"");
    assert_eq!(r.status, 204);
    let r = d.http("DELETE", "/api/v1/kv/greeting", &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r = d.http("GET", "/api/v1/kv/greeting", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "no such key");

    // Keys are bytes: percent-encoded non-UTF-8 works and is the same key over RESP.
    let r = d.http("PUT", "/api/v1/kv/bin%FF%00%2F", &[], b"\x00\x01");
    assert_eq!(r.status, 204);
    let r = d.http("GET", "/api/v1/kv/bin%ff%00%2f", &[], b"");
    assert_eq!(r.body, b"\x00\x01");
    let mut c = d.resp_client();
    c.command(&[b"GET", b"bin\xff\x00/"]);
    assert_eq!(c.read_reply(), b"$2\r\n\x00\x01\r\n");
    let r = d.http("GET", "/api/v1/kv/bad%zz", &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_key"));
}

#[test]
fn batch_and_list_with_pagination() {
    let d = Daemon::start(Options::default());
    let mut ops = Vec::new();
    for i in 0..25 {
        ops.push(serde_json::json!({"op": "put", "key": format!("item:{i:02}"), "value": format!("v{i}")}));
    }
    ops.push(
        serde_json::json!({"op": "put", "key_base64": "/wA=", "value_base64": "AP8=", "ttl": 500}),
    );
    ops.push(serde_json::json!({"op": "put", "key": "doomed", "value": "x"}));
    ops.push(serde_json::json!({"op": "delete", "key": "doomed"}));
    let body = serde_json::json!({ "ops": ops }).to_string();
    let r = d.http(
        "POST",
        "/api/v1/kv",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["applied"], 28);
    assert_eq!(d.http("GET", "/api/v1/kv/doomed", &[], b"").status, 404);
    assert_eq!(d.http("GET", "/api/v1/kv/item:07", &[], b"").body, b"v7");

    // Page through the prefix 10 at a time.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = d.http(
            "GET",
            &format!("/api/v1/kv?prefix=item%3A&limit=10&cursor={cursor}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["key"].as_str().unwrap().to_string());
            assert!(item["value"].as_str().unwrap().starts_with('v'));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("item:{i:02}")).collect();
    assert_eq!(seen, expected);
    // A binary key is listed as base64, with its expiry.
    let r = d.http("GET", "/api/v1/kv?prefix=%FF", &[], b"");
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["key_base64"], "/wA=");
    assert_eq!(items[0]["value_base64"], "AP8=");
    assert!(items[0]["expires_at_ms"].as_u64().is_some());

    // Errors with stable codes; nothing of a bad batch is applied.
    let bad = br#"{"ops":[{"op":"put","key":"half","value":"1"},{"op":"explode","key":"x"}]}"#;
    let r = d.http("POST", "/api/v1/kv", &[], bad);
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_batch"));
    assert_eq!(d.http("GET", "/api/v1/kv/half", &[], b"").status, 404);
    let r = d.http("POST", "/api/v1/kv", &[], b"{not json");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_json"));
    let r = d.http("GET", "/api/v1/kv?limit=0", &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_limit"));
    let r = d.http("GET", "/api/v1/kv?cursor=zz", &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_cursor"));
    let r = d.http("GET", "/api/v2/nothing", &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r = d.http("PATCH", "/api/v1/kv/x", &[], b"");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "method_not_allowed")
    );
}

#[test]
fn health_probes_and_metrics() {
    let d = Daemon::start(Options::default());
    let r = d.http("GET", "/health/live", &[], b"");
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("live")));
    let r = d.http("GET", "/health/ready", &[], b"");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
    let r = d.http("GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_eq!(h["status"], "healthy");
    for check in ["recovery", "accepting", "shards", "wal", "disk"] {
        assert_eq!(h["checks"][check]["status"], "pass", "{check}: {h}");
    }

    assert_eq!(d.cli(&["SET", "a", "1"]), "OK");
    assert_eq!(d.cli(&["GET", "a"]), "1");
    assert!(d.cli(&["GET"]).starts_with("ERR"));
    assert_eq!(d.http("PUT", "/api/v1/kv/b", &[], b"2").status, 204);
    let r = d.http("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let m = r.text();
    for needle in [
        "mantis_requests_total{command=\"set\",protocol=\"resp\"} 1",
        "mantis_requests_total{command=\"get\",protocol=\"resp\"} 2",
        "mantis_request_errors_total{command=\"get\",protocol=\"resp\"} 1",
        "mantis_requests_total{command=\"kv_put\",protocol=\"http\"} 1",
        "mantis_request_duration_seconds_bucket{command=\"set\",protocol=\"resp\",le=\"0.01\"}",
        "mantis_wal_syncs_total{shard=\"0\"}",
        "mantis_wal_syncs_total{shard=\"1\"}",
        "mantis_wal_bytes_written_total{shard=\"1\"}",
        "mantis_flushes_total{shard=\"0\"}",
        "mantis_compactions_total{shard=\"0\"}",
        "mantis_cache_hits_total{shard=\"0\"}",
        "mantis_cache_misses_total{shard=\"0\"}",
        "mantis_shard_live_keys{shard=\"0\"}",
        "mantis_shard_segment_bytes{shard=\"0\"}",
        "mantis_shard_memtable_bytes{shard=\"1\"}",
        "mantis_connections_open{protocol=\"http\"}",
        "mantis_uptime_seconds ",
        "mantis_ready 1",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
    // WAL syncs really are counted: two writes, at least two syncs in total.
    let syncs: u64 = m
        .lines()
        .filter(|l| l.starts_with("mantis_wal_syncs_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(syncs >= 2, "{m}");
}

#[test]
fn bearer_token_when_a_password_is_set() {
    let d = Daemon::start(Options {
        password: Some("tok3n".into()),
        ..Options::default()
    });
    let r = d.http(
        "GET",
        "/api/v1/kv/x",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let r = d.http(
        "PUT",
        "/api/v1/kv/x",
        &[("Authorization", "Basic dG9rM24=")],
        b"v",
    );
    assert_eq!(r.status, 401);
    for path in ["/metrics", "/health", "/api/v1/kv"] {
        assert_eq!(
            d.http("GET", path, &[("Authorization", "")], b"").status,
            401,
            "{path}"
        );
    }
    // Probes stay open for the service manager and load balancers.
    assert_eq!(
        d.http("GET", "/health/live", &[("Authorization", "")], b"")
            .status,
        200
    );
    assert_eq!(
        d.http("GET", "/health/ready", &[("Authorization", "")], b"")
            .status,
        200
    );
    // With the token (the harness adds it).
    assert_eq!(d.http("PUT", "/api/v1/kv/x", &[], b"v").status, 204);
    assert_eq!(d.http("GET", "/api/v1/kv/x", &[], b"").body, b"v");
}
