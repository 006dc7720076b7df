//! Interference: foreground latency while background compaction runs, against the same
//! foreground load with the background idle, on one mantisd.
//!
//! mantisd has no admin call that starts a compaction (appliance/src/http has kv, health and
//! metrics only), so compaction is driven by volume: the server runs with a small memtable
//! (`--memtable-bytes-max`), a bulk phase overwrites the loaded keys with large values for a
//! few seconds (dozens of flushes, so compaction has a backlog of small segments to merge), and
//! the foreground window starts the moment the bulk writers stop. The "idle" window runs the
//! same foreground load after `mantis_compactions_total` and `mantis_flushes_total` have not
//! moved for a while. Both counters are sampled during each window, so the report says how much
//! compaction actually overlapped it.

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
/// Background counts as idle after this long without a flush or compaction finishing.
const QUIET: Duration = Duration::from_secs(3);
/// Longest wait for the background to become idle.
const QUIET_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize)]
pub struct InterferenceConfig {
    pub memtable_bytes: usize,
    pub bulk_value_bytes: usize,
    pub bulk_connections: usize,
    pub bulk_s: f64,
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

/// Waits (polling /metrics, bounded) until no flush or compaction finished for [`QUIET`].
fn wait_quiet(server: &ServerGuard) -> Result<f64, BenchError> {
    let started = Instant::now();
    let mut last = (f64::NAN, f64::NAN);
    let mut last_change = Instant::now();
    loop {
        let text = server.metrics().ok_or_else(|| BenchError::Server {
            name: server.name.clone(),
            reason: "/metrics did not answer".into(),
        })?;
        let now = (
            metric_sum(&text, "mantis_compactions_total"),
            metric_sum(&text, "mantis_flushes_total"),
        );
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= QUIET {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() >= QUIET_TIMEOUT || crate::signals::stopped() {
            return Err(BenchError::Server {
                name: server.name.clone(),
                reason: format!("background work did not come to rest within {QUIET_TIMEOUT:?}"),
            });
        }
        std::thread::sleep(SAMPLE_EVERY);
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

/// Runs the scenario on `server` (already loaded); returns the figures and the runs (for the
/// run table and the plots).
pub fn run(
    server: &ServerGuard,
    cfg: &InterferenceConfig,
) -> Result<(InterferenceFigures, Vec<TargetRun>), BenchError> {
    let mut rounds = Vec::new();
    let mut runs = Vec::new();
    let fg = &cfg.foreground;
    for round in 1..=cfg.rounds {
        let bulk = RunConfig {
            spec: WorkloadSpec {
                workload: Workload::Write,
                value_bytes: cfg.bulk_value_bytes,
                ..fg.spec.clone()
            },
            connections: cfg.bulk_connections,
            rate_per_sec: None,
            pipeline: 1,
            warmup_s: 0.0,
            duration_s: cfg.bulk_s,
            ..fg.clone()
        };
        let bulk_result = runner::run(
            &Endpoint::Resp(server.resp_addr),
            &bulk,
            "interference: bulk",
            true,
        )?;
        let (busy, busy_rec) = window(server, fg, "interference: busy")?;
        let waited = wait_quiet(server)?;
        let (idle, idle_rec) = window(server, fg, "interference: idle")?;
        for (name, rec, w) in [
            ("compaction running", busy_rec, &busy),
            ("background idle", idle_rec, &idle),
        ] {
            runs.push(TargetRun {
                round,
                scenario: format!("interference, {name}"),
                target: server.name.clone(),
                mode: fg.mode(),
                config: fg.clone(),
                result: rec,
                note: Some(format!(
                    "{} compactions, {} flushes finished in the window{}",
                    w.compactions,
                    w.flushes,
                    if name == "background idle" {
                        format!(" (after {waited:.0} s waiting for rest)")
                    } else {
                        String::new()
                    }
                )),
            });
        }
        rounds.push(InterferenceRound {
            round,
            bulk_ops_per_sec: bulk_result.ops_per_sec,
            p99_ratio: busy.latency.p99_us / idle.latency.p99_us.max(1e-9),
            busy,
            idle,
        });
    }
    let how = format!(
        "mantisd with --memtable-bytes-max {} (no admin call starts a compaction); each round: {} connections overwrite the loaded keys with {} B values for {:.0} s, then the foreground window starts at once (compaction running); the idle window follows once no flush or compaction finished for {} s",
        cfg.memtable_bytes,
        cfg.bulk_connections,
        cfg.bulk_value_bytes,
        cfg.bulk_s,
        QUIET.as_secs()
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
