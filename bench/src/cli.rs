//! The `run` and `compare` subcommands: options, targets, and writing the results.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;
use tracing::info;

use crate::compare::{self, CompareConfig};
use crate::driver::Endpoint;
use crate::error::BenchError;
use crate::harness::{self, HarnessReport, ServerInfo, TargetRun};
use crate::interference::InterferenceConfig;
use crate::keydist::Distribution;
use crate::machine::MachineInfo;
use crate::runner::{self, RunConfig};
use crate::servers::{self, RedisPersistence, ServerGuard};
use crate::workload::{Workload, WorkloadSpec};

/// The harness's default seed ("mantis" in ASCII): runs are reproducible unless told otherwise.
pub const DEFAULT_SEED: u64 = 0x6d61_6e74_6973;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The engine in-process (a fresh one under --dir).
    Engine,
    /// mantisd over RESP.
    MantisdResp,
    /// mantisd over HTTP (/api/v1/kv).
    MantisdHttp,
    /// redis-server over RESP.
    Redis,
}

/// Options shared by `run` and `compare`: the workload and the load generator.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Records loaded before the run (keys 0..N).
    #[arg(long, default_value_t = 100_000)]
    pub record_count: u64,
    /// Keys the operations pick from (default: the record count).
    #[arg(long)]
    pub key_count: Option<u64>,
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Seconds run and discarded before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Width of one latency-over-time interval, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub interval_secs: f64,
    /// Client connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Load-generator threads (glommio executors); default: the CPUs this process may use.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Requests per batch in closed loop (RESP pipelining; 1: none).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

impl LoadArgs {
    fn spec(&self, workload: Workload, distribution: Option<Distribution>) -> WorkloadSpec {
        WorkloadSpec {
            workload,
            distribution: distribution.unwrap_or(workload.default_distribution()),
            key_count: self.key_count.unwrap_or(self.record_count).max(1),
            record_count: self.record_count,
            value_bytes: self.value_bytes,
        }
    }

    fn config(&self, spec: WorkloadSpec, rate: Option<f64>) -> Result<RunConfig, BenchError> {
        let usage = |m: String| Err(BenchError::Usage(m));
        if !(1..=runner::CONNECTIONS_MAX).contains(&self.connections) {
            return usage(format!(
                "--connections must be 1..={}",
                runner::CONNECTIONS_MAX
            ));
        }
        if !(1..=runner::PIPELINE_MAX).contains(&self.pipeline) {
            return usage(format!("--pipeline must be 1..={}", runner::PIPELINE_MAX));
        }
        if !(self.duration_secs > 0.0 && self.warmup_secs >= 0.0 && self.interval_secs > 0.0) {
            return usage("durations must be positive".into());
        }
        if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return usage("--rate must be a positive number".into());
        }
        Ok(RunConfig {
            spec,
            connections: self.connections,
            threads: self
                .threads
                .unwrap_or_else(|| mantis_storage::rt::allowed_cpus().len())
                .max(1),
            pipeline: self.pipeline,
            rate_per_sec: rate,
            warmup_s: self.warmup_secs,
            duration_s: self.duration_secs,
            interval_s: self.interval_secs,
            seed: self.seed,
        })
    }
}

