//! The result of a workload run or a compare: the JSON record, the terminal table and the
//! Markdown report, all from the same structures.

use std::fmt::Write as _;

use serde::Serialize;

use crate::disk::DiskFigures;
use crate::hist::LatencySummary;
use crate::machine::MachineInfo;
use crate::recorder::Recorded;
use crate::report::TargetCheck;
use crate::runner::RunConfig;

/// One workload run against one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRun {
    pub round: usize,
    /// Which comparison this run belongs to, e.g. "ycsb-a closed".
    pub scenario: String,
    pub target: String,
    pub mode: String,
    pub config: RunConfig,
    pub result: Recorded,
    /// Anything the run needs read with (e.g. compactions finished during the window).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    pub settings: String,
}

/// mantisd / peer for one scenario and round.
#[derive(Debug, Clone, Serialize)]
pub struct RatioRow {
    pub scenario: String,
    pub peer: String,
    pub round: usize,
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// Load average (1, 5, 15 min) from /proc/loadavg: the machine is shared, so every report says
/// how busy it was.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct HarnessReport {
    /// "run" or "compare".
    pub kind: &'static str,
    pub command: String,
    pub machine: MachineInfo,
    pub load_average_start: [f64; 3],
    pub load_average_end: [f64; 3],
    pub seed: u64,
    pub servers: Vec<ServerInfo>,
    /// Raw-device probe of the data directory's disk (compare: before the runs).
    pub disk: Option<DiskFigures>,
    pub runs: Vec<TargetRun>,
    pub ratios: Vec<RatioRow>,
    pub interference: Option<crate::interference::InterferenceFigures>,
    pub targets: Vec<TargetCheck>,
    /// Plot files written, relative to the report.
    pub plots: Vec<String>,
}

fn summary_cells(s: &LatencySummary) -> [f64; 6] {
    [
        s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.p9999_us, s.max_us,
    ]
}

/// The terminal table: one row per run, one sub-row per operation kind when there are several.
pub fn runs_text(runs: &[TargetRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<3} {:<22} {:<16} {:<26} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "rnd",
        "scenario",
        "target",
        "mode",
        "ops/s",
        "p50 µs",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max",
        "errors"
    );
    for r in runs {
        let row = |out: &mut String,
                   name: &str,
                   mode: &str,
                   tput: f64,
                   s: &LatencySummary,
                   errors: u64| {
            let c = summary_cells(s);
            let _ = writeln!(
                out,
                "{:<3} {:<22} {:<16} {:<26} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6}",
                r.round, name, r.target, mode, tput, c[0], c[1], c[2], c[3], c[4], c[5], errors
            );
        };
        row(
            &mut out,
            &r.scenario,
            &r.mode,
            r.result.ops_per_sec,
            &r.result.all,
            r.result.errors,
        );
        if r.result.per_op.len() > 1 {
            for op in &r.result.per_op {
                row(
                    &mut out,
                    &format!("  {}", op.op),
                    "",
                    op.ops_per_sec,
                    &op.latency,
                    op.errors,
                );
            }
        }
        if let Some(note) = &r.note {
            let _ = writeln!(out, "    note: {note}");
        }
    }
    out
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A latency in µs for a Markdown cell: one decimal below 100 µs, whole µs above.
pub fn us_cell(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        thousands(us)
    }
}

/// The Markdown table of runs (µs).
pub fn runs_markdown(runs: &[TargetRun]) -> String {
    let mut out = String::new();
    out.push_str("| round | scenario | target | mode | ops/s | p50 | p90 | p99 | p99.9 | p99.99 | max | errors |\n");
    out.push_str("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in runs {
        let c = summary_cells(&r.result.all);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.round,
            r.scenario,
            r.target,
            r.mode,
            thousands(r.result.ops_per_sec),
            us_cell(c[0]),
            us_cell(c[1]),
            us_cell(c[2]),
            us_cell(c[3]),
            us_cell(c[4]),
            us_cell(c[5]),
            r.result.errors
        );
    }
    out
}

