//! Monitoring commands: the audit trail (offline, on a data directory) and alerts (online,
//! through a running mantisd's HTTP API).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mantis_monitor::audit;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// The tamper-evident audit trail of a data directory.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Alerts of a running mantisd.
    Alerts {
        /// The daemon's HTTP address.
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Bearer token (the daemon's password), when one is set.
        #[arg(long, env = "MANTIS_PASSWORD")]
        password: Option<String>,
        #[command(subcommand)]
        command: AlertsCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Checks the hash chain; exits 1 naming the first bad record.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Writes the verified trail as JSON lines to standard output.
    Export {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AlertsCommand {
    /// Active alerts, silences and the recent history (JSON).
    List,
    /// Acknowledges a firing alert: no more repeats or escalation until it resolves.
    Ack { rule: String },
    /// Silences a rule's notifications for a while.
    Silence {
        rule: String,
        #[arg(long, default_value_t = 60)]
        minutes: u64,
    },
}

/// Where the daemon keeps the trail inside its data directory.
pub fn audit_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Audit { command } => run_audit(command),
        Command::Alerts {
            server,
            password,
            command,
        } => run_alerts(&server, password.as_deref(), command),
    }
}

fn run_audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { data_dir } => match audit::verify(&audit_dir(&data_dir)) {
            Ok(v) => {
                println!(
                    "audit trail ok: {} records, seq {}..={}, head {}",
                    v.records, v.first_seq, v.head.seq, v.head.hash
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mantisctl: audit verify failed: {e}");
                ExitCode::FAILURE
            }
        },
        AuditCommand::Export { data_dir } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match audit::export(&audit_dir(&data_dir), &mut out) {
                Ok(n) => {
                    eprintln!("mantisctl: exported {n} records");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mantisctl: audit export stopped: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_alerts(server: &str, password: Option<&str>, command: AlertsCommand) -> ExitCode {
    let base = format!("{}/api/v1/alerts", server.trim_end_matches('/'));
    let request = match &command {
        AlertsCommand::List => ureq::get(&base),
        AlertsCommand::Ack { rule } => ureq::post(&format!("{base}/{rule}/ack")),
        AlertsCommand::Silence { rule, minutes } => {
            ureq::post(&format!("{base}/{rule}/silence?minutes={minutes}"))
        }
    };
    let request = match password {
        Some(p) => request.set("authorization", &format!("Bearer {p}")),
        None => request,
    };
    let result = match command {
        AlertsCommand::List => request.call(),
        _ => request.send_string(""),
    };
    let (code, body) = match result {
        Ok(response) => (response.status(), response.into_string()),
        Err(ureq::Error::Status(code, response)) => (code, response.into_string()),
        Err(error) => {
            eprintln!("mantisctl: cannot reach {base}: {error}");
            return ExitCode::from(2);
        }
    };
    match body {
        Ok(body) => println!("{body}"),
        Err(error) => eprintln!("mantisctl: reading the answer of {base}: {error}"),
    }
    if code == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
