//! Issue 10: `mantisctl backup create|list|verify`, `mantisctl restore`, and
//! `mantisctl checkpoint list|create|show|delete` against a running mantisd.
//!
//! `backup create` asks the daemon (it takes the checkpoint and uploads it on its own thread)
//! and follows the job with a progress bar; `list`, `verify` and `restore` talk to the
//! destination directly, so they work without a daemon (restore must: it builds a new data
//! directory for one).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mantis_backup::{Destination, DestinationSpec, Progress, S3Config};
use serde_json::{json, Value};

/// How often `backup create` polls the job.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Args, Debug, Clone)]
pub struct S3Args {
    /// S3 endpoint for s3:// destinations (http(s)://host:port).
    #[arg(long, env = "MANTIS_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key: Option<String>,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Issue 10: GCS endpoint for gs:// destinations (an emulator's http://host:port).
    #[arg(
        long,
        env = "MANTIS_GCS_ENDPOINT",
        default_value = "https://storage.googleapis.com"
    )]
    gcs_endpoint: String,
    /// OAuth 2 access token for gs:// destinations (e.g. `gcloud auth print-access-token`).
    #[arg(long, env = "MANTIS_GCS_TOKEN", hide_env_values = true)]
    gcs_token: Option<String>,
    /// Storage account for az:// destinations.
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT")]
    azure_account: Option<String>,
    /// The account's key (base64) for az:// destinations.
    #[arg(long, env = "AZURE_STORAGE_KEY", hide_env_values = true)]
    azure_key: Option<String>,
    /// Blob endpoint override (Azurite: http://127.0.0.1:10000/devstoreaccount1).
    #[arg(long, env = "MANTIS_AZURE_ENDPOINT")]
    azure_endpoint: Option<String>,
    /// Issue 10: PEM file of the CA(s) that sign an https:// endpoint's certificate (a
    /// private CA); the public web PKI is trusted without it. For `backup create`, a path on
    /// the daemon's host.
    #[arg(long, env = "MANTIS_BACKUP_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl S3Args {
    /// Issue 10: every remote destination's endpoint and credentials.
    fn configs(&self) -> mantis_backup::DestinationConfigs {
        let azure = self.azure_account.as_deref().map(|account| {
            let mut cfg = mantis_backup::AzureConfig::new(
                account,
                self.azure_key.as_deref().unwrap_or_default(),
            );
            if let Some(endpoint) = &self.azure_endpoint {
                cfg.endpoint = endpoint.clone();
            }
            cfg.ca_file = self.ca_file.clone();
            cfg
        });
        let mut gcs = mantis_backup::GcsConfig::new(&self.gcs_endpoint, self.gcs_token.clone());
        gcs.ca_file = self.ca_file.clone();
        mantis_backup::DestinationConfigs {
            s3: self.config(),
            gcs: Some(gcs),
            azure,
        }
    }
}

