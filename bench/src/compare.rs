//! `mantis-bench compare`: mantisd and Redis (appendfsync always, everysec, no persistence)
//! side by side in one run. The harness starts every server itself on throwaway directories
//! and free loopback ports, loads each, then runs every scenario against each server in turn
//! (A B C D, A B C D, …) for several rounds, so that the noisy disk and the other work on the
//! machine hit every server alike. It prints the ratio table mantisd / peer, checks the
//! issue's goals against figures of the same run, and stops every server it started.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::info;

use crate::disk::{self, DiskFigures};
use crate::driver::Endpoint;
use crate::error::BenchError;
use crate::harness::{RatioRow, ServerInfo, TargetRun};
use crate::interference::{self, InterferenceConfig, InterferenceFigures};
use crate::report::TargetCheck;
use crate::runner::{self, RunConfig};
use crate::servers::{self, RedisPersistence, ServerGuard};
use crate::workload::{Workload, WorkloadSpec};

pub const MANTISD: &str = "mantisd";

#[derive(Debug, Clone, Serialize)]
pub struct CompareConfig {
    pub mantisd: PathBuf,
    pub mantisd_args: Vec<String>,
    pub peers: Vec<RedisPersistence>,
    pub rounds: usize,
    pub workloads: Vec<Workload>,
    /// The closed-loop template (connections, threads, durations, record count, seed).
    pub base: RunConfig,
    /// Open loop at this fraction of mantisd's closed-loop throughput of the same round.
    pub open_fraction: f64,
    /// Connections of the low-load durable write (compared with the raw fdatasync).
    pub low_load_connections: usize,
    pub interference: Option<InterferenceConfig>,
    /// Where the raw-device probe runs (the disk the servers' directories are on).
    pub probe_dir: PathBuf,
    pub probe_short: bool,
}

pub struct CompareOutcome {
    pub servers: Vec<ServerInfo>,
    pub disk: DiskFigures,
    pub runs: Vec<TargetRun>,
    pub ratios: Vec<RatioRow>,
    pub interference: Option<InterferenceFigures>,
    pub targets: Vec<TargetCheck>,
}

fn server_info(g: &ServerGuard, settings: &str) -> ServerInfo {
    ServerInfo {
        name: g.name.clone(),
        version: g.version.clone(),
        settings: settings.to_string(),
    }
}

fn run_one(
    runs: &mut Vec<TargetRun>,
    server: &ServerGuard,
    cfg: &RunConfig,
    round: usize,
    scenario: &str,
) -> Result<f64, BenchError> {
    let label = format!("r{round} {scenario} {}", server.name);
    info!(%label, mode = %cfg.mode(), "run");
    let result = runner::run(&Endpoint::Resp(server.resp_addr), cfg, &label, true)?;
    let tput = result.ops_per_sec;
    runs.push(TargetRun {
        round,
        scenario: scenario.to_string(),
        target: server.name.clone(),
        mode: cfg.mode(),
        config: cfg.clone(),
        result,
        note: None,
    });
    Ok(tput)
}