pub fn ratios_text(rows: &[RatioRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<16} {:>5} {:>11} {:>9} {:>9} {:>9}",
        "mantisd / peer", "peer", "round", "throughput", "p50", "p99", "p99.9"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:>5} {:>10.2}× {:>8.2}× {:>8.2}× {:>8.2}×",
            r.scenario, r.peer, r.round, r.throughput, r.p50, r.p99, r.p999
        );
    }
    out
}

pub fn ratios_markdown(rows: &[RatioRow]) -> String {
    let mut out = String::from("| scenario | peer | round | throughput | p50 | p99 | p99.9 |\n|---|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            r.scenario, r.peer, r.round, r.throughput, r.p50, r.p99, r.p999
        );
    }
    out
}

pub fn targets_markdown(targets: &[TargetCheck]) -> String {
    let mut out =
        String::from("| goal | measured | limit | result | rule |\n|---|---:|---:|---|---|\n");
    for t in targets {
        let _ = writeln!(
            out,
            "| {} | {:.2} {} | {} {:.2} {} | {} | {} |",
            t.name,
            t.measured,
            t.unit,
            if t.at_most { "≤" } else { "≥" },
            t.limit,
            t.unit,
            if t.pass { "**PASS**" } else { "**MISS**" },
            t.rule
        );
    }
    out
}

fn disk_markdown(d: &DiskFigures) -> String {
    let mut out = String::from("| raw device (µs) | p50 | p90 | p99 | p99.9 | max | n |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (name, s) in [
        ("4 KiB O_DIRECT write + fdatasync, QD1", &d.write_fdatasync),
        ("  of which fdatasync", &d.fdatasync_only),
        ("4 KiB O_DIRECT random read, QD1", &d.random_read),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            us_cell(s.p50_us),
            us_cell(s.p90_us),
            us_cell(s.p99_us),
            us_cell(s.p999_us),
            us_cell(s.max_us),
            s.count
        );
    }
    out
}