impl S3Args {
    fn config(&self) -> Option<S3Config> {
        let endpoint = self.s3_endpoint.as_deref()?;
        let mut cfg = S3Config::new(
            endpoint,
            self.access_key.as_deref().unwrap_or_default(),
            self.secret_key.as_deref().unwrap_or_default(),
        );
        cfg.region = self.region.clone();
        cfg.ca_file = self.ca_file.clone();
        Some(cfg)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Backups: create (through a running mantisd), list, verify.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restores a backup into a new (empty) data directory; refuses a backup that fails
    /// verification.
    Restore {
        /// A path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix.
        #[arg(long)]
        from: String,
        /// The backup id; the newest by default.
        #[arg(long, conflicts_with_all = ["to_time", "to_lsn"])]
        backup: Option<String>,
        #[arg(long)]
        data_dir: PathBuf,
        /// Point-in-time recovery (issue 10): the newest backup before this time, then the
        /// archived WAL up to it (RFC 3339 or unix milliseconds).
        #[arg(long, conflicts_with = "to_lsn")]
        to_time: Option<String>,
        /// Point-in-time recovery up to this LSN (on every shard).
        #[arg(long)]
        to_lsn: Option<u64>,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Checkpoints of a running mantisd.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Takes a checkpoint in the daemon and uploads it to DEST, with a progress bar.
    Create {
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// A path (on the daemon's host), s3://bucket/prefix, gs://bucket/prefix or
        /// az://container/prefix.
        #[arg(long)]
        to: String,
        /// Upload only files the newest backup in DEST does not hold.
        #[arg(long)]
        incremental: bool,
        /// Most bytes per second the daemon reads checkpoint files at (0: no limit; default:
        /// the daemon's, 32 MiB/s, which keeps commits on the same disk at their latency).
        #[arg(long)]
        read_rate_bytes_per_sec: Option<u64>,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Lists the backups in DEST, oldest first.
    List {
        dest: String,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Re-reads every object of a backup (the newest by default) and checks both hashes.
    Verify {
        dest: String,
        id: Option<String>,
        #[command(flatten)]
        s3: S3Args,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckpointCommand {
    List {
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    Create {
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// full, incremental or snapshot.
        #[arg(long, default_value = "full")]
        kind: String,
    },
    Show {
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        id: String,
    },
    Delete {
        #[arg(long, env = "MANTIS_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        id: String,
    },
}

pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Backup(BackupCommand::Create {
            server,
            to,
            incremental,
            read_rate_bytes_per_sec,
            s3,
        }) => create(&server, &to, incremental, read_rate_bytes_per_sec, &s3),
        Command::Backup(BackupCommand::List { dest, s3 }) => list(&dest, &s3),
        Command::Backup(BackupCommand::Verify { dest, id, s3 }) => verify(&dest, id, &s3),
        Command::Restore {
            from,
            backup,
            data_dir,
            to_time,
            to_lsn,
            s3,
        } => match (to_time, to_lsn) {
            (None, None) => restore(&from, backup, &data_dir, &s3),
            (time, lsn) => restore_to_point(&from, time, lsn, &data_dir, &s3),
        },
        Command::Checkpoint(c) => checkpoint(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mantisctl: {message}");
            ExitCode::FAILURE
        }
    }
}

fn open(dest: &str, s3: &S3Args) -> Result<Box<dyn Destination>, String> {
    let spec = DestinationSpec::parse(dest).map_err(|e| e.to_string())?;
    mantis_backup::open_destination_with(&spec, &s3.configs()).map_err(|e| e.to_string())
}

fn bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

fn show(pb: &ProgressBar, p: &Progress) {
    pb.set_length(p.bytes_total);
    pb.set_position(p.bytes_done);
    pb.set_message(format!("{}/{} files", p.files_done, p.files_total));
}

/// Sends a request to the daemon; the JSON answer, or an error naming status and body.
fn call(req: ureq::Request, body: Option<&Value>) -> Result<Value, String> {
    let url = req.url().to_string();
    let answer = match body {
        Some(b) => req
            .set("content-type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    match answer {
        Ok(resp) => {
            let text = resp.into_string().map_err(|e| format!("{url}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON ({e}): {text}"))
        }
        Err(ureq::Error::Status(code, resp)) => Err(format!(
            "{url}: HTTP {code}: {}",
            resp.into_string().unwrap_or_default()
        )),
        Err(e) => Err(format!("cannot reach {url}: {e}")),
    }
}

fn create(
    server: &str,
    to: &str,
    incremental: bool,
    read_rate_bytes_per_sec: Option<u64>,
    s3: &S3Args,
) -> Result<(), String> {
    let base = server.trim_end_matches('/');
    let mut body = json!({
        "to": to,
        "kind": if incremental { "incremental" } else { "full" },
    });
    if let Some(rate) = read_rate_bytes_per_sec {
        body["read_rate_bytes_per_sec_max"] = json!(rate);
    }
    if let Some(cfg) = s3.config() {
        body["s3"] = json!({
            "endpoint": cfg.endpoint,
            "access_key": cfg.access_key,
            "secret_key": cfg.secret_key,
            "region": cfg.region,
            "ca_file": cfg.ca_file,
        });
    }
    // Issue 10: gs:// and az:// settings travel like the S3 ones (the daemon uploads).
    let configs = s3.configs();
    match DestinationSpec::parse(to).map_err(|e| e.to_string())? {
        DestinationSpec::Gcs { .. } => {
            if let Some(cfg) = &configs.gcs {
                body["gcs"] = json!({
                    "endpoint": cfg.endpoint,
                    "token": cfg.token,
                    "ca_file": cfg.ca_file,
                });
            }
        }
        DestinationSpec::Azure { .. } => {
            if let Some(cfg) = &configs.azure {
                body["azure"] = json!({
                    "account": cfg.account,
                    "key": cfg.key,
                    "endpoint": cfg.endpoint,
                    "ca_file": cfg.ca_file,
                });
            }
        }
        DestinationSpec::Local(_) | DestinationSpec::S3 { .. } => {}
    }
    let started = call(ureq::post(&format!("{base}/api/v1/backups")), Some(&body))?;
    let job = started["job"]
        .as_u64()
        .ok_or_else(|| format!("no job id in {started}"))?;
    let pb = bar();
    loop {
        let j = call(
            ureq::get(&format!("{base}/api/v1/backups/jobs/{job}")),
            None,
        )?;
        pb.set_length(j["bytes_total"].as_u64().unwrap_or(0));
        pb.set_position(j["bytes_done"].as_u64().unwrap_or(0));
        pb.set_message(format!(
            "{}/{} files",
            j["files_done"].as_u64().unwrap_or(0),
            j["files_total"].as_u64().unwrap_or(0)
        ));
        match j["state"].as_str() {
            Some("running") => std::thread::sleep(POLL_INTERVAL),
            Some("succeeded") => {
                pb.finish();
                println!(
                    "backup {} complete: {} bytes uploaded to {}",
                    j["backup"].as_str().unwrap_or("?"),
                    j["uploaded_bytes"],
                    j["destination"].as_str().unwrap_or(to)
                );
                return Ok(());
            }
            _ => {
                pb.abandon();
                return Err(format!(
                    "backup job {job} failed: {}",
                    j["error"].as_str().unwrap_or("unknown error")
                ));
            }
        }
    }
}

fn list(dest: &str, s3: &S3Args) -> Result<(), String> {
    let d = open(dest, s3)?;
    let all = mantis_backup::list_backups(d.as_ref()).map_err(|e| e.to_string())?;
    println!(
        "{:<24} {:<12} {:<24} {:>6} {:>14} {:>14}",
        "ID", "KIND", "PARENT", "FILES", "RAW_BYTES", "UPLOADED"
    );
    for m in all {
        println!(
            "{:<24} {:<12} {:<24} {:>6} {:>14} {:>14}",
            m.id,
            m.kind,
            m.parent.as_deref().unwrap_or("-"),
            m.files.len(),
            m.raw_bytes(),
            m.uploaded_bytes()
        );
    }
    Ok(())
}

fn verify(dest: &str, id: Option<String>, s3: &S3Args) -> Result<(), String> {
    let d = open(dest, s3)?;
    let pb = bar();
    let report = mantis_backup::verify(d.as_ref(), id.as_deref(), &mut |p| show(&pb, p));
    match report {
        Ok(r) => {
            pb.finish();
            println!(
                "backup {} OK: {} files, {} raw bytes, {} stored bytes",
                r.backup, r.files, r.raw_bytes, r.stored_bytes
            );
            Ok(())
        }
        Err(e) => {
            pb.abandon();
            Err(format!("verification FAILED: {e}"))
        }
    }
}

fn restore(from: &str, id: Option<String>, data_dir: &Path, s3: &S3Args) -> Result<(), String> {
    let d = open(from, s3)?;
    let pb = bar();
    match mantis_backup::restore(d.as_ref(), id.as_deref(), data_dir, &mut |p| show(&pb, p)) {
        Ok(m) => {
            pb.finish();
            println!(
                "restored backup {} ({} shards, {} files) into {}",
                m.id,
                m.shard_count,
                m.files.len(),
                data_dir.display()
            );
            Ok(())
        }
        Err(e) => {
            pb.abandon();
            Err(format!("restore refused: {e}"))
        }
    }
}

/// Issue 10: `restore --to-time/--to-lsn`.
fn restore_to_point(
    from: &str,
    time: Option<String>,
    lsn: Option<u64>,
    data_dir: &Path,
    s3: &S3Args,
) -> Result<(), String> {
    use mantis_backup::pitr::{parse_time_ms, PitrTarget};
    let target = match (time, lsn) {
        (Some(t), _) => PitrTarget::TimeMs(parse_time_ms(&t).map_err(|e| e.to_string())?),
        (None, Some(n)) => PitrTarget::Lsn(n),
        (None, None) => return Err("--to-time or --to-lsn".into()),
    };
    let d = open(from, s3)?;
    let pb = bar();
    let done =
        mantis_backup::pitr::restore_to_point(d.as_ref(), target, data_dir, &mut |p| show(&pb, p));
    match done {
        Ok(r) => {
            pb.finish();
            println!(
                "restored backup {} into {} and replayed the archived WAL to {:?}:",
                r.backup,
                data_dir.display(),
                r.target
            );
            for s in &r.shards {
                println!(
                    "  shard {}: {} records after LSN {}, last LSN {}, last commit {}",
                    s.shard,
                    s.replayed_records,
                    s.base_flushed_lsn,
                    s.last_lsn,
                    s.last_commit_ms.map_or("-".into(), |t| t.to_string())
                );
            }
            println!("verified: the restored directory opened and replayed every record");
            if !r.reached_target() {
                eprintln!("mantisctl: warning: the archive ends before the target on some shard: restored as far as it goes");
            }
            Ok(())
        }
        Err(e) => {
            pb.abandon();
            Err(format!("point-in-time restore refused: {e}"))
        }
    }
}

fn checkpoint(c: CheckpointCommand) -> Result<(), String> {
    let url = |server: &str, rest: &str| {
        format!("{}/api/v1/checkpoints{rest}", server.trim_end_matches('/'))
    };
    let answer = match c {
        CheckpointCommand::List { server } => call(ureq::get(&url(&server, "")), None)?,
        CheckpointCommand::Create { server, kind } => call(
            ureq::post(&url(&server, "")),
            Some(&json!({ "kind": kind })),
        )?,
        CheckpointCommand::Show { server, id } => {
            call(ureq::get(&url(&server, &format!("/{id}"))), None)?
        }
        CheckpointCommand::Delete { server, id } => {
            call(ureq::delete(&url(&server, &format!("/{id}"))), None)?
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string())
    );
    Ok(())
}
