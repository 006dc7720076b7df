//! Monitoring against the real mantisd: `promtool check metrics` on /metrics, a real
//! Prometheus scraping it, the JSON and plain-text exports, the audit trail of RESP and HTTP
//! writes (verified, then tampered with), and the alerts API with a webhook sink.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, free_port, http_request, require_tool, Daemon, Options};

fn with_config(dir: &Path, toml: &str) -> Options {
    let path = dir.join("mantisd.toml");
    std::fs::write(&path, toml).unwrap();
    Options {
        extra_args: vec!["--config".into(), path.display().to_string()],
        ..Options::default()
    }
}

#[test]
fn metrics_pass_promtool_and_export_as_json_and_text() {
    require_tool("promtool");
    let d = Daemon::start(Options::default());
    assert_eq!(d.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(d.cli(&["GET", "k"]), "v");
    // Issue 9: one MSET over keys of both shards is a two-phase commit.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..16 {
        mset.push(format!("tpc{i}"));
        mset.push("x".into());
    }
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(d.cli(&args), "OK");
    // MSET answers once the Decision is durable; each participant writes its Commit record
    // (and counts it) up to 2 ms later, riding its next WAL sync. So the scrape waits for the
    // participants' commits instead of assuming they already happened.
    let per_shard = |text: &str, family: &str| -> Vec<f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let mut text = String::new();
    eventually(Duration::from_secs(10), "both participants commit", || {
        let r = d.http("GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200);
        text = r.text();
        per_shard(&text, "mantis_twopc_committed_total") == vec![1.0, 1.0]
    });
    for name in [
        "mantis_requests_total",
        "mantis_process_resident_memory_bytes",
        "mantis_disk_free_bytes",
        "mantis_wal_syncs_total",
        "mantis_health_status",
        "mantis_twopc_prepared_total",
        "mantis_twopc_committed_total",
        "mantis_twopc_aborted_total",
        "mantis_twopc_in_doubt_resolved_total",
        "mantis_twopc_prepared",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // Both shards prepared and committed it; nothing aborted, nothing left in doubt.
    let per_shard = |family: &str| per_shard(&text, family);
    assert_eq!(
        per_shard("mantis_twopc_prepared_total"),
        vec![1.0, 1.0],
        "{text}"
    );
    assert_eq!(per_shard("mantis_twopc_committed_total"), vec![1.0, 1.0]);
    assert_eq!(per_shard("mantis_twopc_aborted_total"), vec![0.0, 0.0]);
    assert_eq!(
        per_shard("mantis_twopc_in_doubt_resolved_total"),
        vec![0.0, 0.0]
    );
    assert_eq!(per_shard("mantis_twopc_prepared"), vec![0.0, 0.0]);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let json = d.http("GET", "/api/v1/metrics", &[], b"").json();
    let samples = json["mantis_requests_total"]["samples"].as_array().unwrap();
    let set = samples
        .iter()
        .find(|s| s["labels"]["command"] == "set" && s["labels"]["protocol"] == "resp")
        .unwrap();
    assert_eq!(set["value"], 1.0);
    assert_eq!(json["mantis_requests_total"]["type"], "counter");
    let plain = d
        .http("GET", "/api/v1/metrics?format=text", &[], b"")
        .text();
    assert!(
        plain.contains("mantis_requests_total{command=set,protocol=resp} = 1"),
        "{plain}"
    );
}

/// A Prometheus server on loopback with its own config and storage, stopped on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: SocketAddr) -> Prometheus {
    require_tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: mantis\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let p = Prometheus {
        child,
        addr,
        _dir: dir,
    };
    eventually(Duration::from_secs(60), "prometheus ready", || {
        std::net::TcpStream::connect(addr).is_ok()
            && http_request(addr, "GET", "/-/ready", &[], b"").status == 200
    });
    p
}

/// The value of an instant query's first sample, if any.
fn query(p: &Prometheus, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = http_request(
        p.addr,
        "GET",
        &format!("/api/v1/query?query={encoded}"),
        &[],
        b"",
    );
    let json = r.json();
    let value = json["data"]["result"].get(0)?["value"][1].as_str()?;
    value.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_mantisd() {
    let d = Daemon::start(Options::default());
    let p = start_prometheus(d.http);
    eventually(Duration::from_secs(60), "target up", || {
        query(&p, "up{job=\"mantis\"}") == Some(1.0)
    });
    let set_total = "sum(mantis_requests_total{protocol=\"resp\",command=\"set\"})";
    let before = {
        let mut v = None;
        eventually(Duration::from_secs(60), "request counter scraped", || {
            v = query(&p, set_total);
            v.is_some()
        });
        v.unwrap()
    };
    for i in 0..5 {
        assert_eq!(d.cli(&["SET", &format!("k{i}"), "v"]), "OK");
    }
    eventually(
        Duration::from_secs(60),
        "counter increased in Prometheus",
        || query(&p, set_total).is_some_and(|v| v >= before + 5.0),
    );
    let targets = http_request(p.addr, "GET", "/api/v1/targets", &[], b"").json();
    assert_eq!(targets["data"]["activeTargets"][0]["health"], "up");
}

fn audit_lines(data_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data_dir.join("audit").join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn writes_and_admin_calls_are_audited_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let opts = with_config(
        dir.path(),
        "[monitor]\naudit_flush_interval_ms = 20\nalerts_eval_interval_ms = 60000\n",
    );
    let mut d = Daemon::start(opts);
    assert_eq!(d.cli(&["SET", "acct", "100"]), "OK");
    assert_eq!(d.cli(&["GET", "acct"]), "100");
    assert_eq!(d.cli(&["DEL", "acct"]), "1");
    assert_eq!(d.http("PUT", "/api/v1/kv/doc", &[], b"x").status, 204);
    let r = d.http("POST", "/api/v1/alerts/nosuch/silence", &[], b"");
    assert_eq!(r.status, 404);
    eventually(Duration::from_secs(20), "four records written", || {
        audit_lines(&d.data_dir).len() >= 4
    });
    let status = d.stop();
    assert!(status.success());
    let records = audit_lines(&d.data_dir);
    let whats: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["what"].as_str().unwrap(), r["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        whats,
        [
            ("set", "acct"),
            ("del", "acct"),
            ("kv_put", "/api/v1/kv/doc"),
            ("alert.silence", "nosuch")
        ],
        "reads are not audited"
    );
    assert_eq!(records[0]["protocol"], "resp");
    assert!(records[0]["from"].as_str().unwrap().starts_with("client:"));
    assert_eq!(records[0]["outcome"], "ok");
    assert!(records[3]["outcome"]
        .as_str()
        .unwrap()
        .contains("no alert rule"));
    let audit_dir = d.data_dir.join("audit");
    let v = mantis_monitor::audit::verify(&audit_dir).unwrap();
    assert_eq!(v.records, 4);
    // Tampering with the stopped daemon's trail: the second record edited.
    let path = audit_dir.join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"del\"", "\"get\"", 1)).unwrap();
    let err = mantis_monitor::audit::verify(&audit_dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("record 2 (seq Some(2))"), "{err}");
}