pub fn run(cfg: &CompareConfig) -> Result<CompareOutcome, BenchError> {
    assert!(cfg.rounds > 0 && !cfg.workloads.is_empty());
    disk::check_dir(&cfg.probe_dir)?;
    info!("raw-device probe");
    let disk = disk::run(&disk::DiskConfig::new(
        cfg.probe_dir.join("probe"),
        cfg.probe_short,
    ))?;
    print!("{}", crate::report::disk_text("raw device", &disk));

    // Started in this order, stopped (dropped) in reverse on every way out of this function.
    let mut servers: Vec<ServerGuard> = Vec::new();
    let mut infos = Vec::new();
    servers.push(servers::start_mantisd(
        &cfg.mantisd,
        MANTISD,
        &cfg.mantisd_args,
    )?);
    infos.push(server_info(
        &servers[0],
        &format!(
            "{} {}, every write durable before its reply",
            cfg.mantisd.display(),
            cfg.mantisd_args.join(" ")
        ),
    ));
    for p in &cfg.peers {
        let g = servers::start_redis(*p)?;
        infos.push(server_info(&g, &p.settings()));
        servers.push(g);
    }
    let spec = &cfg.base.spec;
    for s in &servers {
        let secs = runner::load(
            &Endpoint::Resp(s.resp_addr),
            spec,
            cfg.base.threads,
            &s.name,
            true,
        )?;
        info!(server = %s.name, records = spec.record_count, secs, "loaded");
    }

    let mut runs = Vec::new();
    for round in 1..=cfg.rounds {
        for &w in &cfg.workloads {
            let closed = RunConfig {
                spec: WorkloadSpec {
                    workload: w,
                    distribution: w.default_distribution(),
                    ..spec.clone()
                },
                rate_per_sec: None,
                ..cfg.base.clone()
            };
            let scenario = format!("{} closed", w.name());
            let mut mantisd_tput = 0.0;
            for s in &servers {
                let t = run_one(&mut runs, s, &closed, round, &scenario)?;
                if s.name == MANTISD {
                    mantisd_tput = t;
                }
            }
            let rate = (mantisd_tput * cfg.open_fraction).max(1.0);
            let open = RunConfig {
                rate_per_sec: Some(rate),
                ..closed.clone()
            };
            let scenario = format!("{} open {:.0}%", w.name(), cfg.open_fraction * 100.0);
            for s in &servers {
                run_one(&mut runs, s, &open, round, &scenario)?;
            }
        }
        let write = RunConfig {
            spec: WorkloadSpec {
                workload: Workload::Write,
                distribution: Workload::Write.default_distribution(),
                ..spec.clone()
            },
            rate_per_sec: None,
            ..cfg.base.clone()
        };
        for s in &servers {
            run_one(&mut runs, s, &write, round, "write-only closed")?;
        }
        let low = RunConfig {
            connections: cfg.low_load_connections,
            ..write.clone()
        };
        for s in servers
            .iter()
            .filter(|s| s.name == MANTISD || s.name == RedisPersistence::Always.name())
        {
            run_one(&mut runs, s, &low, round, "write-only low load")?;
        }
    }
    print!("{}", crate::harness::runs_text(&runs));
    // The peers are done: stop them before the interference scenario so it runs alone.
    drop(servers);

    let interference = match &cfg.interference {
        Some(icfg) => {
            let mut small = cfg.mantisd_args.clone();
            small.extend([
                "--memtable-bytes-max".to_string(),
                icfg.memtable_bytes.to_string(),
            ]);
            let busy = servers::start_mantisd(&cfg.mantisd, "mantisd-small-memtable", &small)?;
            infos.push(server_info(
                &busy,
                &format!("interference, busy: {}", small.join(" ")),
            ));
            let idle = servers::start_mantisd(
                &cfg.mantisd,
                "mantisd-default-memtable",
                &cfg.mantisd_args,
            )?;
            infos.push(server_info(
                &idle,
                &format!("interference, idle: {}", cfg.mantisd_args.join(" ")),
            ));
            for s in [&busy, &idle] {
                runner::load(
                    &Endpoint::Resp(s.resp_addr),
                    &icfg.foreground.spec,
                    cfg.base.threads,
                    &s.name,
                    true,
                )?;
            }
            let (figures, iruns) = interference::run(&busy, &idle, icfg)?;
            runs.extend(iruns);
            Some(figures)
        }
        None => None,
    };
    let ratios = ratios(&runs);
    let targets = goals(&runs, &disk, interference.as_ref());
    Ok(CompareOutcome {
        servers: infos,
        disk,
        runs,
        ratios,
        interference,
        targets,
    })
}

