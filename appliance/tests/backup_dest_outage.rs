//! Issues 10 and 8 end to end: a `[[backup_schedule]]` backing up every two seconds to a real
//! S3 (SeaweedFS, which checks SigV4 signatures) whose server is then killed. `/health` turns
//! degraded, its `backup_destinations` check lists the schedule's destination as failing with
//! severity `warning`, then `critical` after `FAILURES_CRITICAL` (3) failed runs in a row, in
//! step with the schedule's alert (fired warning, escalated critical) at a real webhook sink.
//! SeaweedFS restarted on the same ports and data: the next run succeeds, the alert resolves
//! and `/health` is healthy again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../backup/tests/common/servers.rs"]
mod servers;

use std::time::Duration;

use common::{eventually, Daemon, Options};
use mantis_backup::{Destination, S3Config, S3};
use servers::Weed;

const KEY: &str = "mantis-outage-key";
const SECRET: &str = "mantis-outage-secret";
const BUCKET: &str = "mantis-outage";
const SCHEDULE: &str = "s3-every-2s";
const WAIT: Duration = Duration::from_secs(90);

/// The bucket, created (or found) once the whole SeaweedFS stack answers.
fn bucket(weed: &Weed) -> S3 {
    let mut cfg = S3Config::new(&weed.endpoint(), KEY, SECRET);
    cfg.bucket = BUCKET.into();
    cfg.prefix = "site".into();
    cfg.retries_max = 2;
    cfg.backoff_base_ms = 50;
    let s3 = S3::new(cfg).unwrap();
    servers::create_bucket_when_up(&s3);
    s3
}

fn health(d: &Daemon) -> serde_json::Value {
    let r = d.http("GET", "/health", &[], b"");
    assert!(r.status == 200 || r.status == 503, "{}", r.text());
    r.json()
}

/// The schedule's entry in the `backup_destinations` check, once it ran.
fn schedule_entry(h: &serde_json::Value) -> Option<serde_json::Value> {
    h["checks"]["backup_destinations"]["destinations"]
        .as_array()?
        .iter()
        .find(|d| d["role"] == format!("backup_schedule:{SCHEDULE}"))
        .cloned()
}

fn severity(h: &serde_json::Value) -> String {
    schedule_entry(h)
        .and_then(|e| e["severity"].as_str().map(String::from))
        .unwrap_or_default()
}

#[test]
fn a_scheduled_backup_to_a_killed_seaweedfs_degrades_health_then_recovers() {
    let mut weed = Weed::start(KEY, SECRET);
    let s3 = bucket(&weed);
    let (hook_port, hook) = common::webhook::sink();
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let config = tmp.path().join("mantisdb.toml");
    std::fs::write(
        &config,
        format!(
            "[monitor.retry]\nattempts_max = 3\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\ntimeout_ms = 2000\n\
             [[monitor.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\n\
             [[backup_schedule]]\nname = \"{SCHEDULE}\"\ncron = \"*/2 * * * * *\"\nkind = \"full\"\n\
             destination = \"s3://{BUCKET}/site\"\ns3_endpoint = \"{}\"\n\
             s3_access_key = \"{KEY}\"\ns3_secret_key = \"{SECRET}\"\nretention = {{ keep_last = 2 }}\n",
            weed.endpoint()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(Options {
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    });
    assert_eq!(d.cli(&["SET", "k", "v"]), "OK");

    // Scheduled backups land in the bucket; the destination is reachable.
    eventually(WAIT, "a scheduled backup in the bucket", || {
        mantis_backup::list_backups(&s3 as &dyn Destination)
            .map(|b| !b.is_empty())
            .unwrap_or(false)
    });
    eventually(
        WAIT,
        "healthy with the schedule's destination listed",
        || {
            let h = health(&d);
            h["status"] == "healthy" && severity(&h) == "ok"
        },
    );

    // The destination goes away: connections are refused.
    weed.kill();
    let fired =
        common::webhook::wait_event(&hook, &format!("backup_schedule:{SCHEDULE}"), "fired", WAIT);
    assert_eq!(fired["alert"]["level"], "warning", "{fired}");
    eventually(WAIT, "health degraded, the destination failing", || {
        let h = health(&d);
        h["status"] == "degraded"
            && h["checks"]["backup_destinations"]["status"] == "warn"
            && schedule_entry(&h).is_some_and(|e| e["reachable"] == false)
    });
    let h = health(&d);
    let entry = schedule_entry(&h).unwrap();
    assert!(entry["failing_since_ms"].is_u64(), "{h}");
    assert!(
        entry["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{h}"
    );
    let escalated = common::webhook::wait_event(
        &hook,
        &format!("backup_schedule:{SCHEDULE}"),
        "escalated",
        WAIT,
    );
    assert_eq!(escalated["alert"]["level"], "critical", "{escalated}");
    eventually(WAIT, "the destination critical after 3 failures", || {
        let h = health(&d);
        h["status"] == "degraded" && severity(&h) == "critical"
    });
    let h = health(&d);
    let entry = schedule_entry(&h).unwrap();
    assert!(entry["failures_in_a_row"].as_u64() >= Some(3), "{h}");
    let detail = h["checks"]["backup_destinations"]["detail"].to_string();
    assert!(detail.contains("critical"), "{h}");

    // It returns: the next run succeeds, the alert resolves, health is back.
    weed.restart();
    let resolved = common::webhook::wait_event(
        &hook,
        &format!("backup_schedule:{SCHEDULE}"),
        "resolved",
        WAIT,
    );
    assert_eq!(resolved["alert"]["level"], "critical", "{resolved}");
    eventually(WAIT, "healthy again", || {
        let h = health(&d);
        h["status"] == "healthy"
            && h["checks"]["backup_destinations"]["status"] == "pass"
            && severity(&h) == "ok"
    });
    let h = health(&d);
    let entry = schedule_entry(&h).unwrap();
    assert_eq!(entry["reachable"], true, "{h}");
    assert!(entry["failures_total"].as_u64() >= Some(3), "{h}");
    assert!(d.stop().success(), "{}", d.log());
}