#[test]
fn alerts_fire_to_a_webhook_and_are_acknowledged_and_silenced_over_http() {
    let (port, hook) = common::webhook::sink();
    let dir = tempfile::tempdir().unwrap();
    let opts = with_config(
        dir.path(),
        &format!(
            "[monitor]\nalerts_eval_interval_ms = 200\n\
             [monitor.retry]\nattempts_max = 3\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\ntimeout_ms = 2000\n\
             [[monitor.rules]]\nname = \"busy\"\nmetric = \"mantis_requests_total\"\n\
             comparison = \">\"\nthreshold = 0.0\nlevel = \"warning\"\nrepeat_ms = 3600000\n\
             [[monitor.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"
        ),
    );
    let d = Daemon::start(opts);
    assert_eq!(d.cli(&["SET", "a", "1"]), "OK");
    let fired = hook.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(fired["alert"]["rule"], "busy");
    assert_eq!(fired["alert"]["kind"], "fired");
    let list = d.http("GET", "/api/v1/alerts", &[], b"").json();
    assert_eq!(list["active"][0]["rule"], "busy");
    assert_eq!(list["active"][0]["firing"], true);
    assert_eq!(list["history"][0]["kind"], "fired");
    let r = d.http("POST", "/api/v1/alerts/busy/ack", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let list = d.http("GET", "/api/v1/alerts", &[], b"").json();
    assert_eq!(list["active"][0]["acknowledged_by"], "http");
    let r = d.http("POST", "/api/v1/alerts/busy/silence?minutes=5", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let list = d.http("GET", "/api/v1/alerts", &[], b"").json();
    assert!(list["silences"]["busy"].as_u64().is_some());
    assert_eq!(
        d.http("POST", "/api/v1/alerts/nosuch/ack", &[], b"").status,
        400
    );
    let r = d.http("POST", "/api/v1/alerts/busy/silence?minutes=0", &[], b"");
    assert_eq!(r.status, 400);
    // The alert history is kept next to the audit trail.
    let history = std::fs::read_to_string(d.data_dir.join("audit").join("alerts.jsonl")).unwrap();
    assert!(history.contains("\"acknowledged\""), "{history}");
}

#[test]
fn health_reports_disk_and_audit_checks() {
    let d = Daemon::start(Options::default());
    let h = d.http("GET", "/health", &[], b"").json();
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["checks"]["disk_space"]["status"], "pass", "{h}");
    assert_eq!(h["checks"]["disk_space"]["critical"], false);
    assert_eq!(h["checks"]["audit"]["status"], "pass", "{h}");
    let text = d.http("GET", "/metrics", &[], b"").text();
    assert!(text.contains("mantis_health_status 0"), "{text}");
}

#[test]
fn low_disk_space_degrades_health_and_fires_the_default_rule() {
    // More free space demanded than any disk has: the state a filling disk reaches.
    let dir = tempfile::tempdir().unwrap();
    let opts = with_config(
        dir.path(),
        "[monitor]\ndisk_free_bytes_min = 1000000000000000000\nalerts_eval_interval_ms = 200\n\
         [[monitor.rules]]\nname = \"degraded\"\nmetric = \"health.status\"\n\
         comparison = \">=\"\nthreshold = 1.0\nlevel = \"warning\"\n",
    );
    let d = Daemon::start(opts);
    let r = d.http("GET", "/health", &[], b"");
    assert_eq!(r.status, 200, "degraded still serves");
    let h = r.json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["checks"]["disk_space"]["status"], "warn", "{h}");
    let text = d.http("GET", "/metrics", &[], b"").text();
    assert!(text.contains("mantis_health_status 1"), "{text}");
    eventually(Duration::from_secs(30), "degraded alert firing", || {
        let list = d.http("GET", "/api/v1/alerts", &[], b"").json();
        list["active"][0]["rule"] == "degraded" && list["active"][0]["firing"] == true
    });
}

