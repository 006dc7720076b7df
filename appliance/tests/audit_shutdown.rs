//! Issue 8 on a real mantisd: the monitor runs from READY, a clean stop loses no audit record
//! (the flush interval is set to a minute, so without the shutdown flush every record would
//! still be in memory at exit), and the alerts thread reads the registry without HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Daemon, Options};

const RECORDS: usize = 60;

fn audit_lines(data_dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data_dir.join("audit").join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn sigterm_writes_every_queued_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mantisd.toml");
    std::fs::write(
        &config,
        "[monitor]\naudit_flush_interval_ms = 60000\nalerts_eval_interval_ms = 60000\n",
    )
    .unwrap();
    let mut d = Daemon::start(Options {
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    });
    // The monitor runs from READY on: the trail exists before any request.
    assert!(d.data_dir.join("audit").join("audit.log").exists());
    let mut resp = d.resp_client();
    for i in 0..RECORDS {
        resp.command(&[b"SET", format!("key{i}").as_bytes(), b"v"]);
        assert_eq!(resp.read_reply(), b"+OK\r\n");
    }
    drop(resp);
    assert!(
        audit_lines(&d.data_dir).is_empty(),
        "flushed before the stop"
    );
    let status = d.stop();
    assert!(status.success(), "{status}\n{}", d.log());

    let audit_dir = d.data_dir.join("audit");
    let verified = mantis_monitor::audit::verify(&audit_dir).unwrap();
    assert_eq!(verified.records as usize, RECORDS);
    let keys: Vec<String> = audit_lines(&d.data_dir)
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["what"].as_str().unwrap(),
                r["target"].as_str().unwrap()
            )
        })
        .collect();
    let want: Vec<String> = (0..RECORDS).map(|i| format!("set:key{i}")).collect();
    assert_eq!(keys, want);

    // The chain continues across the restart.
    d.restart();
    assert_eq!(d.cli(&["DEL", "key0"]), "1");
    assert!(d.stop().success());
    let verified = mantis_monitor::audit::verify(&audit_dir).unwrap();
    assert_eq!(verified.records as usize, RECORDS + 1);
}

/// Issue 8: the alerts thread reads the shards' numbers by calling the registry refresh, not
/// by requesting the daemon's own `/metrics` and `/health`: a rule on a per-shard counter
/// fires while no HTTP request for either was ever made.
#[test]
fn alert_rules_see_shard_metrics_without_any_http_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mantisd.toml");
    std::fs::write(
        &config,
        "[monitor]\nalerts_eval_interval_ms = 200\n\
         [[monitor.rules]]\nname = \"wal_written\"\nmetric = \"mantis_wal_records_total\"\n\
         comparison = \">\"\nthreshold = 0.0\nlevel = \"info\"\n",
    )
    .unwrap();
    let d = Daemon::start(Options {
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    });
    assert_eq!(d.cli(&["SET", "a", "1"]), "OK");
    common::eventually(
        std::time::Duration::from_secs(30),
        "the rule on a shard counter fires",
        || {
            let list = d.http("GET", "/api/v1/alerts", &[], b"").json();
            list["active"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["rule"] == "wal_written" && a["firing"] == true)
        },
    );
    let metrics = d.http("GET", "/api/v1/metrics", &[], b"").json();
    for route in ["metrics", "health"] {
        let served = metrics["mantis_requests_total"]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["labels"]["protocol"] == "http" && s["labels"]["command"] == route)
            .map_or(0.0, |s| s["value"].as_f64().unwrap());
        assert_eq!(
            served, 0.0,
            "/{route} was requested: the thread still self-scrapes"
        );
    }
}