/// The whole Markdown report: commands, machine, raw device, tables, goals, plots.
pub fn markdown(r: &HarnessReport) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "### mantis-bench {} — {}\n", r.kind, m.date_utc);
    let _ = writeln!(out, "Command: `{}`\n", r.command);
    let _ = writeln!(
        out,
        "Machine: {} · {} allowed / {} online CPUs · {:.1} GiB · {} · data dir `{}` ({}) · built from {}{} · seed {} · load average {:.2} / {:.2} / {:.2} at the start, {:.2} / {:.2} / {:.2} at the end.\n",
        m.cpu_model,
        m.cores_allowed,
        m.cores_online,
        m.memory_total_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.data_dir,
        m.data_dir_fs_type,
        m.build_commit,
        if m.build_dirty { " (dirty)" } else { "" },
        r.seed,
        r.load_average_start[0],
        r.load_average_start[1],
        r.load_average_start[2],
        r.load_average_end[0],
        r.load_average_end[1],
        r.load_average_end[2],
    );
    if !r.servers.is_empty() {
        out.push_str("Servers:\n\n");
        for s in &r.servers {
            let _ = writeln!(out, "- `{}`: {} — {}", s.name, s.version, s.settings);
        }
        out.push('\n');
    }
    if let Some(d) = &r.disk {
        out.push_str(&disk_markdown(d));
        out.push('\n');
    }
    if !r.targets.is_empty() {
        out.push_str("Goals (issue 4), from this run:\n\n");
        out.push_str(&targets_markdown(&r.targets));
        out.push('\n');
    }
    if !r.ratios.is_empty() {
        out.push_str("Ratios mantisd / peer (throughput: higher is better for mantisd; latency: lower is better):\n\n");
        out.push_str(&ratios_markdown(&r.ratios));
        out.push('\n');
    }
    if let Some(i) = &r.interference {
        out.push_str(&crate::interference::markdown(i));
        out.push('\n');
    }
    out.push_str("All runs (latency in µs, charged from the intended send time in open loop):\n\n");
    out.push_str(&runs_markdown(&r.runs));
    out.push('\n');
    for p in &r.plots {
        let _ = writeln!(out, "![{p}]({p})\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keydist::Distribution;
    use crate::recorder::{Outcome, Recorder};
    use crate::workload::{OpKind, Workload, WorkloadSpec};
    use std::time::{Duration, Instant};

    fn sample_run() -> TargetRun {
        let start = Instant::now();
        let mut rec = Recorder::new(start, Duration::from_secs(1));
        for i in 0..1000u64 {
            let t = start + Duration::from_micros(i * 100);
            rec.record(
                OpKind::Read,
                t,
                t,
                t + Duration::from_micros(50 + i),
                &Outcome::Ok,
            );
            rec.record(
                OpKind::Update,
                t,
                t,
                t + Duration::from_micros(500),
                &Outcome::Ok,
            );
        }
        TargetRun {
            round: 1,
            scenario: "ycsb-a closed".into(),
            target: "mantisd-resp".into(),
            mode: "closed, 50 conns".into(),
            config: RunConfig {
                spec: WorkloadSpec {
                    workload: Workload::A,
                    distribution: Distribution::Zipfian,
                    key_count: 10,
                    record_count: 10,
                    value_bytes: 100,
                },
                connections: 50,
                threads: 2,
                pipeline: 1,
                rate_per_sec: None,
                warmup_s: 0.0,
                duration_s: 1.0,
                interval_s: 1.0,
                seed: 1,
            },
            result: rec.finish(1.0),
            note: None,
        }
    }

    #[test]
    fn tables_carry_every_percentile_and_the_ops() {
        let run = sample_run();
        let text = runs_text(std::slice::from_ref(&run));
        assert!(
            text.contains("p99.99") && text.contains("mantisd-resp"),
            "{text}"
        );
        assert!(
            text.contains("  read") && text.contains("  update"),
            "{text}"
        );
        let md = runs_markdown(&[run]);
        let row = md.lines().nth(2).unwrap();
        assert!(
            row.starts_with("| 1 | ycsb-a closed | mantisd-resp |"),
            "{row}"
        );
        assert_eq!(row.matches('|').count(), 13, "{row}");
        assert!(row.contains("| 2,000 |"), "{row}");
    }

    #[test]
    fn report_names_machine_load_goals_and_plots() {
        let machine = MachineInfo::collect(std::path::Path::new("/var/tmp"));
        let report = HarnessReport {
            kind: "compare",
            command: "mantis-bench compare".into(),
            machine,
            load_average_start: [1.0, 2.0, 3.0],
            load_average_end: load_average(),
            seed: 42,
            servers: vec![ServerInfo {
                name: "redis-always".into(),
                version: "v=7".into(),
                settings: "appendfsync always".into(),
            }],
            disk: None,
            runs: vec![sample_run()],
            ratios: vec![RatioRow {
                scenario: "write-only closed".into(),
                peer: "redis-always".into(),
                round: 1,
                throughput: 1.5,
                p50: 0.5,
                p99: 1.0,
                p999: 2.0,
            }],
            interference: None,
            targets: vec![TargetCheck::at_least(
                "durable SET ≥ 3 × redis-always",
                1.5,
                3.0,
                "×",
                "same run".into(),
            )],
            plots: vec!["img/a.svg".into()],
        };
        let md = markdown(&report);
        for needle in [
            "seed 42",
            "load average 1.00 / 2.00 / 3.00",
            "`redis-always`",
            "| write-only closed | redis-always | 1 | 1.50× |",
            "**MISS**",
            "![img/a.svg](img/a.svg)",
            "| 1 | ycsb-a closed |",
            "/var/tmp",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["runs"][0]["result"]["ops"], 2000);
        assert!(json["machine"]["cpu_model"].is_string());
        assert!(
            json["runs"][0]["result"]["spectrum"]
                .as_array()
                .unwrap()
                .len()
                > 10
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(us_cell(12.34), "12.3");
        assert_eq!(us_cell(4321.0), "4,321");
    }
}
