//! `mantis-bench`: the MantisDB latency benchmark harness.
//!
//! Every engine figure is printed next to the raw disk figure of the same run, because the disk
//! of these machines moves by a factor of four between runs and only ratios within one run
//! mean anything.

mod cli;
mod columnar;
mod compare;
mod compression;
mod disk;
mod driver;
mod engine;
mod error;
mod harness;
mod hist;
mod interference;
mod keydist;
mod locks;
mod machine;
mod plot;
mod recorder;
mod report;
mod runner;
mod schedule;
mod servers;
mod signals;
mod workload;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tracing::info;

use crate::error::BenchError;
use crate::machine::MachineInfo;

#[derive(Parser, Debug)]
#[command(name = "mantis-bench", version, about = "MantisDB benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Raw disk figures with glommio DmaFile: 4 KiB O_DIRECT write + fdatasync and random read, QD1.
    Disk(DiskArgs),
    /// Raw disk figures, then the engine in-process: durable puts (1 and 64 writers per shard),
    /// cached and uncached gets, resident memory with N keys loaded; checks the issue-2 targets.
    Engine(EngineArgs),
    /// One workload (YCSB A–F or write-only) against one target: the engine in-process,
    /// mantisd over RESP or HTTP, or Redis over RESP; closed or open loop.
    Run(cli::RunArgs),
    /// mantisd against Redis (appendfsync always, everysec, no persistence), started by the
    /// harness and run interleaved for several rounds; ratio table, goals, interference,
    /// raw-device probe, JSON + Markdown + SVG plots.
    Compare(cli::CompareArgs),
    /// Issue 7: bytes stored per codec on JSON documents, cached get p99 LZ4 vs none, get p99
    /// with the scrubber and cold recompression at their default rates vs without.
    Compression(compression::CompressionArgs),
    /// Lock manager figures (issue 9): uncontended acquire+release ns per lock, deadlock
    /// detection over a 10,000-edge wait-for graph per algorithm.
    Locks(locks::LocksArgs),
    /// Columnar tables (issue 11): GROUP BY aggregate and filtered scan on a columnar and a
    /// row table of the same rows (and DuckDB when its Python package is installed).
    Columnar(columnar::ColumnarArgs),
}

#[derive(Args, Debug, Clone)]
struct EngineArgs {
    /// Directory for the engine data and raw files; must be on a real filesystem (not tmpfs).
    #[arg(long)]
    dir: PathBuf,
    /// Keys to load for the memory and uncached-get figures (default 10 M; 500 k with --short).
    #[arg(long)]
    keys: Option<u64>,
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Smaller data set and fewer operations, for a quick look.
    #[arg(long)]
    short: bool,
    /// Shards (0: one per allowed CPU).
    #[arg(long, default_value_t = 0)]
    shards: usize,
    #[arg(long, default_value_t = 64)]
    writers_per_shard: usize,
    /// Seconds the concurrent writers run.
    #[arg(long)]
    concurrent_secs: Option<u64>,
    /// Block cache per shard of the load engine, in MiB (small, so gets miss).
    #[arg(long, default_value_t = 8)]
    load_cache_mib: usize,
    /// Memtable budget per shard, in MiB (default: the engine's default).
    #[arg(long)]
    memtable_mib: Option<usize>,
    /// Keys per write of the load (1: single puts; more: write_batch).
    #[arg(long, default_value_t = 1)]
    load_batch_ops: usize,
    /// Concurrent writers per shard during the load.
    #[arg(long, default_value_t = 64)]
    load_writers_per_shard: usize,
    /// Run an explicit full compaction after the load (default: measure the engine as its
    /// background compaction leaves it).
    #[arg(long)]
    compact: bool,
    /// Keep the engine data directories afterwards.
    #[arg(long)]
    keep_data: bool,
    /// Where to write the JSON result (default: ./mantis-bench-<kind>-<date>.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl EngineArgs {
    fn config(&self) -> engine::EngineBenchConfig {
        let mut cfg = engine::EngineBenchConfig::new(self.dir.join("engine"), self.short);
        if let Some(n) = self.keys {
            cfg.keys = n;
        }
        cfg.value_bytes = self.value_bytes;
        cfg.shards = self.shards;
        cfg.writers_per_shard = self.writers_per_shard;
        if let Some(s) = self.concurrent_secs {
            cfg.concurrent_duration = std::time::Duration::from_secs(s);
        }
        cfg.load_block_cache_bytes = self.load_cache_mib << 20;
        if let Some(m) = self.memtable_mib {
            cfg.memtable_bytes_max = m << 20;
        }
        cfg.load_batch_ops = self.load_batch_ops.max(1);
        cfg.load_writers_per_shard = self.load_writers_per_shard.max(1);
        cfg.compact_after_load = self.compact;
        cfg.keep_data = self.keep_data;
        cfg
    }
}

