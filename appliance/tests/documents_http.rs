//! The document API over real HTTP against the real mantisd (issue 11).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Daemon, Options};

const BASE: &str = "/api/v1/documents/books";

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[test]
fn documents_crud_query_and_indexes() {
    let d = Daemon::start(Options::default());
    let text = "{\"_id\": \"b1\", \"price\": 10.50, \"big\": 1e400, \"title\": \"\\u00e9t\u{e9}\"}";
    let r = d.http("POST", BASE, &[], text.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json(&r.body)["id"], "b1");
    let r = d.http("GET", &format!("{BASE}/b1"), &[], b"");
    assert_eq!((r.status, r.text()), (200, text.to_string()));
    let r = d.http("POST", BASE, &[], text.as_bytes());
    assert_eq!(r.status, 409, "{}", r.text());
    for i in 0..20 {
        let body = format!("{{\"price\": {i}, \"n\": {i}}}");
        let r = d.http("POST", BASE, &[], body.as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = d.http(
        "POST",
        &format!("{BASE}/_indexes"),
        &[],
        br#"{"path": "price"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.http("GET", &format!("{BASE}/_indexes"), &[], b"");
    assert_eq!(json(&r.body)["indexes"][0]["state"], "ready");
    let q = br#"{"filter": {"path": "price", "op": "ge", "value": 10}, "sort": [{"path": "price", "order": "desc"}], "limit": 3}"#;
    let r = d.http("POST", &format!("{BASE}/_query"), &[], q);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(&r.body);
    assert_eq!(v["plan"]["access"], "index");
    let prices: Vec<f64> = v["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["doc"]["price"].as_f64().unwrap())
        .collect();
    assert_eq!(prices, [19.0, 18.0, 17.0]);
    let r = d.http(
        "POST",
        &format!("{BASE}/_explain"),
        &[],
        br#"{"filter": {"path": "n", "op": "eq", "value": 3}}"#,
    );
    assert_eq!(json(&r.body)["plan"]["access"], "scan");
    let r = d.http(
        "PATCH",
        &format!("{BASE}/b1"),
        &[],
        br#"[{"op": "set", "path": "price", "value": 99.90}, {"op": "unset", "path": "big"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "{\"_id\": \"b1\", \"price\": 99.90, \"title\": \"\\u00e9t\u{e9}\"}"
    );
    let r = d.http("PUT", &format!("{BASE}/b1"), &[], br#"{"price": 1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.http("DELETE", &format!("{BASE}/b1"), &[], b"");
    assert_eq!(r.status, 200);
    let r = d.http("GET", &format!("{BASE}/b1"), &[], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn client_mistakes_are_4xx_with_a_json_error() {
    let d = Daemon::start(Options::default());
    let big = format!("{{\"x\": \"{}\"}}", "y".repeat((16 << 20) + 1));
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            BASE.into(),
            b"{\"a\": ".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            BASE.into(),
            b"[1, 2]".to_vec(),
            400,
            "not_an_object",
        ),
        (
            "POST",
            BASE.into(),
            big.into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/api/v1/documents/_bad".into(),
            b"{}".to_vec(),
            400,
            "invalid_collection",
        ),
        (
            "POST",
            format!("{BASE}/_query"),
            br#"{"filter": {"path": "a..b", "op": "eq", "value": 1}}"#.to_vec(),
            400,
            "invalid_path",
        ),
        (
            "POST",
            format!("{BASE}/_query"),
            br#"{"filter": {"path": "a", "op": "like", "value": 1}}"#.to_vec(),
            400,
            "invalid_filter",
        ),
        (
            "POST",
            format!("{BASE}/_query"),
            br#"{"limit": 0}"#.to_vec(),
            400,
            "invalid_query",
        ),
        (
            "PATCH",
            format!("{BASE}/nobody"),
            br#"[{"op": "set", "path": "a", "value": 1}]"#.to_vec(),
            404,
            "not_found",
        ),
        (
            "PATCH",
            format!("{BASE}/x"),
            br#"[{"op": "explode"}]"#.to_vec(),
            400,
            "invalid_patch",
        ),
        (
            "POST",
            format!("{BASE}/_indexes"),
            br#"{"path": ""}"#.to_vec(),
            400,
            "invalid_path",
        ),
        ("GET", format!("{BASE}/%zz"), Vec::new(), 400, "invalid_id"),
        (
            "DELETE",
            format!("{BASE}/_query"),
            Vec::new(),
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = d.http(method, &path, &[], &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(json(&r.body)["error"]["code"], code, "{method} {path}");
    }
    // Still serving.
    assert_eq!(d.http("GET", "/health/live", &[], b"").status, 200);
}
