//! Issue 10: cron-scheduled backups in a running mantisd: a failing destination raises a
//! warning through the alert channels, the next success resolves it, and the schedule's
//! retention rule (keep_last = 2) prunes the destination after each backup.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, Daemon, Options};
use mantis_backup::{list_backups, LocalDir};
use serde_json::Value;

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["rule"] == "backup_schedule:every-second")
        .collect()
}

fn files_under(path: &Path) -> usize {
    if path.is_file() {
        return 1;
    }
    std::fs::read_dir(path)
        .map(|d| d.map(|e| files_under(&e.unwrap().path())).sum())
        .unwrap_or(0)
}

fn count(events: &[Value], kind: &str, level: &str) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["level"] == level)
        .count()
}

#[test]
fn scheduled_backups_notify_failure_and_recovery_and_apply_retention() {
    let tmp = common::data_tempdir();
    let alerts = tmp.path().join("alerts.jsonl");
    // A regular file where the destination's parent directory should be: backups fail.
    let blocked = tmp.path().join("blocked");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let dest_dir = blocked.join("backups");
    let config = format!(
        "[[monitor.channels]]\nname = \"file\"\nkind = \"file\"\npath = \"{}\"\n\n\
         [[backup_schedule]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nkind = \"full\"\n\
         destination = \"{}\"\nretention = {{ keep_last = 2 }}\nread_rate_bytes_per_sec_max = 0\n",
        alerts.display(),
        dest_dir.display()
    );
    let config_path = tmp.path().join("mantisd.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut d = Daemon::start(Options {
        extra_args: vec!["--config".into(), config_path.display().to_string()],
        ..Options::default()
    });
    assert_eq!(d.cli(&["SET", "k", "v"]), "OK");
    eventually(
        Duration::from_secs(60),
        "a warning for the failed backup",
        || count(&events(&alerts), "fired", "warning") == 1,
    );
    let fired = events(&alerts)
        .into_iter()
        .find(|e| e["kind"] == "fired")
        .unwrap();
    assert!(
        fired["message"].as_str().unwrap().contains("failed"),
        "{fired}"
    );
    // The destination becomes usable: the next run succeeds and resolves the alert.
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir_all(&dest_dir).unwrap();
    eventually(Duration::from_secs(60), "the alert resolved", || {
        let ev = events(&alerts);
        count(&ev, "resolved", "warning") + count(&ev, "resolved", "critical") == 1
    });
    let dest = LocalDir::new(&dest_dir);
    let mut max_seen = 0;
    eventually(
        Duration::from_secs(90),
        "three more successes, two backups kept",
        || {
            let kept = list_backups(&dest).map(|v| v.len()).unwrap_or(0);
            max_seen = max_seen.max(kept);
            count(&events(&alerts), "resolved", "info") >= 3 && kept == 2
        },
    );
    // Between a backup and its retention pass there are three at most, never more.
    assert!(max_seen <= 3, "retention let {max_seen} backups pile up");
    d.stop();
    // LocalDir leaves emptied directories behind: count the backups that still hold files.
    let holding = std::fs::read_dir(&dest_dir)
        .unwrap()
        .filter(|e| files_under(&e.as_ref().unwrap().path()) > 0)
        .count();
    assert!(
        holding <= 3,
        "deleted backups left their objects: {holding} hold files"
    );
    // A malformed schedule stops the daemon at startup, naming the option.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[backup_schedule]]\nname = \"x\"\ncron = \"61 * * * *\"\ndestination = \"/tmp/x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mantisd"))
        .args(["--config", bad.to_str().unwrap(), "--data-dir"])
        .arg(tmp.path().join("bad-data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("backup_schedule"), "{stderr}");
}