/// Where the results go.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// JSON result file (default: ./mantis-bench-<kind>-<date>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Markdown report file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Directory for the SVG plots (none when not given).
    #[arg(long)]
    pub plots_dir: Option<PathBuf>,
    /// How the report links the plots (default: the plots directory as given, plus '/').
    #[arg(long)]
    pub plots_link_prefix: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[arg(long, value_enum)]
    pub target: TargetKind,
    /// Address of a running server (host:port); without it the harness starts one.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// mantisd binary to start (default: $MANTISD, else target/release/mantisd of this tree).
    #[arg(long)]
    pub mantisd: Option<PathBuf>,
    /// Extra flags for a mantisd the harness starts (repeat the option per flag).
    #[arg(long = "mantisd-arg", allow_hyphen_values = true)]
    pub mantisd_args: Vec<String>,
    /// Persistence of a redis-server the harness starts.
    #[arg(long, value_enum, default_value_t = RedisPersistence::Always)]
    pub redis_persistence: RedisPersistence,
    /// Shards of the in-process engine (0: one per allowed CPU).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Directory for the in-process engine's data; must be on a real filesystem.
    #[arg(long, default_value = "/var/tmp/mantis-bench-run")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Workload::A)]
    pub workload: Workload,
    /// Key distribution (default: the workload's own: zipfian, latest for D, uniform for write).
    #[arg(long, value_enum)]
    pub distribution: Option<Distribution>,
    /// Open loop at this many requests per second (all connections); default: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Skip the load phase (the server already holds the records).
    #[arg(long)]
    pub no_load: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// mantisd binary (default: $MANTISD, else `cargo build --release -p mantisd` of this tree).
    #[arg(long)]
    pub mantisd: Option<PathBuf>,
    /// Extra flags for mantisd (repeat the option per flag).
    #[arg(long = "mantisd-arg", allow_hyphen_values = true)]
    pub mantisd_args: Vec<String>,
    /// Redis configurations to compare with.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [RedisPersistence::Always, RedisPersistence::Everysec, RedisPersistence::None])]
    pub peers: Vec<RedisPersistence>,
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::A, Workload::B, Workload::C])]
    pub workloads: Vec<Workload>,
    /// Open-loop rate as a fraction of mantisd's closed-loop throughput of the same round.
    #[arg(long, default_value_t = 0.5)]
    pub open_fraction: f64,
    /// Connections of the low-load durable write (its p50 is compared with the raw fdatasync).
    #[arg(long, default_value_t = 1)]
    pub low_load_connections: usize,
    /// Skip the interference scenario.
    #[arg(long)]
    pub no_interference: bool,
    /// Memtable of the interference mantisd, in bytes (small: flushes and compactions often).
    #[arg(long, default_value_t = 1 << 20)]
    pub interference_memtable_bytes: usize,
    /// Background writes per second during both interference windows.
    #[arg(long, default_value_t = 300.0)]
    pub interference_bulk_rate: f64,
    #[arg(long, default_value_t = 4096)]
    pub interference_bulk_value_bytes: usize,
    /// Foreground of the interference scenario: workload B, open loop at this rate.
    #[arg(long, default_value_t = 500.0)]
    pub interference_rate: f64,
    #[arg(long, default_value_t = 50)]
    pub interference_connections: usize,
    /// Directory for the raw-device probe (the disk the servers' directories are on).
    #[arg(long, default_value = "/var/tmp/mantis-bench-compare")]
    pub dir: PathBuf,
    /// Full-size raw-device probe (5,000 syncs, 20,000 reads of 1 GiB) instead of the short one.
    #[arg(long)]
    pub probe_full: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The mantisd binary: the option, $MANTISD, or a release build of this source tree.
fn resolve_mantisd(given: Option<&Path>, build: bool) -> Result<PathBuf, BenchError> {
    if let Some(p) = given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("MANTISD").map(PathBuf::from))
    {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BenchError::Usage(format!(
                "no mantisd binary at {}",
                p.display()
            )))
        };
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo.join("target"), PathBuf::from);
    let bin = target.join("release").join("mantisd");
    if build {
        info!("building mantisd (cargo build --release -p mantisd)");
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "-p", "mantisd"])
                .current_dir(&repo)
                .status()
                .map_err(|e| BenchError::Usage(format!("cargo build -p mantisd: {e}")))?;
        if !status.success() {
            return Err(BenchError::Usage(
                "cargo build --release -p mantisd failed".into(),
            ));
        }
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(BenchError::Usage(format!(
            "no mantisd at {}; pass --mantisd PATH",
            bin.display()
        )))
    }
}

/// The running target of a `run`: whatever has to stay alive while it runs.
enum Running {
    Engine(mantis_engine::Engine, PathBuf),
    Server(Option<ServerGuard>),
}

