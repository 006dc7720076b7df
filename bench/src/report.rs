//! Output of a run: a plain-text table for the terminal and a JSON file for the record.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::disk::DiskFigures;
use crate::engine::EngineFigures;
use crate::error::BenchError;
use crate::hist::LatencySummary;
use crate::machine::MachineInfo;

/// One target of the issue, checked against a figure of the same run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub name: String,
    /// The measured figure, in `unit`.
    pub measured: f64,
    /// The bound it must meet, in `unit`, already scaled by the same-run raw figure.
    pub limit: f64,
    pub unit: String,
    /// How the limit was derived, e.g. "1.3 × raw write+fdatasync p50 (812 µs)".
    pub rule: String,
    /// true when the measured figure must be at most the limit; false for "at least".
    pub at_most: bool,
    pub pass: bool,
}

impl TargetCheck {
    pub fn at_most(name: &str, measured: f64, limit: f64, unit: &str, rule: String) -> Self {
        TargetCheck {
            name: name.to_string(),
            measured,
            limit,
            unit: unit.to_string(),
            rule,
            at_most: true,
            pass: measured <= limit,
        }
    }

    pub fn at_least(name: &str, measured: f64, limit: f64, unit: &str, rule: String) -> Self {
        TargetCheck {
            name: name.to_string(),
            measured,
            limit,
            unit: unit.to_string(),
            rule,
            at_most: false,
            pass: measured >= limit,
        }
    }
}

/// The whole result file.
#[derive(Debug, Serialize)]
pub struct RunReport<E: Serialize> {
    pub kind: &'static str,
    pub command: String,
    pub machine: MachineInfo,
    /// Raw disk figures measured before the engine phases.
    pub disk: DiskFigures,
    /// Raw disk figures measured again after the engine phases, when asked for: the spread
    /// between the two shows how much the disk moved during the run.
    pub disk_after: Option<DiskFigures>,
    pub engine: Option<E>,
    pub targets: Vec<TargetCheck>,
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BenchError> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").map_err(|source| BenchError::ResultFile {
        path: path.to_path_buf(),
        source,
    })
}

/// A latency row: name, then p50 / p90 / p99 / p99.9 / max in µs, then the sample count.
pub fn latency_row(out: &mut String, name: &str, s: &LatencySummary) {
    let _ = writeln!(
        out,
        "{name:<44} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9}",
        s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us, s.count
    );
}

pub fn latency_header(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "{title:<44} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "n"
    );
}

pub fn machine_text(m: &MachineInfo) -> String {
    format!(
        "machine: {} · {} allowed / {} online CPUs · {:.1} GiB · {} · data dir {} ({}) · {} · built from {}{}\n",
        m.cpu_model,
        m.cores_allowed,
        m.cores_online,
        m.memory_total_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.data_dir,
        m.data_dir_fs_type,
        m.date_utc,
        m.build_commit,
        if m.build_dirty {
            " (engine/bench dirty)"
        } else {
            ""
        },
    )
}

pub fn disk_text(label: &str, d: &DiskFigures) -> String {
    let mut out = String::new();
    latency_header(&mut out, &format!("raw disk ({label})"));
    latency_row(
        &mut out,
        "4 KiB O_DIRECT write + fdatasync, QD1",
        &d.write_fdatasync,
    );
    latency_row(&mut out, "  of which write", &d.write_only);
    latency_row(&mut out, "  of which fdatasync", &d.fdatasync_only);
    latency_row(
        &mut out,
        &format!(
            "4 KiB O_DIRECT random read, QD1 ({} MiB)",
            d.read_file_bytes >> 20
        ),
        &d.random_read,
    );
    let _ = writeln!(
        out,
        "write+fdatasync {:.0} ops/s · random read {:.0} ops/s",
        d.write_fdatasync_ops_per_sec, d.random_read_ops_per_sec
    );
    out
}

pub fn targets_text(targets: &[TargetCheck]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:>14} {:>14}  {:<6} rule",
        "target", "measured", "limit", "result"
    );
    for t in targets {
        let _ = writeln!(
            out,
            "{:<40} {:>14} {:>14}  {:<6} {}",
            t.name,
            format!("{:.1} {}", t.measured, t.unit),
            format!(
                "{} {:.1} {}",
                if t.at_most { "≤" } else { "≥" },
                t.limit,
                t.unit
            ),
            if t.pass { "PASS" } else { "MISS" },
            t.rule
        );
    }
    out
}

