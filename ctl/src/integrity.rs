//! Integrity commands: `verify` (a stopped data directory end to end), `wal verify|repair`
//! (each shard's WAL of a stopped data directory) and `scrub` (a pass now, on a running
//! mantisd). Offline commands exit 0 when clean, 1 when they find damage (each named on
//! stderr), 2 when they cannot run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use mantis_storage::{DmaStorage, Storage};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Checks a stopped data directory: manifest, every segment read whole, and the WAL.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// The write-ahead logs of a stopped data directory.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Starts a scrub pass on every shard of a running mantisd and prints its progress.
    Scrub {
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long, env = "MANTIS_PASSWORD")]
        password: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum WalCommand {
    /// Reports every bad chunk and record; changes nothing.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Cuts each damaged log at its last good record, keeping a copy of what it cuts
    /// (`wal/lost-<lsn>.bin`), and reports the records and LSNs lost.
    Repair {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Verify { data_dir } => offline(&data_dir, verify),
        Command::Wal {
            command: WalCommand::Verify { data_dir },
        } => offline(&data_dir, wal_verify),
        Command::Wal {
            command: WalCommand::Repair { data_dir },
        } => offline(&data_dir, wal_repair),
        Command::Scrub { server, password } => scrub(&server, password.as_deref()),
    }
}

/// Runs `f` on a glommio executor with O_DIRECT storage over `dir`; `f` returns whether the
/// directory was clean.
fn offline<F, Fut>(dir: &Path, f: F) -> ExitCode
where
    F: FnOnce(Rc<dyn Storage>, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    if !dir.is_dir() {
        eprintln!("mantisctl: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    let _ = mantis_storage::rt::raise_memlock_limit();
    let dir = dir.to_path_buf();
    let result = mantis_storage::rt::run_local(|| async move {
        let storage: Rc<dyn Storage> = match DmaStorage::new(&dir).await {
            Ok(s) => Rc::new(s),
            Err(e) => return Err(format!("open storage: {e}")),
        };
        f(storage, dir).await
    });
    match result {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::FAILURE,
        Ok(Err(e)) => {
            eprintln!("mantisctl: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("mantisctl: cannot start an executor: {e}");
            ExitCode::from(2)
        }
    }
}

async fn verify(storage: Rc<dyn Storage>, dir: PathBuf) -> Result<bool, String> {
    let report = mantis_engine::scrub::verify_data_dir(&storage, &dir).await;
    for f in &report.findings {
        eprintln!("{f}");
    }
    let problems = report.problems().count();
    println!(
        "shards {} manifest_records {} segments {} blocks {} bytes {} wal_records {} problems {}",
        report.shards,
        report.manifest_records,
        report.segments_checked,
        report.blocks_checked,
        report.bytes_checked,
        report.wal_records_checked,
        problems
    );
    Ok(problems == 0)
}

fn shard_count(dir: &Path) -> Result<usize, String> {
    mantis_engine::layout::read_shards(dir)
        .ok_or_else(|| format!("{}: no readable MANTIS layout file", dir.display()))
}

async fn wal_verify(storage: Rc<dyn Storage>, dir: PathBuf) -> Result<bool, String> {
    let mut clean = true;
    for shard in 0..shard_count(&dir)? {
        let wal_dir = mantis_wal::wal_dir(&dir.join(format!("shard-{shard}")));
        let r = mantis_wal::verify(storage.as_ref(), &wal_dir, shard)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "shard {shard}: segments {} records {} lsn {}..={} problems {}",
            r.segments.len(),
            r.records_ok,
            r.first_lsn,
            r.last_lsn,
            r.problems.len()
        );
        for p in &r.problems {
            eprintln!(
                "PROBLEM: shard {shard} {} offset {} LSN {}: {}",
                p.file.display(),
                p.offset,
                p.lsn,
                p.reason
            );
        }
        if let Some((first, last)) = r.lost_lsns {
            eprintln!("PROBLEM: shard {shard}: a repair would cut LSNs {first}..={last}");
        }
        if let Some(t) = &r.torn_tail {
            eprintln!(
                "note: shard {shard} torn tail of {} bytes at {} offset {} (startup zeroes it)",
                t.bytes,
                t.file.display(),
                t.offset
            );
        }
        clean &= r.is_clean();
    }
    Ok(clean)
}

async fn wal_repair(storage: Rc<dyn Storage>, dir: PathBuf) -> Result<bool, String> {
    for shard in 0..shard_count(&dir)? {
        let wal_dir = mantis_wal::wal_dir(&dir.join(format!("shard-{shard}")));
        let r = mantis_wal::repair(storage.as_ref(), &wal_dir, shard)
            .await
            .map_err(|e| e.to_string())?;
        match &r.repaired {
            Some(c) => println!(
                "shard {shard}: cut at {} offset {} ({}); log ends at LSN {}; lost {} records, LSNs {}..={} ({} intact in the copy); {} bytes kept in {}",
                c.file.display(),
                c.offset,
                c.reason,
                c.last_good_lsn,
                c.records_lost,
                c.first_lost_lsn,
                c.last_lost_lsn,
                c.intact_records_in_lost_file,
                c.bytes_cut,
                c.lost_file.display()
            ),
            None => println!(
                "shard {shard}: no damage; {} records, last LSN {}, torn tail zeroed {} bytes",
                r.records_in_log, r.last_lsn, r.torn_tail_bytes
            ),
        }
    }
    // A repair that ran is a success: the log is usable again.
    Ok(true)
}

fn scrub(server: &str, password: Option<&str>) -> ExitCode {
    let url = format!("{}/api/v1/integrity/scrub", server.trim_end_matches('/'));
    let mut req = ureq::post(&url);
    if let Some(p) = password {
        req = req.set("Authorization", &format!("Bearer {p}"));
    }
    match req.call() {
        Ok(resp) => {
            match resp.into_string() {
                Ok(body) => println!("{body}"),
                Err(e) => eprintln!("mantisctl: reading the answer of {url}: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(ureq::Error::Status(code, resp)) => {
            eprintln!(
                "mantisctl: {url}: HTTP {code}: {}",
                resp.into_string().unwrap_or_default()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mantisctl: cannot reach {url}: {e}");
            ExitCode::from(2)
        }
    }
}