#[derive(Args, Debug, Clone)]
struct DiskArgs {
    /// Directory for the benchmark files; must be on a real filesystem (not tmpfs).
    #[arg(long)]
    dir: PathBuf,
    /// Fewer operations and a smaller read file, for a quick look.
    #[arg(long)]
    short: bool,
    /// Number of measured write + fdatasync operations.
    #[arg(long)]
    write_ops: Option<usize>,
    /// Number of measured random reads.
    #[arg(long)]
    read_ops: Option<usize>,
    /// Size of the random-read file in MiB.
    #[arg(long)]
    read_file_mib: Option<u64>,
    /// Where to write the JSON result (default: ./mantis-bench-<kind>-<date>.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl DiskArgs {
    fn config(&self) -> disk::DiskConfig {
        let mut cfg = disk::DiskConfig::new(self.dir.clone(), self.short);
        if let Some(n) = self.write_ops {
            cfg.write_ops = n;
        }
        if let Some(n) = self.read_ops {
            cfg.read_ops = n;
        }
        if let Some(mib) = self.read_file_mib {
            cfg.read_file_bytes = mib << 20;
        }
        cfg
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("mantis-bench: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<(), BenchError> {
    // Without the raised limit glommio only warns and runs slower, which would skew every figure.
    let memlock = mantis_storage::rt::raise_memlock_limit().map_err(BenchError::Executor)?;
    info!(memlock_bytes = memlock, "RLIMIT_MEMLOCK");
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match cli.command {
        Command::Disk(args) => run_disk(&args, command_line),
        Command::Engine(args) => run_engine(&args, command_line),
        Command::Run(args) => {
            signals::install().map_err(BenchError::Executor)?;
            cli::run(&args, command_line)
        }
        Command::Compare(args) => {
            signals::install().map_err(BenchError::Executor)?;
            cli::compare(&args, command_line)
        }
        Command::Locks(args) => locks::run(&args),
        Command::Compression(args) => compression::run(&args),
        Command::Columnar(args) => columnar::run(&args),
    }
}

pub(crate) fn default_out(kind: &str, machine: &MachineInfo) -> PathBuf {
    let stamp = machine.date_utc.replace(':', "");
    PathBuf::from(format!("mantis-bench-{kind}-{stamp}.json"))
}

fn run_disk(args: &DiskArgs, command: String) -> Result<(), BenchError> {
    let cfg = args.config();
    disk::check_dir(&cfg.dir)?;
    let machine = MachineInfo::collect(&cfg.dir);
    print!("{}", report::machine_text(&machine));
    let figures = disk::run(&cfg)?;
    print!("{}", report::disk_text("this run", &figures));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out("disk", &machine));
    let result: report::RunReport<()> = report::RunReport {
        kind: "disk",
        command,
        machine,
        disk: figures,
        disk_after: None,
        engine: None,
        targets: Vec::new(),
    };
    report::write_json(&out, &result)?;
    println!("result written to {}", out.display());
    Ok(())
}

fn run_engine(args: &EngineArgs, command: String) -> Result<(), BenchError> {
    let cfg = args.config();
    disk::check_dir(&args.dir)?;
    let machine = MachineInfo::collect(&args.dir);
    print!("{}", report::machine_text(&machine));
    let disk_cfg = disk::DiskConfig::new(args.dir.join("disk"), args.short);
    let disk_before = disk::run(&disk_cfg)?;
    print!("{}", report::disk_text("before the engine", &disk_before));
    let figures = engine::run(&cfg)?;
    print!("{}", report::engine_text(&figures));
    let disk_after = disk::run(&disk_cfg)?;
    print!("{}", report::disk_text("after the engine", &disk_after));
    let targets = engine::targets(&disk_before, &figures);
    print!("{}", report::targets_text(&targets));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out("engine", &machine));
    let result = report::RunReport {
        kind: "engine",
        command,
        machine,
        disk: disk_before,
        disk_after: Some(disk_after),
        engine: Some(figures),
        targets,
    };
    report::write_json(&out, &result)?;
    println!("result written to {}", out.display());
    Ok(())
}
