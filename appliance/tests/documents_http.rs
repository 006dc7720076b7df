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

/// Runs the real `psql` with `script` on stdin against the daemon; stdout and stderr.
fn psql(d: &Daemon, script: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-U",
            "mantis",
            "-d",
            "mantis",
        ])
        .args(["-p", &d.pg.port().to_string()])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    // wait_with_output on a helper thread, so a hung psql fails the test at a deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(common::IO_TIMEOUT)
        .unwrap_or_else(|_| panic!("psql did not finish within {:?}", common::IO_TIMEOUT))
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Collections as SQL tables through the real daemon and the real psql (issue 11): documents
/// written over HTTP are rows of `documents.<collection>`, the jsonb operators work, an index
/// made in SQL is used (EXPLAIN) and serves HTTP queries, and an SQL INSERT is an HTTP GET.
#[test]
fn documents_through_psql() {
    common::require_tool("psql");
    let d = Daemon::start(Options::default());
    for (id, body) in [
        (
            "a1",
            r#"{"kind": "cat", "age": 3, "tags": ["grey", "indoor"], "owner": {"city": "Oslo"}}"#,
        ),
        (
            "a2",
            r#"{"kind": "dog", "age": 7, "tags": ["black"], "owner": {"city": "Rome"}}"#,
        ),
        (
            "a3",
            r#"{"kind": "cat", "age": 12, "owner": {"city": "Oslo"}, "chip": null}"#,
        ),
    ] {
        let r = d.http(
            "POST",
            "/api/v1/documents/pets",
            &[],
            format!("{{\"_id\": \"{id}\", {}", &body[1..]).as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let out = psql(
        &d,
        "SELECT id, doc->>'kind', doc->'owner'->>'city' FROM documents.pets ORDER BY id;\n\
         SELECT count(*) FROM documents.pets WHERE doc @> '{\"tags\": [\"indoor\"]}';\n\
         SELECT doc->>'kind', avg((doc->'age')::numeric) FROM documents.pets GROUP BY 1 ORDER BY 1;\n\
         SELECT doc->>'chip' IS NULL, doc->'chip' FROM documents.pets WHERE id = 'a3';\n\
         CREATE INDEX ON documents.pets ((doc->>'kind'));\n\
         EXPLAIN SELECT id FROM documents.pets WHERE doc->>'kind' = 'cat';\n\
         SELECT id FROM documents.pets WHERE doc->>'kind' = 'cat' ORDER BY id;\n\
         INSERT INTO documents.pets (id, doc) VALUES ('a4', '{\"kind\":  \"cat\"}');\n\
         SELECT 1 -> 'x';\n",
    );
    for want in [
        "a1|cat|Oslo",
        "a2|dog|Rome",
        "a3|cat|Oslo",
        "\n1\n",
        "cat|7.5",
        "dog|7",
        "t|null",
        "CREATE INDEX",
        "Document Scan on documents.pets using path index kind (in)",
        "a1\na3",
        "INSERT 0 1",
        "operator does not exist: integer -> unknown",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The index made in SQL serves HTTP queries, and the SQL insert is there byte for byte.
    let r = d.http(
        "POST",
        "/api/v1/documents/pets/_explain",
        &[],
        br#"{"filter": {"path": "kind", "op": "eq", "value": "cat"}}"#,
    );
    assert_eq!(json(&r.body)["plan"]["access"], "index", "{}", r.text());
    let r = d.http("GET", "/api/v1/documents/pets/a4", &[], b"");
    assert_eq!(
        (r.status, r.text()),
        (200, "{\"kind\":  \"cat\"}".to_string())
    );
}
