//! Issue 10 over real HTTP against the real mantisd: checkpoints created, listed, shown and
//! deleted (a parent in use is refused), and a backup job to a local directory followed to
//! its end, then verified and restored into a data directory that serves every key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Options};
use mantis_backup::LocalDir;

fn json(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = d.http(method, path, &[], body.as_bytes());
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()));
    (r.status, v)
}

fn wait_job(d: &Daemon, job: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = json(d, "GET", &format!("/api/v1/backups/jobs/{job}"), "");
        assert_eq!(code, 200);
        if v["state"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "backup job never finished: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn checkpoints_and_a_backup_job_over_http() {
    let d = Daemon::start(Options::default());
    for i in 0..300 {
        let r = d.http(
            "PUT",
            &format!("/api/v1/kv/key{i:04}"),
            &[],
            format!("value-{i}").as_bytes(),
        );
        assert_eq!(r.status, 204);
    }
    let (code, full) = json(&d, "POST", "/api/v1/checkpoints", r#"{"kind":"full"}"#);
    assert_eq!(code, 201, "{full}");
    let full_id = full["id"].as_str().unwrap().to_string();
    assert_eq!(full["shard_count"], 2);
    for i in 300..400 {
        let r = d.http(
            "PUT",
            &format!("/api/v1/kv/key{i:04}"),
            &[],
            format!("value-{i}").as_bytes(),
        );
        assert_eq!(r.status, 204);
    }
    let (code, inc) = json(
        &d,
        "POST",
        "/api/v1/checkpoints",
        r#"{"kind":"incremental"}"#,
    );
    assert_eq!(code, 201, "{inc}");
    assert_eq!(inc["parent"], full_id.as_str());
    let inc_id = inc["id"].as_str().unwrap().to_string();
    let (code, list) = json(&d, "GET", "/api/v1/checkpoints", "");
    assert_eq!(code, 200);
    assert_eq!(list["checkpoints"].as_array().unwrap().len(), 2);
    let (code, shown) = json(&d, "GET", &format!("/api/v1/checkpoints/{inc_id}"), "");
    assert_eq!((code, shown["kind"].as_str()), (200, Some("incremental")));
    let (code, e) = json(&d, "DELETE", &format!("/api/v1/checkpoints/{full_id}"), "");
    assert_eq!(code, 409, "{e}");
    assert_eq!(
        json(&d, "DELETE", &format!("/api/v1/checkpoints/{inc_id}"), "").0,
        200
    );
    assert_eq!(
        json(&d, "DELETE", &format!("/api/v1/checkpoints/{full_id}"), "").0,
        200
    );
    assert_eq!(
        json(&d, "GET", &format!("/api/v1/checkpoints/{full_id}"), "").0,
        404
    );
    assert_eq!(
        json(&d, "POST", "/api/v1/checkpoints", r#"{"kind":"weekly"}"#).0,
        400
    );

    let dest = tempfile::tempdir_in("/var/tmp").unwrap();
    let body = format!(r#"{{"to":"{}","kind":"full"}}"#, dest.path().display());
    let (code, started) = json(&d, "POST", "/api/v1/backups", &body);
    assert_eq!(code, 202, "{started}");
    let job = wait_job(&d, started["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["bytes_done"], job["bytes_total"]);
    assert!(job["uploaded_bytes"].as_u64().unwrap() > 0);
    let backup_id = job["backup"].as_str().unwrap().to_string();
    // The checkpoint taken for the backup is gone once it is uploaded.
    let (_, list) = json(&d, "GET", "/api/v1/checkpoints", "");
    assert!(list["checkpoints"].as_array().unwrap().is_empty(), "{list}");
    let metrics = d.http("GET", "/metrics", &[], b"").text();
    let uploaded: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mantis_backup_uploaded_bytes_total "))
        .expect("uploaded bytes metric")
        .parse()
        .unwrap();
    assert!(uploaded > 0.0);
    assert!(metrics.contains("mantis_backup_last_success_timestamp_seconds "));
    // A bad destination is refused before any job starts.
    assert_eq!(
        json(&d, "POST", "/api/v1/backups", r#"{"to":"gs://x"}"#).0,
        400
    );

    let local = LocalDir::new(dest.path());
    mantis_backup::verify(&local, Some(&backup_id), &mut |_| {}).unwrap();
    let target = tempfile::tempdir_in("/var/tmp").unwrap();
    let data = target.path().join("restored");
    mantis_backup::restore(&local, Some(&backup_id), &data, &mut |_| {}).unwrap();
    drop(d);
    let restored = Daemon::start_in(&data, Options::default());
    for i in (0..400).step_by(13) {
        let r = restored.http("GET", &format!("/api/v1/kv/key{i:04}"), &[], b"");
        assert_eq!((r.status, r.text()), (200, format!("value-{i}")));
    }
}
