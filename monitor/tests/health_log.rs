#![allow(clippy::unwrap_used)]
//! The health registry's verdicts and log rotation.

use mantis_monitor::health::{CheckResult, CheckSpec, Overall, Registry, Status};
use mantis_monitor::logfile::RotatingFile;
use std::io::Write;

fn spec(name: &str, critical: bool) -> CheckSpec {
    CheckSpec {
        name: name.into(),
        component: "test".into(),
        critical,
        interval_ms: 1_000,
        timeout_ms: 100,
    }
}

fn result(status: Status, at: u64) -> CheckResult {
    CheckResult {
        status,
        detail: String::new(),
        checked_ms: at,
        duration_ms: 1,
    }
}

#[test]
fn critical_failure_is_unhealthy_other_failure_degraded() {
    let mut r = Registry::default();
    r.register(spec("wal", true));
    r.register(spec("backup", false));
    assert_eq!(r.due(0).len(), 2);
    r.record("wal", result(Status::Pass, 0));
    r.record("backup", result(Status::Pass, 0));
    assert_eq!(r.report().status, Overall::Healthy);
    assert!(r.due(500).is_empty());
    assert_eq!(r.due(1_000).len(), 2);
    r.record("backup", result(Status::Fail, 1_000));
    assert_eq!(r.report().status, Overall::Degraded);
    r.record_timeout("wal", 1_000);
    let report = r.report();
    assert_eq!(report.status, Overall::Unhealthy);
    assert_eq!(report.status.as_value(), 2.0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["checks"][0]["detail"], "no answer within 100 ms");
    r.record("wal", result(Status::Pass, 2_000));
    r.record("backup", result(Status::Pass, 2_000));
    assert_eq!(r.report().status, Overall::Healthy);
}

#[test]
fn log_rotates_by_size_and_keeps_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mantisd.log");
    let mut f = RotatingFile::open(&path, 100, 2).unwrap();
    for i in 0..20 {
        writeln!(f, "line {i:02} {}", "x".repeat(30)).unwrap();
    }
    f.flush().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["mantisd.log", "mantisd.log.1", "mantisd.log.2"]);
    for name in &names {
        let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(len <= 100, "{name} is {len} bytes");
    }
    let current = std::fs::read_to_string(&path).unwrap();
    assert!(current.contains("line 19"));
    let oldest = std::fs::read_to_string(dir.path().join("mantisd.log.2")).unwrap();
    assert!(!oldest.contains("line 00"), "beyond the retention count");
}