/// mantisd / peer for every scenario, round and peer of the run.
pub fn ratios(runs: &[TargetRun]) -> Vec<RatioRow> {
    let mut rows = Vec::new();
    for m in runs.iter().filter(|r| r.target == MANTISD) {
        for p in runs
            .iter()
            .filter(|p| p.target != MANTISD && p.round == m.round && p.scenario == m.scenario)
        {
            let (a, b) = (&m.result, &p.result);
            let div = |x: f64, y: f64| x / y.max(1e-9);
            rows.push(RatioRow {
                scenario: m.scenario.clone(),
                peer: p.target.clone(),
                round: m.round,
                throughput: div(a.ops_per_sec, b.ops_per_sec),
                p50: div(a.all.p50_us, b.all.p50_us),
                p99: div(a.all.p99_us, b.all.p99_us),
                p999: div(a.all.p999_us, b.all.p999_us),
            });
        }
    }
    rows
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn per_round(rows: &[&RatioRow], f: fn(&RatioRow) -> f64) -> (f64, String) {
    let xs: Vec<f64> = rows.iter().map(|r| f(r)).collect();
    let list = xs
        .iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    (mean(&xs), list)
}

/// The issue-4 goals, each from figures of this run (means over rounds, rounds listed).
pub fn goals(
    runs: &[TargetRun],
    disk: &DiskFigures,
    interference: Option<&InterferenceFigures>,
) -> Vec<TargetCheck> {
    let rows = ratios(runs);
    let set = |peer: &str| -> Vec<&RatioRow> {
        rows.iter()
            .filter(|r| r.scenario == "write-only closed" && r.peer == peer)
            .collect()
    };
    let mut out = Vec::new();
    let always = set(RedisPersistence::Always.name());
    if !always.is_empty() {
        let (t, list) = per_round(&always, |r| r.throughput);
        out.push(TargetCheck::at_least(
            "durable SET throughput vs redis-always",
            t,
            3.0,
            "×",
            format!("mean of rounds ({list})"),
        ));
        let (p, list) = per_round(&always, |r| r.p999);
        out.push(TargetCheck::at_most(
            "durable SET p99.9 vs redis-always",
            p,
            1.0,
            "×",
            format!("mean of rounds ({list})"),
        ));
    }
    let none = set(RedisPersistence::None.name());
    if !none.is_empty() {
        let (t, list) = per_round(&none, |r| r.throughput);
        out.push(TargetCheck::at_least(
            "durable SET throughput vs redis-nopersist",
            t,
            0.8,
            "×",
            format!("mean of rounds ({list})"),
        ));
    }
    let low: Vec<f64> = runs
        .iter()
        .filter(|r| r.target == MANTISD && r.scenario == "write-only low load")
        .map(|r| r.result.all.p50_us)
        .collect();
    if !low.is_empty() {
        let raw = disk.write_fdatasync.p50_us;
        out.push(TargetCheck::at_most(
            "durable write p50 at low load (1 conn)",
            mean(&low),
            1.3 * raw,
            "µs",
            format!(
                "1.3 × raw 4 KiB write+fdatasync p50 {raw:.1} µs of the probe; rounds {}",
                low.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(i) = interference {
        let ratios: Vec<f64> = i.rounds.iter().map(|r| r.p99_ratio).collect();
        out.push(TargetCheck::at_most(
            "foreground p99, compaction running / idle",
            mean(&ratios),
            1.1,
            "×",
            format!(
                "mean of rounds ({})",
                ratios
                    .iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    out
}

/// Draws the compare plots into `dir`; returns their links (`link_prefix` + file name).
pub fn plots(
    runs: &[TargetRun],
    dir: &Path,
    link_prefix: &str,
    stamp: &str,
) -> Result<Vec<String>, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::DataDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut links = Vec::new();
    // The interference windows are one picture: busy and idle side by side.
    let group = |r: &TargetRun| -> String {
        if r.scenario.starts_with("interference") {
            "interference".to_string()
        } else {
            r.scenario.clone()
        }
    };
    let label = |r: &TargetRun| -> String {
        if r.scenario.starts_with("interference") {
            r.scenario.trim_start_matches("interference, ").to_string()
        } else {
            r.target.clone()
        }
    };
    let mut groups: Vec<String> = Vec::new();
    for r in runs {
        if !groups.contains(&group(r)) {
            groups.push(group(r));
        }
    }
    for g in groups {
        let of: Vec<&TargetRun> = runs
            .iter()
            .filter(|r| group(r) == g && r.round == 1)
            .collect();
        let slug: String = g
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let file = format!("bench-{stamp}-{slug}-spectrum.svg").replace("--", "-");
        let series: Vec<_> = of
            .iter()
            .map(|r| (label(r), r.result.spectrum.clone()))
            .collect();
        crate::plot::spectrum(
            &dir.join(&file),
            &format!("{g}: latency by percentile (round 1)"),
            &series,
        )?;
        links.push(format!("{link_prefix}{file}"));
        if g.starts_with("write-only closed") || g == "interference" {
            let file = format!("bench-{stamp}-{slug}-timeline.svg").replace("--", "-");
            let series: Vec<_> = of
                .iter()
                .map(|r| (label(r), r.result.timeline.clone()))
                .collect();
            crate::plot::timeline(
                &dir.join(&file),
                &format!("{g}: latency over time (round 1)"),
                &series,
            )?;
            links.push(format!("{link_prefix}{file}"));
        }
    }
    Ok(links)
}