pub fn engine_text(e: &EngineFigures) -> String {
    let mut out = String::new();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    latency_header(&mut out, &format!("engine ({} shards)", e.shards));
    let sw = &e.single_writer;
    latency_row(&mut out, "durable put, 1 writer (on shard)", &sw.put);
    latency_row(
        &mut out,
        "  raw write+fdatasync, interleaved",
        &sw.raw_write_fdatasync,
    );
    let c = &e.concurrent;
    latency_row(
        &mut out,
        &format!("durable put, {} writers/shard", c.writers_per_shard),
        &c.put,
    );
    latency_row(&mut out, "cached get (on shard)", &e.cached_get.on_shard);
    latency_row(
        &mut out,
        "cached get (outside thread)",
        &e.cached_get.outside_thread,
    );
    let u = &e.uncached_get;
    latency_row(&mut out, &format!("uncached get ({} keys)", u.keys), &u.get);
    latency_row(
        &mut out,
        "  raw 4 KiB random read, interleaved",
        &u.raw_random_read,
    );
    let _ = writeln!(
        out,
        "1 writer {:.0} puts/s · {} writers/shard {:.0} puts/s ({:.1}×; per shard {}) · {:.1} records per WAL sync",
        sw.put_ops_per_sec,
        c.writers_per_shard,
        c.ops_per_sec,
        c.ops_per_sec / sw.put_ops_per_sec.max(1e-9),
        c.ops_per_sec_per_shard
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join("/"),
        c.records_per_sync
    );
    let _ = writeln!(
        out,
        "cached gets: {} hits / {} misses · uncached gets: {} hits / {} misses",
        e.cached_get.cache_hits, e.cached_get.cache_misses, u.cache_hits, u.cache_misses
    );
    let m = &e.memory;
    let _ = writeln!(
        out,
        "load {} keys × {} B in {:.1} s ({:.0} keys/s) · budget {:.0} MiB · VmRSS before the engine {:.0} MiB",
        e.load.keys,
        e.load.value_bytes,
        e.load.seconds,
        e.load.keys_per_sec,
        mib(m.budget_bytes),
        mib(m.baseline.vm_rss_bytes),
    );
    for p in &m.points {
        let _ = writeln!(
            out,
            "  {:<17} VmRSS {:>5.0} MiB · heap in use {:>5.0} MiB, free {:>5.0} MiB · memtables {:>4.0} MiB · cache {:>3.0} MiB · {} segments, {:.0} MiB on disk",
            p.label,
            mib(p.memory.vm_rss_bytes),
            mib(p.memory.heap_in_use_bytes),
            mib(p.memory.heap_free_bytes),
            mib(p.stats.memtable_bytes),
            mib(p.stats.cache_bytes),
            p.stats.segments,
            mib(p.stats.segment_bytes)
        );
    }
    let _ = writeln!(
        out,
        "  while loading: VmRSS max {:.0} MiB, heap in use max {:.0} MiB · at rest after {:.0} s{} · after malloc_trim: VmRSS {:.0} MiB, heap in use {:.0} MiB",
        mib(e.load.vm_rss_max_bytes),
        mib(e.load.heap_in_use_max_bytes),
        m.settled.waited_s,
        if m.settled.settled { "" } else { " (NOT settled)" },
        mib(m.after_trim.vm_rss_bytes),
        mib(m.after_trim.heap_in_use_bytes),
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn targets_pass_and_miss_by_direction() {
        assert!(TargetCheck::at_most("a", 1.0, 2.0, "µs", String::new()).pass);
        assert!(!TargetCheck::at_most("a", 3.0, 2.0, "µs", String::new()).pass);
        assert!(TargetCheck::at_least("b", 30.0, 20.0, "x", String::new()).pass);
        assert!(!TargetCheck::at_least("b", 10.0, 20.0, "x", String::new()).pass);
        let text = targets_text(&[TargetCheck::at_least("b", 10.0, 20.0, "x", "r".into())]);
        assert!(text.contains("MISS") && text.contains("≥ 20.0 x"), "{text}");
    }
}
