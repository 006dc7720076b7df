//! `mantisctl`: the operator's tool. Offline commands work on a stopped data directory
//! (`--data-dir`); online ones talk to a running `mantisd` over its HTTP API (`--server`).
//!
//! Each component owns its commands in its own module, flattened into one command line, so
//! that components can grow their commands without touching each other's code.

use std::process::ExitCode;

use clap::Parser;

mod backup;
mod integrity;
mod monitor;

#[derive(Parser, Debug)]
#[command(name = "mantisctl", version, about = "MantisDB operator tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
// Issue 10: the backup variant carries the destinations' flags; parsed once, size is moot.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Integrity: data-directory verification, WAL verify/repair, scrubbing.
    #[command(flatten)]
    Integrity(integrity::Command),
    /// Monitoring: alerts and the audit trail.
    #[command(flatten)]
    Monitor(monitor::Command),
    /// Backups, restore and checkpoints (issue 10).
    #[command(flatten)]
    Backup(backup::Command),
    /// Asks a running mantisd for its health (`GET /health`); exits 0 only when healthy.
    Status {
        /// The daemon's HTTP address.
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Integrity(command) => integrity::run(command),
        Command::Monitor(command) => monitor::run(command),
        Command::Backup(command) => backup::run(command),
        Command::Status { server } => status(&server),
    }
}

/// Prints the daemon's health report. A degraded or unhealthy daemon answers 503, which is
/// still a report worth printing, so the body is shown for every status code.
fn status(server: &str) -> ExitCode {
    let url = format!("{}/health", server.trim_end_matches('/'));
    let (code, body) = match ureq::get(&url).call() {
        Ok(response) => (response.status(), response.into_string()),
        Err(ureq::Error::Status(code, response)) => (code, response.into_string()),
        Err(error) => {
            eprintln!("mantisctl: cannot reach {url}: {error}");
            return ExitCode::from(2);
        }
    };
    match body {
        Ok(body) => println!("{body}"),
        Err(error) => eprintln!("mantisctl: reading the answer of {url}: {error}"),
    }
    if code == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
