//! A short redis-benchmark run (the CI version of the benchmark in docs/benchmarks.md): every
//! request must be answered without an error reply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, Daemon, Options};

#[test]
fn redis_benchmark_set_get_incr_mset_without_errors() {
    require_tool("redis-benchmark");
    let d = Daemon::start(Options::default());
    let mut child = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &d.resp.port().to_string()])
        .args([
            "-t",
            "set,get,incr,mset",
            "-n",
            "20000",
            "-c",
            "50",
            "-d",
            "100",
            "--csv",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "redis-benchmark did not finish within 300 s; log:\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // redis-benchmark 7 stops at the first error reply and says "Error from server".
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", d.log());
    assert!(
        !stdout.contains("Error") && !stderr.contains("Error"),
        "{stdout}\n{stderr}"
    );
    for test in ["SET", "GET", "INCR", "MSET (10 keys)"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .unwrap_or_else(|| panic!("no {test} result in\n{stdout}"));
        let rps: f64 = line
            .split(',')
            .nth(1)
            .unwrap()
            .trim_matches('"')
            .parse()
            .unwrap();
        assert!(rps > 0.0, "{line}");
    }
    // Every SET was acknowledged after its fsync: the WAL saw group commits.
    let m = d.http("GET", "/metrics", &[], b"").text();
    let syncs: u64 = m
        .lines()
        .filter(|l| l.starts_with("mantis_wal_syncs_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let records: u64 = m
        .lines()
        .filter(|l| l.starts_with("mantis_wal_records_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        syncs > 0 && records >= 60_000,
        "syncs {syncs}, records {records}"
    );
}
