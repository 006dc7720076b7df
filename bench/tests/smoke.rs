//! CI smoke run of the harness: a few seconds per target (engine in-process, mantisd over RESP
//! and HTTP, Redis over RESP), through the real binary, asserting that the JSON result file is
//! complete and sane: operations counted, no errors, percentiles ordered, machine recorded.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_mantis-bench");

/// Builds mantisd into the same target directory once (no-op when up to date).
fn mantisd() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "mantisd"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p mantisd failed");
        let bin = Path::new(BENCH).parent().unwrap().join("mantisd");
        assert!(bin.is_file(), "no mantisd at {}", bin.display());
        bin
    })
}

/// Runs `mantis-bench run` with `args` plus short timings; returns the parsed result file.
fn run(args: &[&str]) -> Value {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = dir.path().join("result.json");
    let report = dir.path().join("report.md");
    let output = Command::new(BENCH)
        .arg("run")
        .args(args)
        .args([
            "--record-count",
            "2000",
            "--duration-secs",
            "2",
            "--warmup-secs",
            "0.5",
        ])
        .args(["--connections", "4", "--threads", "2", "--no-progress"])
        .arg("--dir")
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .arg("--plots-dir")
        .arg(dir.path().join("img"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mantis-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("p99.99"), "no table printed:\n{stdout}");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("| round | scenario |") && md.contains(".svg"),
        "{md}"
    );
    let plots: Vec<_> = std::fs::read_dir(dir.path().join("img")).unwrap().collect();
    assert!(!plots.is_empty());
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn assert_ordered(s: &Value) {
    let keys = [
        "min_us", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us",
    ];
    for pair in keys.windows(2) {
        assert!(
            f(s, pair[0]) <= f(s, pair[1]),
            "{} > {} in {s}",
            pair[0],
            pair[1]
        );
    }
    assert!(f(s, "p50_us") > 0.0, "{s}");
}

/// Everything a result file must hold, whatever the target.
fn assert_sane(r: &Value, target: &str, ops: &[&str]) {
    assert_eq!(r["kind"], "run");
    let m = &r["machine"];
    for key in [
        "cpu_model",
        "kernel",
        "data_dir",
        "data_dir_fs_type",
        "build_commit",
        "date_utc",
    ] {
        let v = m[key]
            .as_str()
            .unwrap_or_else(|| panic!("machine.{key} missing: {m}"));
        assert!(!v.is_empty() && v != "unknown", "machine.{key} = {v:?}");
    }
    assert_ne!(m["data_dir_fs_type"], "tmpfs");
    assert!(m["cores_allowed"].as_u64().unwrap() >= 1);
    assert!(r["seed"].is_u64());
    assert_eq!(r["load_average_start"].as_array().unwrap().len(), 3);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["target"], target);
    assert_eq!(run["config"]["connections"], 4);
    let res = &run["result"];
    let total = res["ops"].as_u64().unwrap();
    assert!(total > 0, "no operations: {res}");
    assert_eq!(res["errors"], 0, "errors: {res}");
    assert!(f(res, "ops_per_sec") > 0.0);
    assert_ordered(&res["all"]);
    let per_op = res["per_op"].as_array().unwrap();
    let names: Vec<&str> = per_op.iter().map(|o| o["op"].as_str().unwrap()).collect();
    assert_eq!(names, ops, "operation kinds");
    let mut sum = 0;
    for o in per_op {
        assert_ordered(&o["latency"]);
        assert_ordered(&o["service"]);
        assert_eq!(o["errors"], 0);
        sum += o["count"].as_u64().unwrap();
    }
    assert_eq!(sum, total);
    let timeline = res["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 2, "timeline {timeline:?}");
    let spectrum = res["spectrum"].as_array().unwrap();
    assert!(spectrum.len() > 10);
    for pair in spectrum.windows(2) {
        assert!(f(&pair[0], "latency_us") <= f(&pair[1], "latency_us"));
    }
}

#[test]
fn engine_in_process() {
    let r = run(&["--target", "engine", "--workload", "b"]);
    assert_sane(&r, "engine", &["read", "update"]);
    // Loaded keys only: every read finds its record.
    assert_eq!(r["runs"][0]["result"]["per_op"][0]["misses"], 0);
}

#[test]
fn mantisd_resp_closed_loop_pipelined() {
    let bin = mantisd().to_str().unwrap().to_string();
    let r = run(&[
        "--target",
        "mantisd-resp",
        "--mantisd",
        &bin,
        "--workload",
        "a",
        "--pipeline",
        "4",
    ]);
    assert_sane(&r, "mantisd-resp", &["read", "update"]);
    assert_eq!(r["runs"][0]["config"]["pipeline"], 4);
}

#[test]
fn mantisd_http_read_only() {
    let bin = mantisd().to_str().unwrap().to_string();
    let r = run(&[
        "--target",
        "mantisd-http",
        "--mantisd",
        &bin,
        "--workload",
        "c",
    ]);
    assert_sane(&r, "mantisd-http", &["read"]);
    assert_eq!(r["runs"][0]["result"]["per_op"][0]["misses"], 0);
}

#[test]
fn redis_open_loop_keeps_the_rate() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("redis-server is not installed (.ci/run installs it)");
    }
    let r = run(&[
        "--target",
        "redis",
        "--redis-persistence",
        "none",
        "--workload",
        "a",
        "--rate",
        "500",
    ]);
    assert_sane(&r, "redis-nopersist", &["read", "update"]);
    let res = &r["runs"][0]["result"];
    // 500/s for 2 s: the schedule decides the count, not the server.
    let ops = res["ops"].as_u64().unwrap();
    assert!(
        (950..=1050).contains(&ops),
        "{ops} operations at 500/s for 2 s"
    );
    assert_eq!(r["runs"][0]["config"]["rate_per_sec"], 500.0);
}
