//! The `mantis-chaos` command line: one subcommand per scenario, `all` for a full run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use mantis_chaos::daemon::{find_mantisd, set_start_timeout, START_TIMEOUT_DEFAULT};
use mantis_chaos::error::Result;
use mantis_chaos::faultfs::{control, FaultMount};
use mantis_chaos::report::{RunReport, ScenarioReport};
use mantis_chaos::scenarios::{self, bank::BankOpts, crash::CrashOpts, iofault::IoFaultOpts, Ctx};

#[derive(Parser, Debug)]
#[command(
    name = "mantis-chaos",
    version,
    about = "Chaos harness for mantisd: crashes, torn WALs, full disks, memory limits, corruption, client faults"
)]
struct Cli {
    /// mantisd binary (default: next to this binary, or target/{debug,release}/mantisd).
    #[arg(long, global = true)]
    mantisd: Option<PathBuf>,
    /// Where throwaway data directories go (a real filesystem: not tmpfs).
    #[arg(long, global = true, default_value = "/var/tmp")]
    work_dir: PathBuf,
    /// Where the Markdown and JSON reports go.
    #[arg(long, global = true, default_value = "chaos-reports")]
    report_dir: PathBuf,
    /// Keep data directories after the run (for post-mortems).
    #[arg(long, global = true)]
    keep: bool,
    /// How long a start may take before it counts as a hang (the process is then killed and
    /// the start retried once; the run fails).
    #[arg(long, global = true, default_value_t = START_TIMEOUT_DEFAULT.as_secs())]
    start_timeout_secs: u64,
    /// Seed; every scenario replays exactly from it (default: from the clock, printed).
    #[arg(long, global = true)]
    seed: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Scenario 1: SIGKILL at random moments of a mixed write load; restart, verify, repeat.
    Crash {
        #[arg(long, default_value_t = 20)]
        iterations: u64,
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Scenario 2: tiny memtable so kills land inside flushes and compactions.
        #[arg(long)]
        flush_heavy: bool,
    },
    /// Scenario 3: torn WAL tails (garbage after the last chunk; the last chunk zeroed).
    Torn {
        #[arg(long, default_value_t = 20)]
        iterations: u64,
    },
    /// Scenario 4: data directory on a small loop-mounted ext4 image, filled under load.
    DiskFull,
    /// Scenario 5: mantisd in a cgroup v1 memory limit under load.
    Memory {
        #[arg(long, default_value_t = 160)]
        limit_mib: u64,
        #[arg(long, default_value_t = 10)]
        load_secs: u64,
    },
    /// Scenario 6: bit flips and truncations in segment, manifest and WAL files.
    Corrupt {
        #[arg(long, default_value_t = 24)]
        flips: u64,
    },
    /// Scenario 7: data directory on the FUSE fault filesystem: fdatasync EIO (shard turns
    /// read-only), then power cuts that drop or tear unsynced writes.
    IoFaults {
        #[arg(long, default_value_t = 20)]
        iterations: u64,
        /// Skip the fsync-failure cycle (power cuts only).
        #[arg(long)]
        no_fsync_failure: bool,
    },
    /// Mounts the fault filesystem by hand: BACKING shown at MOUNTPOINT, driven by commands
    /// on standard input (sync-fail P [substr], write-fail P [substr], delay US, heal,
    /// power-cut drop|tear, stats, quit).
    Faultfs {
        backing: PathBuf,
        mountpoint: PathBuf,
    },
    /// Scenario 8: connections reset mid-pipeline and mid-batch.
    ClientFaults {
        #[arg(long, default_value_t = 40)]
        iterations: u64,
    },
    /// Scenario 9: many clients writing the same keys.
    Concurrent {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 8)]
        keys: usize,
        #[arg(long, default_value_t = 20)]
        ops: usize,
    },
    /// Scenario 10: 1–10 MiB values, 24 h–1 y TTLs, TTL overflow.
    Edge {
        #[arg(long, default_value_t = 6)]
        values: u64,
    },
    /// Scenario 11 (issue 9): bank transfers across shards (SQL BEGIN…COMMIT over the PG wire
    /// and RESP MULTI/EXEC, both by two-phase commit) with auditors, under SIGKILL.
    Bank {
        #[arg(long, default_value_t = 20)]
        iterations: u64,
        #[arg(long, default_value_t = 16)]
        accounts: usize,
        #[arg(long, default_value_t = 3)]
        sql_clients: usize,
        #[arg(long, default_value_t = 3)]
        resp_clients: usize,
        /// Longest load phase before the kill, in ms.
        #[arg(long, default_value_t = 1200)]
        load_ms_max: u64,
    },
    /// Every scenario; `--crash-iterations` for scenarios 1 and 2 each.
    All {
        #[arg(long, default_value_t = 20)]
        crash_iterations: u64,
        #[arg(long, default_value_t = 20)]
        torn_iterations: u64,
        #[arg(long, default_value_t = 24)]
        flips: u64,
        #[arg(long, default_value_t = 20)]
        power_cut_iterations: u64,
    },
}

