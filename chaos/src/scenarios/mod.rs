//! The scenarios, each reproducible from its seed. Shared helpers: throwaway directories, the
//! verify step, and the crash loop used by several scenarios.

pub mod bank;
pub mod bank_clients;
pub mod client;
pub mod concurrent;
pub mod corrupt;
pub mod crash;
pub mod diskfull;
pub mod edge;
pub mod iofault;
pub mod memory;
pub mod torn;
pub mod walfile;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::{Daemon, Start};
use crate::error::{io_err, ChaosError, Result};
use crate::model::Loss;
use crate::report::ScenarioReport;
use crate::resp::Client;
use crate::workload::Shared;

/// A verify reads at most this many keys from SCAN before calling the result wrong.
pub const SCAN_KEYS_MAX: usize = 1_000_000;
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Ctx {
    pub mantisd: PathBuf,
    /// Parent of the throwaway data directories (must be a real filesystem: /var/tmp).
    pub work_dir: PathBuf,
    pub keep: bool,
}

/// A fresh directory for one scenario, removed on drop unless `keep`.
pub struct Scratch {
    pub path: PathBuf,
    keep: bool,
}

impl Scratch {
    pub fn new(ctx: &Ctx, name: &str, seed: u64) -> Result<Scratch> {
        let path = ctx
            .work_dir
            .join(format!("mantis-chaos-{}-{name}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        Ok(Scratch {
            path,
            keep: ctx.keep,
        })
    }

    pub fn data(&self) -> PathBuf {
        self.path.join("data")
    }

    pub fn run(&self) -> PathBuf {
        self.path.join("run")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Reads everything back, checks it against the model and adds the verdict to the report.
/// Returns false when the daemon could not be read at all (recorded as a failure).
pub fn verify(d: &Daemon, shared: &Arc<Shared>, loss: Loss, rep: &mut ScenarioReport) -> bool {
    let keys = shared.model().tracked_keys();
    let res = Client::connect(d.resp, CLIENT_TIMEOUT)
        .and_then(|mut c| crate::model::read_back(&mut c, &keys, SCAN_KEYS_MAX));
    match res {
        Ok((observed, all, _)) => {
            if all.is_none() {
                rep.verdict.read_errors += 1;
                rep.note("SCAN refused with an error (corruption detected while scanning)");
            }
            let all = all.unwrap_or_default();
            let v = shared.model().check(&observed, &all, loss, rep.seed);
            for m in &v.messages {
                eprintln!("[{} seed {}] {m}", rep.scenario, rep.seed);
            }
            rep.verdict.absorb(&v);
            true
        }
        Err(e) => {
            rep.fail(format!("verify read-back failed: {e}"));
            false
        }
    }
}

/// Waits until the daemon has no client connection open (so commands a reset client left
/// behind have run), polling /metrics with a deadline.
pub fn wait_connections_closed(d: &Daemon, rep: &mut ScenarioReport) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let resp_open = d.http_get("/metrics").map(|(_, body)| {
            body.lines()
                .filter(|l| {
                    l.starts_with("mantis_connections_open{") && l.contains("protocol=\"resp\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        });
        match resp_open {
            Ok(0.0) => return,
            Ok(_) | Err(_) if std::time::Instant::now() > deadline => {
                rep.fail("connections still open 30 s after their clients reset them");
                return;
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Starts the daemon. A start that hangs (no READY within the start timeout, the process still
/// up) is a failure of the run, but the run goes on: the hung process is killed and the start
/// retried once, so one hang does not hide what the remaining iterations would show.
pub fn start(d: &mut Daemon, rep: &mut ScenarioReport) -> Result<Start> {
    match d.start() {
        Err(ChaosError::NotReady {
            waited_ms,
            log_tail,
            ..
        }) => {
            rep.recovery_hangs += 1;
            let tail: Vec<&str> = log_tail.lines().rev().take(3).collect();
            rep.fail(format!(
                "start hung: no READY within {waited_ms} ms, process still up (pid {:?}); last log lines: {}",
                d.pid(),
                tail.join(" | ")
            ));
            d.kill()?;
            d.start()
        }
        other => other,
    }
}

/// [`start`], insisting on ready; the recovery time goes into the report.
pub fn start_ready(d: &mut Daemon, rep: &mut ScenarioReport) -> Result<()> {
    match start(d, rep)? {
        Start::Ready { recovery } => {
            rep.recovery_ms.push(ms(recovery));
            Ok(())
        }
        Start::Refused { status, log_tail } => Err(ChaosError::ExitedEarly {
            seed: d.cfg.seed,
            status,
            log_tail,
        }),
    }
}

/// Polls `done` until it holds or `timeout` passes; returns whether it held. For events that
/// have no notification of their own (a counter of the load reaching a value).
pub fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Copies the model's counters into the report.
pub fn count_writes(shared: &Shared, rep: &mut ScenarioReport) {
    let m = shared.model();
    rep.writes_attempted = m.writes_attempted;
    rep.writes_acknowledged = m.writes_acked;
    rep.writes_refused = m.writes_refused;
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Files under `dir` (recursively) whose name satisfies `pred`, sorted.
pub fn files_matching(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if pred(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
