//! Issues 10 and 8 end to end against a real S3: mantisd archives its WAL at RPO level
//! Minimal to SeaweedFS (`weed mini`, which checks SigV4 signatures; `.ci/run` installs it)
//! while a writer keeps committing. The SeaweedFS process is then stopped (SIGSTOP: it keeps
//! its sockets, so uploads hang rather than fail — the harder case for a monitor):
//! - `GET /api/v1/rpo`: the exposure grows past the 1 s bound and the state turns breached;
//! - the built-in `rpo_breached` alert fires to a real webhook sink (an HTTP server here);
//! - `/health` turns degraded, its `backup_destinations` and `rpo` checks warning.
//!
//! SIGCONT: archiving catches up, the exposure returns under the bound, the alert's
//! resolution reaches the sink and `/health` is healthy again. Finally the archive in the
//! bucket is read back: each shard's pieces reach the LSN the daemon reports archived.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../backup/tests/common/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{eventually, http_request, Daemon, Options};
use mantis_backup::{Destination, S3Config, S3};
use servers::Weed;

const KEY: &str = "mantis-rpo-key";
const SECRET: &str = "mantis-rpo-secret";
const BUCKET: &str = "mantis-rpo";
const PREFIX: &str = "site";
const WAIT: Duration = Duration::from_secs(60);

/// The bucket, created once the whole stack (master, volume, filer, S3) answers.
fn bucket(weed: &Weed) -> S3 {
    let mut cfg = S3Config::new(&weed.endpoint(), KEY, SECRET);
    cfg.bucket = BUCKET.into();
    cfg.prefix = PREFIX.into();
    cfg.retries_max = 2;
    cfg.backoff_base_ms = 50;
    let s3 = S3::new(cfg).unwrap();
    servers::create_bucket_when_up(&s3);
    s3
}

/// Waits for the webhook to receive an `rpo_breached` event of `kind` (other rules' events
/// are passed over).
fn wait_hook(hook: &mpsc::Receiver<serde_json::Value>, kind: &str) -> serde_json::Value {
    common::webhook::wait_event(hook, "rpo_breached", kind, WAIT)
}

/// Commits one key after another over HTTP until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(http: SocketAddr) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("/api/v1/kv/w{i:08}");
                    let r = http_request(http, "PUT", &key, &[], format!("v{i}").as_bytes());
                    assert_eq!(r.status, 204, "{}", r.text());
                    acked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    // About 200 commits a second: a steady load, not a flood of the 2 cores.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.acked.load(Ordering::Relaxed)
    }
}

fn get_json(d: &Daemon, path: &str) -> serde_json::Value {
    let r = d.http("GET", path, &[], b"");
    assert!(r.status == 200 || r.status == 503, "{path}: {}", r.text());
    r.json()
}

fn acked_now(w: &Writer) -> u64 {
    w.acked.load(Ordering::Relaxed)
}