/// Issue 8: statements run through the extended protocol (Parse/Bind/Execute) are audited
/// like simple queries; reads are not.
#[test]
fn pg_extended_protocol_execute_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mantisd.toml");
    std::fs::write(
        &config,
        "[monitor]\naudit_flush_interval_ms = 20\nalerts_eval_interval_ms = 60000\n",
    )
    .unwrap();
    let mut d = Daemon::start(Options {
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    });
    let url = format!(
        "host=127.0.0.1 port={} user=mantis dbname=mantis connect_timeout=10",
        d.pg.port()
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)")
        .unwrap();
    let n = client
        .execute("INSERT INTO t VALUES ($1, $2)", &[&"k7", &"seven"])
        .unwrap();
    assert_eq!(n, 1);
    let rows = client
        .query("SELECT v FROM t WHERE id = $1", &[&"k7"])
        .unwrap();
    assert_eq!(rows.len(), 1);
    // A failing Execute is audited with its SQLSTATE.
    let err = client
        .execute("INSERT INTO t VALUES ($1, $2)", &[&"k7", &"again"])
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("23505"));
    drop(client);
    assert!(d.stop().success());
    let records = audit_lines(&d.data_dir);
    let seen: Vec<(String, String, String)> = records
        .iter()
        .filter(|r| r["protocol"] == "pg")
        .map(|r| {
            (
                r["what"].as_str().unwrap().to_string(),
                r["target"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let insert = "INSERT INTO t VALUES ($1, $2)".to_string();
    assert_eq!(
        seen,
        [
            (
                "CREATE".into(),
                "CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)".into(),
                "ok".into()
            ),
            ("INSERT".into(), insert.clone(), "ok".into()),
            ("INSERT".into(), insert, "23505".into()),
        ],
        "{records:?}"
    );
}

/// Issue 8: the slow-query log. With `slow_query_ms = 0` every RESP command and SQL statement
/// is logged (target `slow_query`); with the default (1 s) a quick command is not.
#[test]
fn slow_query_log_threshold_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mantisd.toml");
    std::fs::write(&config, "[monitor]\nslow_query_ms = 0\n").unwrap();
    let d = Daemon::start(Options {
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    });
    assert_eq!(d.cli(&["SET", "slowkey", "1"]), "OK");
    let url = format!(
        "host=127.0.0.1 port={} user=mantis dbname=mantis connect_timeout=10",
        d.pg.port()
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.simple_query("SELECT 41 + 1").unwrap();
    drop(client);
    let slow_lines = |d: &Daemon| -> Vec<String> {
        d.log()
            .lines()
            .filter(|l| l.contains("slow query"))
            .map(str::to_string)
            .collect()
    };
    common::eventually(std::time::Duration::from_secs(20), "both logged", || {
        let lines = slow_lines(&d);
        lines
            .iter()
            .any(|l| l.contains("resp") && l.contains("set"))
            && lines.iter().any(|l| l.contains("SELECT 41 + 1"))
    });

    let quiet = Daemon::start(Options::default());
    assert_eq!(quiet.cli(&["SET", "fast", "1"]), "OK");
    assert_eq!(quiet.cli(&["GET", "fast"]), "1");
    assert!(slow_lines(&quiet).is_empty(), "{}", quiet.log());
}

/// Issue 8: the records of a pipeline reach the audit thread in one message per pipeline
/// (not one per command). Nothing may be lost on the way: several clients pipelining writes
/// (run side by side), reads (not audited) and a failing write on both shards, then a clean
/// stop: every write is in the trail exactly once, with its outcome, and the chain verifies.
#[test]
fn pipelined_writes_are_all_audited_once() {
    const CLIENTS: usize = 4;
    const PIPELINE: usize = 150; // more than one pending batch (64) per pipeline
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mantisd.toml");
    std::fs::write(
        &config,
        "[monitor]\naudit_flush_interval_ms = 60000\nalerts_eval_interval_ms = 60000\n",
    )
    .unwrap();
    let mut d = Daemon::start(Options {
        shards: 2,
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    });
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| d.resp_client()).collect();
    for (c, client) in clients.iter_mut().enumerate() {
        let mut bytes = Vec::new();
        for i in 0..PIPELINE {
            let key = format!("c{c}k{i}");
            bytes.extend(common::encode(&[b"SET", key.as_bytes(), b"v"]));
            bytes.extend(common::encode(&[b"GET", key.as_bytes()]));
        }
        // INCR of a non-number: an audited write that fails.
        bytes.extend(common::encode(&[b"INCR", format!("c{c}k0").as_bytes()]));
        client.send(&bytes);
    }
    for client in &mut clients {
        for _ in 0..PIPELINE {
            assert_eq!(client.read_reply(), b"+OK\r\n");
            assert_eq!(client.read_reply(), b"$1\r\nv\r\n");
        }
        assert!(client.read_reply().starts_with(b"-ERR"));
    }
    drop(clients);
    assert!(d.stop().success(), "{}", d.log());

    let audit_dir = d.data_dir.join("audit");
    let verified = mantis_monitor::audit::verify(&audit_dir).unwrap();
    assert_eq!(verified.records as usize, CLIENTS * (PIPELINE + 1));
    let mut got: Vec<String> = audit_lines(&d.data_dir)
        .iter()
        .map(|r| {
            let outcome = if r["outcome"] == "ok" { "ok" } else { "err" };
            format!(
                "{}:{}:{outcome}",
                r["what"].as_str().unwrap(),
                r["target"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..CLIENTS)
        .flat_map(|c| {
            (0..PIPELINE)
                .map(move |i| format!("set:c{c}k{i}:ok"))
                .chain([format!("incr:c{c}k0:err")])
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
}