/// The shipped Prometheus rules load, and every MantisDB metric the rules and the Grafana
/// dashboard name is one the daemon exports.
#[test]
fn shipped_rules_and_dashboard_name_exported_metrics() {
    require_tool("promtool");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let rules = docs.join("prometheus-alerts.yml");
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard = std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().unwrap().len() >= 10);
    let d = Daemon::start(Options::default());
    assert_eq!(d.cli(&["SET", "k", "v"]), "OK");
    let exported = d.http("GET", "/metrics", &[], b"").text();
    let text = dashboard + &std::fs::read_to_string(&rules).unwrap();
    let mut checked = 0;
    for (at, _) in text.match_indices("mantis_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name == "mantis_" || name == "mantis_down" {
            continue;
        }
        assert!(
            exported.contains(&format!("\n{name}")) || exported.contains(&format!("{name}{{")),
            "{name} is not exported"
        );
        checked += 1;
    }
    assert!(checked > 20, "{checked}");
}

/// Issue 8: latency percentiles come from HdrHistogram recordings (every shard's, merged at
/// scrape time), and log lines carry a trace id (HTTP: the caller's `x-request-id` or
/// `traceparent`, else a generated one, echoed in `x-trace-id`; RESP: the connection span).
#[test]
fn latency_quantiles_and_trace_ids() {
    let dir = common::data_tempdir();
    let d = Daemon::start(with_config(dir.path(), "[monitor]\nslow_query_ms = 0\n"));
    for i in 0..20 {
        assert_eq!(d.cli(&["SET", &format!("k{i}"), "v"]), "OK");
    }
    let json = d.http("GET", "/api/v1/metrics", &[], b"").json();
    let family = &json["mantis_request_latency_seconds"];
    assert_eq!(family["type"], "summary", "{family}");
    let set = family["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["labels"]["protocol"] == "resp" && s["labels"]["command"] == "set")
        .unwrap_or_else(|| panic!("no resp set sample: {family}"));
    assert_eq!(set["value"]["count"], 20, "{set}");
    let quantile = |q: &str| set["value"]["quantiles"][q].as_f64().unwrap();
    let (p50, p99, p999, max) = (
        quantile("0.5"),
        quantile("0.99"),
        quantile("0.999"),
        quantile("1"),
    );
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{p50} {p99} {p999} {max}"
    );
    assert!(max < 60.0, "a SET cannot have taken {max} s");
    let text = d.http("GET", "/metrics", &[], b"").text();
    assert!(
        text.contains(
            "mantis_request_latency_seconds{command=\"set\",protocol=\"resp\",quantile=\"0.999\"}"
        ),
        "{text}"
    );

    let body = br#"{"sql": "SELECT 41 + 1"}"#;
    let r = d.http(
        "POST",
        "/api/v1/sql",
        &[("x-request-id", "job-42.retry:1")],
        body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-trace-id"), Some("job-42.retry:1"));
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = d.http("POST", "/api/v1/sql", &[("traceparent", parent)], body);
    assert_eq!(
        r.header("x-trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let r = d.http("POST", "/api/v1/sql", &[("x-request-id", "bad id;")], body);
    let generated = r.header("x-trace-id").unwrap().to_string();
    assert_eq!(generated.len(), 16, "{generated}");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    for needle in [
        "trace_id=job-42.retry:1",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        &format!("trace_id={generated}"),
    ] {
        eventually(Duration::from_secs(10), needle, || {
            d.log()
                .lines()
                .any(|l| l.contains("slow query") && l.contains(needle))
        });
    }
    // RESP lines name the connection they belong to.
    eventually(Duration::from_secs(10), "resp conn span", || {
        d.log()
            .lines()
            .any(|l| l.contains("slow query") && l.contains("conn{protocol=\"resp\""))
    });
}
