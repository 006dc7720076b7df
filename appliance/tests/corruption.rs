//! Issue 7 end to end on a real mantisd: a bit flipped in a segment file on disk while the
//! daemon runs. Every protocol answers with its corruption error (HTTP 502 `data_corrupted`,
//! RESP `-ERR corruption ...`, PostgreSQL SQLSTATE XX001) and never the damaged data; the
//! event reaches `/metrics`, `/health` (degraded), the scrubber's error count and the built-in
//! `corruption` alert in `GET /api/v1/alerts`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, Daemon, Options};

/// Alerts evaluated every 200 ms instead of 15 s.
fn options(dir: &Path) -> Options {
    let config = dir.join("mantisdb.toml");
    std::fs::write(&config, "[monitor]\nalerts_eval_interval_ms = 200\n").unwrap();
    Options {
        shards: 1,
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    }
}

/// The live segment files of shard 0.
fn segments(d: &Daemon) -> Vec<PathBuf> {
    let dir = d.data_dir.join("shard-0").join("seg");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    out.sort();
    out
}

/// Flips one bit at `offset` and makes it reach the disk: the daemon reads with O_DIRECT,
/// past the page cache.
fn flip_bit(path: &Path, offset: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut byte).unwrap();
    byte[0] ^= 0x10;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&byte).unwrap();
    f.sync_all().unwrap();
}

/// Offset 100 is in the first data block.
fn flip_bit_in_first_block(path: &Path) {
    flip_bit(path, 100);
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

#[test]
fn a_flipped_bit_is_an_error_on_every_kv_path_and_fires_the_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(options(tmp.path()));
    for i in 0..200 {
        let value = format!(r#"{{"id":{i},"payload":"value number {i} of the corruption test"}}"#);
        let r = d.http("PUT", &format!("/api/v1/kv/k{i:04}"), &[], value.as_bytes());
        assert_eq!(r.status, 204);
    }
    // The clean stop flushes everything into one segment; after the restart the block cache
    // is empty, so reads go to the file.
    d.restart();
    let segs = segments(&d);
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert_eq!(
        d.http("GET", "/health", &[], b"").json()["status"],
        "healthy"
    );
    flip_bit_in_first_block(&segs[0]);

    let r = d.http("GET", "/api/v1/kv/k0000", &[], b"");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "data_corrupted");
    assert!(r.text().contains("checksum"), "{}", r.text());
    assert!(!r.text().contains("value number 0"));

    let reply = d.cli(&["GET", "k0001"]);
    assert!(reply.starts_with("ERR corruption"), "{reply}");

    // Keys in other blocks still read.
    let r = d.http("GET", "/api/v1/kv/k0199", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());

    let text = d.http("GET", "/metrics", &[], b"").text();
    assert!(
        metric(
            &text,
            "mantis_corruption_events_total{component=\"segment\"}"
        ) >= 2.0
    );
    assert_eq!(
        metric(&text, "mantis_corruption_events_total{component=\"wal\"}"),
        0.0
    );

    let health = d.http("GET", "/health", &[], b"").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["integrity"]["status"], "warn", "{health}");

    eventually(
        Duration::from_secs(30),
        "the corruption alert fires",
        || {
            let list = d.http("GET", "/api/v1/alerts", &[], b"").json();
            list["active"].as_array().unwrap().iter().any(|a| {
                a["rule"] == "corruption" && a["firing"] == true && a["level"] == "critical"
            })
        },
    );

    // The scrubber finds the same block.
    let r = d.http("POST", "/api/v1/integrity/scrub", &[], b"");
    assert_eq!(r.status, 202);
    eventually(Duration::from_secs(30), "a scrub pass ends", || {
        let text = d.http("GET", "/metrics", &[], b"").text();
        metric(&text, "mantis_scrub_passes_total{shard=\"0\"}") >= 1.0
    });
    let text = d.http("GET", "/metrics", &[], b"").text();
    assert!(
        metric(&text, "mantis_scrub_errors_total{shard=\"0\"}") >= 1.0,
        "{text}"
    );
    assert!(metric(&text, "mantis_scrub_bytes_total{shard=\"0\"}") > 0.0);
    assert!(
        metric(
            &text,
            "mantis_scrub_last_full_pass_timestamp_seconds{shard=\"0\"}"
        ) > 1.7e9
    );
}

#[test]
fn a_flipped_bit_under_sql_is_sqlstate_xx001() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(options(tmp.path()));
    let sql = |d: &Daemon, q: &str| {
        let body = serde_json::json!({ "sql": q }).to_string();
        d.http("POST", "/api/v1/sql", &[], body.as_bytes())
    };
    let r = sql(&d, "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)");
    assert_eq!(r.status, 200, "{}", r.text());
    // Rows that barely compress, so that they fill many blocks: the catalog's block (the
    // first) is read and cached at start; a row block in the middle of the file is not.
    for batch in 0..20u64 {
        let rows: Vec<String> = (batch * 100..batch * 100 + 100)
            .map(|i| {
                let noise = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let more = noise.rotate_left(17) ^ 0xA5A5_5A5A_F0F0_0F0F;
                format!("({i}, '{noise:016x}{more:016x}{:016x}')", noise ^ more)
            })
            .collect();
        let r = sql(&d, &format!("INSERT INTO notes VALUES {}", rows.join(", ")));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    d.restart();
    let segs = segments(&d);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let len = std::fs::metadata(&segs[0]).unwrap().len();
    assert!(len > 100_000, "{len}");
    flip_bit(&segs[0], len / 2);

    let r = sql(&d, "SELECT * FROM notes");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "XX001");

    let url = format!(
        "host=127.0.0.1 port={} user=mantis dbname=mantis connect_timeout=10",
        d.pg.port()
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let err = client.simple_query("SELECT * FROM notes").unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(db.code().code(), "XX001", "{db}");
    assert!(db.message().contains("corrupt"), "{db}");
    // The extended protocol too.
    let err = client
        .query("SELECT body FROM notes WHERE id > $1", &[&-1i32])
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("XX001"), "{err}");
}
