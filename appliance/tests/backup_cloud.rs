//! Issue 10: `POST /api/v1/backups` to `gs://` and `az://` on a real mantisd, against a real
//! fake-gcs-server and a real Azurite on loopback, and to `s3://` over TLS against SeaweedFS
//! serving a test CA's certificate (installed by `.ci/run`; the same server starters as the
//! backup crate's tests). A full and then an incremental backup job run to their end; both
//! verify and restore into data directories a new mantisd serves with every key written
//! before the job started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../backup/tests/common/servers.rs"]
mod servers;

#[path = "../../backup/tests/common/pki.rs"]
mod pki;

use std::time::{Duration, Instant};

use common::{Daemon, Options};
use mantis_backup::dest::azure::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use mantis_backup::{Azure, AzureConfig, Destination, Gcs, GcsConfig, S3Config, S3};

fn json(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = d.http(method, path, &[], body.as_bytes());
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()));
    (r.status, v)
}

fn wait_job(d: &Daemon, job: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
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

fn put_keys(d: &Daemon, tag: &str, range: std::ops::Range<u32>) {
    for i in range {
        let r = d.http(
            "PUT",
            &format!("/api/v1/kv/key{i:04}"),
            &[],
            format!("{tag}-{i}").as_bytes(),
        );
        assert_eq!(r.status, 204);
    }
}

/// Runs one backup job to `to` with the destination settings `settings` (a JSON member such
/// as `"gcs": {...}`), returns the backup id.
fn backup_job(d: &Daemon, to: &str, kind: &str, settings: &str) -> String {
    let body = format!(r#"{{"to":"{to}","kind":"{kind}",{settings}}}"#);
    let (code, started) = json(d, "POST", "/api/v1/backups", &body);
    assert_eq!(code, 202, "{started}");
    let job = wait_job(d, started["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["bytes_done"], job["bytes_total"]);
    assert!(job["uploaded_bytes"].as_u64().unwrap() > 0, "{job}");
    job["backup"].as_str().unwrap().to_string()
}

/// Restores `id` from `dest`, serves it with a new mantisd, and checks keys 0..400.
fn restore_and_check(dest: &dyn Destination, id: &str, second_tag_from: u32) {
    mantis_backup::verify(dest, Some(id), &mut |_| {}).unwrap();
    let target = tempfile::tempdir_in("/var/tmp").unwrap();
    let data = target.path().join("restored");
    mantis_backup::restore(dest, Some(id), &data, &mut |_| {}).unwrap();
    let restored = Daemon::start_in(&data, Options::default());
    for i in (0..400).step_by(7) {
        let tag = if i >= second_tag_from { "two" } else { "one" };
        let r = restored.http("GET", &format!("/api/v1/kv/key{i:04}"), &[], b"");
        assert_eq!((r.status, r.text()), (200, format!("{tag}-{i}")), "{id}");
    }
}

/// The story for one store: full job, more writes, incremental job, both restored.
fn full_then_incremental(to: &str, settings: &str, dest: &dyn Destination) {
    let d = Daemon::start(Options::default());
    put_keys(&d, "one", 0..400);
    let full = backup_job(&d, to, "full", settings);
    put_keys(&d, "two", 200..400);
    let inc = backup_job(&d, to, "incremental", settings);
    drop(d);
    let listed = mantis_backup::list_backups(dest).unwrap();
    let kinds: Vec<(&str, &str)> = listed
        .iter()
        .map(|m| (m.id.as_str(), m.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [(full.as_str(), "full"), (inc.as_str(), "incremental")]
    );
    assert_eq!(listed[1].parent.as_deref(), Some(full.as_str()));
    restore_and_check(dest, &full, 400);
    restore_and_check(dest, &inc, 200);
}

#[test]
fn backup_jobs_to_gcs_through_the_daemon() {
    let server = servers::start_fake_gcs();
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let mut cfg = GcsConfig::new(&endpoint, Some("test-token".into()));
    cfg.bucket = "daemon-backups".into();
    cfg.prefix = "site/a".into();
    let dest = Gcs::new(cfg).unwrap();
    dest.create_bucket("mantis-test").unwrap();
    let settings = format!(r#""gcs":{{"endpoint":"{endpoint}","token":"test-token"}}"#);
    full_then_incremental("gs://daemon-backups/site/a", &settings, &dest);
}

#[test]
fn backup_jobs_to_azure_through_the_daemon() {
    let server = servers::start_azurite();
    let endpoint = format!("http://127.0.0.1:{}/{DEV_ACCOUNT}", server.port);
    let mut cfg = AzureConfig::new(DEV_ACCOUNT, DEV_ACCOUNT_KEY);
    cfg.endpoint = endpoint.clone();
    cfg.container = "daemon-backups".into();
    cfg.prefix = "site/a".into();
    let dest = Azure::new(cfg).unwrap();
    // Azurite listens before it serves: create the container once it answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = dest.create_container() {
        assert!(Instant::now() < deadline, "Azurite never served: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Only the service can check a key: a wrong one makes the job fail, saying why.
    let forged = format!(
        r#""azure":{{"account":"{DEV_ACCOUNT}","key":"{}","endpoint":"{endpoint}"}}"#,
        "AAAA".repeat(22)
    );
    let d = Daemon::start(Options::default());
    put_keys(&d, "one", 0..10);
    let body = format!(r#"{{"to":"az://daemon-backups/site/a","kind":"full",{forged}}}"#);
    let (code, started) = json(&d, "POST", "/api/v1/backups", &body);
    assert_eq!(code, 202, "{started}");
    let job = wait_job(&d, started["job"].as_u64().unwrap());
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("403"), "{job}");
    drop(d);
    let settings = format!(
        r#""azure":{{"account":"{DEV_ACCOUNT}","key":"{DEV_ACCOUNT_KEY}","endpoint":"{endpoint}"}}"#
    );
    full_then_incremental("az://daemon-backups/site/a", &settings, &dest);
}

/// `ca_file` through the daemon: the request body names a CA file on the daemon's host, and
/// the daemon's own S3 client trusts that CA (and only it) for the job's connections.
#[test]
fn backup_jobs_to_s3_over_tls_through_the_daemon() {
    const KEY: &str = "mantis-daemon-tls-key";
    const SECRET: &str = "mantis-daemon-tls-secret";
    let pki = pki::pki();
    let weed = servers::Weed::start_tls(
        KEY,
        SECRET,
        servers::TlsFiles {
            cert: &pki.cert_file,
            key: &pki.key_file,
        },
    );
    let endpoint = weed.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let mut cfg = S3Config::new(&endpoint, KEY, SECRET);
    cfg.bucket = "daemon-tls".into();
    cfg.prefix = "site/a".into();
    cfg.ca_file = Some(pki.ca_file.clone());
    let dest = S3::new(cfg).unwrap();
    servers::create_bucket_when_up(&dest);
    let settings = |ca: &std::path::Path| {
        format!(
            r#""s3":{{"endpoint":"{endpoint}","access_key":"{KEY}","secret_key":"{SECRET}","ca_file":"{}"}}"#,
            ca.display()
        )
    };
    // A CA that did not sign the server's certificate: the job fails, saying why, and
    // nothing is stored.
    let d = Daemon::start(Options::default());
    put_keys(&d, "one", 0..10);
    let body = format!(
        r#"{{"to":"s3://daemon-tls/site/a","kind":"full",{}}}"#,
        settings(&pki.rogue_ca_file)
    );
    let (code, started) = json(&d, "POST", "/api/v1/backups", &body);
    assert_eq!(code, 202, "{started}");
    let job = wait_job(&d, started["job"].as_u64().unwrap());
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("tls") && error.contains("certificate"),
        "{job}"
    );
    assert!(mantis_backup::list_backups(&dest).unwrap().is_empty());
    drop(d);
    full_then_incremental("s3://daemon-tls/site/a", &settings(&pki.ca_file), &dest);
}