fn run(cli: &Cli, seed: u64, ctx: &Ctx) -> Result<Vec<ScenarioReport>> {
    let crash = |iterations, flush_heavy| CrashOpts {
        seed,
        iterations,
        writers: 4,
        flush_heavy,
        load_ms_max: 400,
    };
    Ok(match &cli.cmd {
        Cmd::Crash {
            iterations,
            writers,
            flush_heavy,
        } => {
            let mut o = crash(*iterations, *flush_heavy);
            o.writers = *writers;
            vec![scenarios::crash::run(ctx, &o)?]
        }
        Cmd::Torn { iterations } => vec![scenarios::torn::run(ctx, seed, *iterations)?],
        Cmd::DiskFull => vec![scenarios::diskfull::run(ctx, seed)?],
        Cmd::Memory {
            limit_mib,
            load_secs,
        } => vec![scenarios::memory::run(ctx, seed, *limit_mib, *load_secs)?],
        Cmd::Corrupt { flips } => vec![scenarios::corrupt::run(ctx, seed, *flips)?],
        Cmd::IoFaults {
            iterations,
            no_fsync_failure,
        } => vec![scenarios::iofault::run(
            ctx,
            &IoFaultOpts {
                seed,
                iterations: *iterations,
                load_ms_max: 400,
                fsync_failure: !no_fsync_failure,
            },
        )?],
        Cmd::Faultfs { .. } => Vec::new(),
        Cmd::ClientFaults { iterations } => vec![scenarios::client::run(ctx, seed, *iterations)?],
        Cmd::Concurrent { clients, keys, ops } => vec![scenarios::concurrent::run(
            ctx, seed, *clients, *keys, *ops,
        )?],
        Cmd::Edge { values } => vec![scenarios::edge::run(ctx, seed, *values)?],
        Cmd::Bank {
            iterations,
            accounts,
            sql_clients,
            resp_clients,
            load_ms_max,
        } => {
            let mut o = BankOpts::new(seed, *iterations);
            o.accounts = *accounts;
            o.sql_clients = *sql_clients;
            o.resp_clients = *resp_clients;
            o.load_ms_max = *load_ms_max;
            o.load_ms_min = o.load_ms_min.min(*load_ms_max);
            vec![scenarios::bank::run(ctx, &o)?]
        }
        Cmd::All {
            crash_iterations,
            torn_iterations,
            flips,
            power_cut_iterations,
        } => vec![
            scenarios::crash::run(ctx, &crash(*crash_iterations, false))?,
            scenarios::crash::run(ctx, &crash(*crash_iterations, true))?,
            scenarios::torn::run(ctx, seed, *torn_iterations)?,
            scenarios::diskfull::run(ctx, seed)?,
            scenarios::memory::run(ctx, seed, 160, 10)?,
            scenarios::corrupt::run(ctx, seed, *flips)?,
            scenarios::iofault::run(
                ctx,
                &IoFaultOpts {
                    seed,
                    iterations: *power_cut_iterations,
                    load_ms_max: 400,
                    fsync_failure: true,
                },
            )?,
            scenarios::client::run(ctx, seed, 40)?,
            scenarios::concurrent::run(ctx, seed, 10, 4, 50)?,
            scenarios::concurrent::run(ctx, seed, 500, 8, 4)?,
            scenarios::edge::run(ctx, seed, 6)?,
            scenarios::bank::run(ctx, &BankOpts::new(seed, *crash_iterations))?,
        ],
    })
}

/// `mantis-chaos faultfs`: mount, then carry out the commands read from standard input.
fn serve_faultfs(backing: &std::path::Path, mountpoint: &std::path::Path, seed: u64) -> ExitCode {
    use std::io::BufRead;
    let mut m = match FaultMount::mount(backing, mountpoint, seed) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mantis-chaos faultfs: {e}");
            return ExitCode::from(2);
        }
    };
    println!("mounted {} at {}", backing.display(), mountpoint.display());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match control::parse(&line) {
            Ok(control::Command::Quit) => break,
            Ok(cmd) => println!("{}", control::apply(&mut m, cmd)),
            Err(e) => println!("error {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let seed = cli
        .seed
        .unwrap_or_else(|| now.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16);
    eprintln!("mantis-chaos: seed {seed} (replay with --seed {seed})");
    if let Cmd::Faultfs {
        backing,
        mountpoint,
    } = &cli.cmd
    {
        return serve_faultfs(backing, mountpoint, seed);
    }
    let mantisd = match find_mantisd(cli.mantisd.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mantis-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    set_start_timeout(std::time::Duration::from_secs(cli.start_timeout_secs));
    let ctx = Ctx {
        mantisd: mantisd.clone(),
        work_dir: cli.work_dir.clone(),
        keep: cli.keep,
    };
    let scenarios = match run(&cli, seed, &ctx) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mantis-chaos: seed {seed}: {e}");
            return ExitCode::from(1);
        }
    };
    let passed = scenarios.iter().all(|s| s.passed);
    let report = RunReport {
        seed,
        mantisd: mantisd.display().to_string(),
        started_unix_s: now,
        scenarios,
        passed,
    };
    print!("{}", report.markdown());
    match report.write(&cli.report_dir) {
        Ok((json, md)) => eprintln!(
            "mantis-chaos: reports {} and {}",
            json.display(),
            md.display()
        ),
        Err(e) => eprintln!("mantis-chaos: could not write the report: {e}"),
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("mantis-chaos: FAILED (seed {seed})");
        ExitCode::from(1)
    }
}
