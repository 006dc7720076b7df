//! Interference: foreground latency while background flushes and compactions run, against
//! the same load with the background idle.
//!
//! mantisd has no admin call that starts a compaction (appliance/src/http serves kv, health and
//! metrics only), and compaction of a few small segments finishes in well under a second, so a
//! "write a lot, stop, then measure" window catches none of it (tried: zero compactions in the
//! window). Compaction is therefore driven by load volume, and the same load runs on two fresh
//! mantisd instances, interleaved per round: both get the foreground (YCSB B, open loop) plus a
//! background writer overwriting keys with 4 KiB values at a fixed rate; one has a 1 MiB
//! memtable, so that writer causes flushes every second or so and a compaction every few
//! flushes during the window, the other keeps the default 64 MiB memtable, which the window's
//! writes do not fill, so nothing flushes or compacts. `mantis_flushes_total` and
//! `mantis_compactions_total` are sampled during every window to show which was which.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::driver::Endpoint;
use crate::error::BenchError;
use crate::harness::{us_cell, TargetRun};
use crate::hist::LatencySummary;
use crate::runner::{self, RunConfig};
use crate::servers::{metric_sum, ServerGuard};
use crate::workload::{Workload, WorkloadSpec};

/// Background counters are sampled this often during a window.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Serialize)]
pub struct InterferenceConfig {
    /// Memtable of the busy instance (the idle one keeps the default).
    pub memtable_bytes: usize,
    pub bulk_value_bytes: usize,
    pub bulk_connections: usize,
    /// Background writes per second, the same on both instances.
    pub bulk_rate_per_sec: f64,
    /// The foreground: workload, rate, connections, duration.
    pub foreground: RunConfig,
    pub rounds: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowFigures {
    pub latency: LatencySummary,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub compactions: f64,
    pub flushes: f64,
    /// Seconds into the window of the last compaction that finished in it (0: none).
    pub last_compaction_at_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InterferenceRound {
    pub round: usize,
    pub bulk_ops_per_sec: f64,
    pub busy: WindowFigures,
    pub idle: WindowFigures,
    /// Busy p99 / idle p99.
    pub p99_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InterferenceFigures {
    pub config: InterferenceConfig,
    pub rounds: Vec<InterferenceRound>,
    pub how: String,
}

/// Samples two mantisd counters on a helper thread until dropped.
struct CounterSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<(f64, f64, f64)>>>,
}

impl CounterSampler {
    fn start(server: &ServerGuard) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let http = server.http_addr;
        let stop_c = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            while !stop_c.load(Ordering::Relaxed) {
                if let Some(text) = http.and_then(|a| crate::servers::http_get(a, "/metrics")) {
                    samples.push((
                        started.elapsed().as_secs_f64(),
                        metric_sum(&text, "mantis_compactions_total"),
                        metric_sum(&text, "mantis_flushes_total"),
                    ));
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        });
        CounterSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// (compactions, flushes, last compaction time) over the sampled span.
    fn finish(mut self) -> (f64, f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return (0.0, 0.0, 0.0);
        };
        let last_compaction = samples
            .windows(2)
            .filter(|w| w[1].1 > w[0].1)
            .map(|w| w[1].0)
            .fold(0.0, f64::max);
        (last.1 - first.1, last.2 - first.2, last_compaction)
    }
}

impl Drop for CounterSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn window(
    server: &ServerGuard,
    cfg: &RunConfig,
    label: &str,
) -> Result<(WindowFigures, crate::recorder::Recorded), BenchError> {
    let sampler = CounterSampler::start(server);
    let recorded = runner::run(&Endpoint::Resp(server.resp_addr), cfg, label, true)?;
    let (compactions, flushes, last_compaction_at_s) = sampler.finish();
    Ok((
        WindowFigures {
            latency: recorded.all,
            ops_per_sec: recorded.ops_per_sec,
            errors: recorded.errors,
            compactions,
            flushes,
            last_compaction_at_s,
        },
        recorded,
    ))
}

/// The background writer of a window: open loop at the configured rate, a little longer than
/// the foreground window so that it covers all of it.
fn bulk_config(cfg: &InterferenceConfig) -> RunConfig {
    let fg = &cfg.foreground;
    RunConfig {
        spec: WorkloadSpec {
            workload: Workload::Write,
            distribution: Workload::Write.default_distribution(),
            value_bytes: cfg.bulk_value_bytes,
            ..fg.spec.clone()
        },
        connections: cfg.bulk_connections,
        rate_per_sec: Some(cfg.bulk_rate_per_sec),
        pipeline: 1,
        warmup_s: 0.0,
        duration_s: fg.warmup_s + fg.duration_s + 1.0,
        seed: fg.seed ^ 0xb01c,
        ..fg.clone()
    }
}

/// One window on `server`: the background writer on its own thread, the foreground here.
fn window_with_writer(
    server: &ServerGuard,
    cfg: &InterferenceConfig,
    label: &str,
) -> Result<(WindowFigures, crate::recorder::Recorded, f64), BenchError> {
    let bulk = bulk_config(cfg);
    let endpoint = Endpoint::Resp(server.resp_addr);
    let writer =
        std::thread::spawn(move || runner::run(&endpoint, &bulk, "background writer", false));
    let fg = window(server, &cfg.foreground, label);
    let bulk_result = writer.join().map_err(|_| BenchError::Server {
        name: server.name.clone(),
        reason: "the background writer thread panicked".into(),
    })?;
    let (w, rec) = fg?;
    Ok((w, rec, bulk_result?.ops_per_sec))
}

/// Runs the scenario on `busy` (small memtable) and `idle` (default memtable), both loaded,
/// interleaved per round; returns the figures and the runs (for the run table and the plots).
pub fn run(
    busy: &ServerGuard,
    idle: &ServerGuard,
    cfg: &InterferenceConfig,
) -> Result<(InterferenceFigures, Vec<TargetRun>), BenchError> {
    let mut rounds = Vec::new();
    let mut runs = Vec::new();
    let fg = &cfg.foreground;
    for round in 1..=cfg.rounds {
        let (busy_w, busy_rec, bulk_busy) = window_with_writer(busy, cfg, "interference: busy")?;
        let (idle_w, idle_rec, bulk_idle) = window_with_writer(idle, cfg, "interference: idle")?;
        for (name, server, rec, w, bulk) in [
            ("compaction running", busy, busy_rec, &busy_w, bulk_busy),
            ("background idle", idle, idle_rec, &idle_w, bulk_idle),
        ] {
            runs.push(TargetRun {
                round,
                scenario: format!("interference, {name}"),
                target: server.name.clone(),
                mode: fg.mode(),
                config: fg.clone(),
                result: rec,
                note: Some(format!(
                    "{} compactions, {} flushes finished in the window; background writer {bulk:.0} writes/s",
                    w.compactions, w.flushes
                )),
            });
        }
        rounds.push(InterferenceRound {
            round,
            bulk_ops_per_sec: bulk_busy,
            p99_ratio: busy_w.latency.p99_us / idle_w.latency.p99_us.max(1e-9),
            busy: busy_w,
            idle: idle_w,
        });
    }
    let how = format!(
        "two fresh mantisd, interleaved per round, each with the foreground plus a background writer of {:.0} writes/s × {} B ({} connections, open loop); busy: --memtable-bytes-max {} (flushes and compactions during the window), idle: default 64 MiB memtable (none); mantisd has no admin call that starts a compaction",
        cfg.bulk_rate_per_sec, cfg.bulk_value_bytes, cfg.bulk_connections, cfg.memtable_bytes
    );
    Ok((
        InterferenceFigures {
            config: cfg.clone(),
            rounds,
            how,
        },
        runs,
    ))
}

pub fn markdown(i: &InterferenceFigures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Interference ({}, {}): {}.\n",
        i.config.foreground.spec.workload.name(),
        i.config.foreground.mode(),
        i.how
    );
    out.push_str("| round | window | ops/s | p50 | p99 | p99.9 | max | compactions in window | last one at | busy p99 / idle p99 |\n");
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &i.rounds {
        for (name, w, ratio) in [
            (
                "compaction running",
                &r.busy,
                format!("{:.2}×", r.p99_ratio),
            ),
            ("background idle", &r.idle, String::new()),
        ] {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} s | {} |",
                r.round,
                name,
                w.ops_per_sec,
                us_cell(w.latency.p50_us),
                us_cell(w.latency.p99_us),
                us_cell(w.latency.p999_us),
                us_cell(w.latency.max_us),
                w.compactions,
                w.last_compaction_at_s,
                ratio
            );
        }
    }
    out
}