#[test]
fn stopping_seaweedfs_breaches_the_rpo_alerts_and_degrades_health_then_recovers() {
    let weed = Weed::start(KEY, SECRET);
    let s3 = bucket(&weed);
    let (hook_port, hook) = common::webhook::sink();
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let config = tmp.path().join("mantisdb.toml");
    std::fs::write(
        &config,
        format!(
            "[monitor]\nalerts_eval_interval_ms = 100\n\
             [monitor.retry]\nattempts_max = 3\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\ntimeout_ms = 2000\n\
             [[monitor.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\n\
             [rpo]\nlevel = \"minimal\"\ndestination = \"s3://{BUCKET}/{PREFIX}\"\n\
             s3_endpoint = \"{}\"\nprobe_interval_ms = 500\n",
            weed.endpoint()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(Options {
        shards: 2,
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
        ],
        ..Options::default()
    });
    let writer = Writer::start(d.http);

    // Under load, compliant and healthy, the archive destination listed as reachable.
    eventually(WAIT, "archiving under load, compliant", || {
        let s = get_json(&d, "/api/v1/rpo");
        s["state"] == "compliant"
            && s["shards"]
                .as_array()
                .unwrap()
                .iter()
                .all(|sh| sh["archived_lsn"].as_u64() >= Some(20))
    });
    eventually(WAIT, "healthy", || {
        get_json(&d, "/health")["status"] == "healthy"
    });
    let h = get_json(&d, "/health");
    let dests = &h["checks"]["backup_destinations"];
    assert_eq!(dests["status"], "pass", "{h}");
    assert_eq!(dests["destinations"][0]["role"], "wal_archive", "{h}");
    assert_eq!(dests["destinations"][0]["reachable"], true, "{h}");
    assert_eq!(h["checks"]["rpo"]["status"], "pass", "{h}");

    // The destination stops answering.
    weed.signal("STOP");
    let stopped_at_acked = acked_now(&writer);
    eventually(WAIT, "breached", || {
        get_json(&d, "/api/v1/rpo")["state"] == "breached"
    });
    let first = get_json(&d, "/api/v1/rpo")["exposure_max_ms"]
        .as_u64()
        .unwrap();
    assert!(first >= 1_000, "{first}");
    eventually(WAIT, "the exposure keeps growing", || {
        get_json(&d, "/api/v1/rpo")["exposure_max_ms"]
            .as_u64()
            .unwrap()
            >= first + 1_000
    });
    let fired = wait_hook(&hook, "fired");
    assert_eq!(fired["alert"]["level"], "critical", "{fired}");
    eventually(WAIT, "health degraded", || {
        let h = get_json(&d, "/health");
        h["status"] == "degraded"
            && h["checks"]["backup_destinations"]["status"] == "warn"
            && h["checks"]["rpo"]["status"] == "warn"
    });
    let h = get_json(&d, "/health");
    let archive = &h["checks"]["backup_destinations"]["destinations"][0];
    assert_eq!(archive["reachable"], false, "{h}");
    assert!(archive["failing_since_ms"].is_u64(), "{h}");
    // Writes were acknowledged throughout: the outage costs exposure, not availability.
    eventually(WAIT, "writes go on", || {
        acked_now(&writer) > stopped_at_acked + 50
    });
    let m = d.http("GET", "/metrics", &[], b"").text();
    assert!(m.contains("mantis_rpo_breached 1"), "{m}");

    // It answers again: catch-up, compliance, resolution, health.
    weed.signal("CONT");
    eventually(WAIT, "compliant again, within the bound", || {
        let s = get_json(&d, "/api/v1/rpo");
        s["state"] == "compliant" && s["exposure_max_ms"].as_u64().unwrap() < 1_000
    });
    let resolved = wait_hook(&hook, "resolved");
    assert_eq!(resolved["alert"]["rule"], "rpo_breached");
    eventually(WAIT, "healthy again", || {
        let h = get_json(&d, "/health");
        h["status"] == "healthy" && h["checks"]["backup_destinations"]["status"] == "pass"
    });
    let s = get_json(&d, "/api/v1/rpo");
    assert!(s["compliance"]["breaches_total"].as_u64() >= Some(1), "{s}");
    assert!(
        s["compliance"]["breaches"][0]["exposure_max_ms"].as_u64() >= Some(first + 1_000),
        "{s}"
    );

    // Every acknowledged write ends up in the bucket: each shard's pieces reach its durable LSN
    // (the daemon's archived LSN equals it, and the bucket's listing equals that).
    let acked = writer.stop();
    assert!(acked > 100, "{acked}");
    eventually(WAIT, "the archive caught up with the WAL", || {
        let s = get_json(&d, "/api/v1/rpo");
        s["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|sh| sh["archived_lsn"] == sh["durable_lsn"])
    });
    let s = get_json(&d, "/api/v1/rpo");
    let mut records = 0;
    for sh in s["shards"].as_array().unwrap() {
        let shard = sh["shard"].as_u64().unwrap() as usize;
        let in_bucket =
            mantis_backup::archive::archived_lsn(&s3 as &dyn Destination, shard).unwrap();
        assert_eq!(
            Some(in_bucket),
            sh["archived_lsn"].as_u64(),
            "shard {shard}: {s}"
        );
        records += in_bucket;
    }
    // LSNs count WAL records, and one record may carry several commits (group commit): the
    // equality with the durable LSN above is the check; this one only rules out an empty archive.
    assert!(
        records > 0,
        "nothing archived for {acked} acknowledged writes"
    );
    assert!(d.stop().success(), "{}", d.log());
}