fn open_target(
    args: &RunArgs,
    servers_out: &mut Vec<ServerInfo>,
) -> Result<(Endpoint, String, Running), BenchError> {
    match args.target {
        TargetKind::Engine => {
            let dir = args.dir.join("engine");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| BenchError::DataDir {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            let cfg = mantis_engine::EngineConfig {
                data_dir: dir.clone(),
                shards: args.shards,
                ..mantis_engine::EngineConfig::default()
            };
            let engine =
                mantis_engine::Engine::open(cfg).map_err(crate::engine::task_engine_err("open"))?;
            let endpoint = Endpoint::Engine(engine.handle());
            servers_out.push(ServerInfo {
                name: "engine".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                settings: format!(
                    "in-process, {} shards, default config, {}",
                    engine.handle().shard_count(),
                    dir.display()
                ),
            });
            Ok((endpoint, "engine".into(), Running::Engine(engine, dir)))
        }
        TargetKind::MantisdResp | TargetKind::MantisdHttp => {
            let http = args.target == TargetKind::MantisdHttp;
            let name = if http { "mantisd-http" } else { "mantisd-resp" };
            if let Some(a) = args.addr {
                let ep = if http {
                    Endpoint::Http(a)
                } else {
                    Endpoint::Resp(a)
                };
                return Ok((ep, name.into(), Running::Server(None)));
            }
            let bin = resolve_mantisd(args.mantisd.as_deref(), false)?;
            let g = servers::start_mantisd(&bin, "mantisd", &args.mantisd_args)?;
            servers_out.push(ServerInfo {
                name: g.name.clone(),
                version: g.version.clone(),
                settings: format!("{} {}", bin.display(), args.mantisd_args.join(" ")),
            });
            let ep = match (http, g.http_addr) {
                (true, Some(h)) => Endpoint::Http(h),
                _ => Endpoint::Resp(g.resp_addr),
            };
            Ok((ep, name.into(), Running::Server(Some(g))))
        }
        TargetKind::Redis => {
            if let Some(a) = args.addr {
                return Ok((Endpoint::Resp(a), "redis".into(), Running::Server(None)));
            }
            let g = servers::start_redis(args.redis_persistence)?;
            servers_out.push(ServerInfo {
                name: g.name.clone(),
                version: g.version.clone(),
                settings: args.redis_persistence.settings(),
            });
            Ok((
                Endpoint::Resp(g.resp_addr),
                g.name.clone(),
                Running::Server(Some(g)),
            ))
        }
    }
}

fn write_outputs(
    report: &mut HarnessReport,
    output: &OutputArgs,
    plots: impl FnOnce(&Path, &str) -> Result<Vec<String>, BenchError>,
) -> Result<(), BenchError> {
    if let Some(dir) = &output.plots_dir {
        let prefix = output
            .plots_link_prefix
            .clone()
            .unwrap_or_else(|| format!("{}/", dir.display()));
        report.plots = plots(dir, &prefix)?;
    }
    let out = output
        .out
        .clone()
        .unwrap_or_else(|| crate::default_out(report.kind, &report.machine));
    crate::report::write_json(&out, report)?;
    println!("result written to {}", out.display());
    if let Some(md) = &output.report {
        std::fs::write(md, harness::markdown(report)).map_err(|source| BenchError::ResultFile {
            path: md.clone(),
            source,
        })?;
        println!("report written to {}", md.display());
    }
    Ok(())
}

fn stamp(machine: &MachineInfo) -> String {
    machine.date_utc.replace([':', '-'], "").to_lowercase()
}

pub fn run(args: &RunArgs, command: String) -> Result<(), BenchError> {
    crate::disk::check_dir(&args.dir)?;
    let machine = MachineInfo::collect(&args.dir);
    print!("{}", crate::report::machine_text(&machine));
    let load_average_start = harness::load_average();
    let spec = args.load.spec(args.workload, args.distribution);
    let cfg = args.load.config(spec.clone(), args.rate)?;
    let mut servers = Vec::new();
    let (endpoint, target, running) = open_target(args, &mut servers)?;
    let show = !args.load.no_progress;
    let mut note = None;
    if !args.no_load && spec.record_count > 0 {
        let secs = runner::load(&endpoint, &spec, cfg.threads, &target, show)?;
        note = Some(format!(
            "loaded {} records of {} B in {secs:.1} s",
            spec.record_count, spec.value_bytes
        ));
    }
    let scenario = format!(
        "{} {}",
        args.workload.name(),
        if args.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    );
    let result = runner::run(&endpoint, &cfg, &format!("{scenario} {target}"), show);
    drop(endpoint);
    // Stop what was started whether or not the run succeeded.
    match running {
        Running::Engine(engine, dir) => {
            let shut = engine
                .shutdown()
                .map_err(crate::engine::task_engine_err("shutdown"));
            let _ = std::fs::remove_dir_all(&dir);
            shut?;
        }
        Running::Server(guard) => drop(guard),
    }
    let result = result?;
    let runs = vec![TargetRun {
        round: 1,
        scenario,
        target,
        mode: cfg.mode(),
        config: cfg,
        result,
        note,
    }];
    print!("{}", harness::runs_text(&runs));
    let mut report = HarnessReport {
        kind: "run",
        command,
        machine,
        load_average_start,
        load_average_end: harness::load_average(),
        seed: args.load.seed,
        servers,
        disk: None,
        runs,
        ratios: Vec::new(),
        interference: None,
        targets: Vec::new(),
        plots: Vec::new(),
    };
    let runs = report.runs.clone();
    let st = stamp(&report.machine);
    write_outputs(&mut report, &args.output, |dir, prefix| {
        compare::plots(&runs, dir, prefix, &st)
    })
}

pub fn compare(args: &CompareArgs, command: String) -> Result<(), BenchError> {
    crate::disk::check_dir(&args.dir)?;
    let machine = MachineInfo::collect(&args.dir);
    print!("{}", crate::report::machine_text(&machine));
    let load_average_start = harness::load_average();
    println!(
        "load average {:.2} {:.2} {:.2}",
        load_average_start[0], load_average_start[1], load_average_start[2]
    );
    if args.rounds == 0
        || args.workloads.is_empty()
        || args.open_fraction.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    {
        return Err(BenchError::Usage(
            "--rounds, --workloads and --open-fraction must be positive".into(),
        ));
    }
    let mantisd = resolve_mantisd(args.mantisd.as_deref(), true)?;
    let base = args.load.config(args.load.spec(Workload::A, None), None)?;
    let interference = (!args.no_interference).then(|| InterferenceConfig {
        memtable_bytes: args.interference_memtable_bytes,
        bulk_value_bytes: args.interference_bulk_value_bytes,
        bulk_connections: 16,
        bulk_rate_per_sec: args.interference_bulk_rate,
        foreground: RunConfig {
            spec: WorkloadSpec {
                workload: Workload::B,
                distribution: Workload::B.default_distribution(),
                ..base.spec.clone()
            },
            connections: args.interference_connections,
            rate_per_sec: Some(args.interference_rate),
            pipeline: 1,
            ..base.clone()
        },
        rounds: args.rounds,
    });
    let cfg = CompareConfig {
        mantisd,
        mantisd_args: args.mantisd_args.clone(),
        peers: args.peers.clone(),
        rounds: args.rounds,
        workloads: args.workloads.clone(),
        base,
        open_fraction: args.open_fraction,
        low_load_connections: args.low_load_connections.max(1),
        interference,
        probe_dir: args.dir.clone(),
        probe_short: !args.probe_full,
    };
    let outcome = compare::run(&cfg)?;
    print!("{}", harness::ratios_text(&outcome.ratios));
    print!("{}", crate::report::targets_text(&outcome.targets));
    let mut report = HarnessReport {
        kind: "compare",
        command,
        machine,
        load_average_start,
        load_average_end: harness::load_average(),
        seed: args.load.seed,
        servers: outcome.servers,
        disk: Some(outcome.disk),
        runs: outcome.runs,
        ratios: outcome.ratios,
        interference: outcome.interference,
        targets: outcome.targets,
        plots: Vec::new(),
    };
    let runs = report.runs.clone();
    let st = stamp(&report.machine);
    write_outputs(&mut report, &args.output, |dir, prefix| {
        compare::plots(&runs, dir, prefix, &st)
    })
}
