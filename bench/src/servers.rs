//! Servers the harness starts itself: mantisd and redis-server on throwaway data directories
//! under /var/tmp and free loopback ports. Each is held by a [`ServerGuard`] that stops it and
//! removes its directory on drop (normal end, error, Ctrl-C); PR_SET_PDEATHSIG kills it if the
//! harness itself dies without unwinding (release builds abort on panic).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::BenchError;

/// How long a server may take to answer PING after start (mantisd replays its WAL first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval while waiting for a server to come up or go away.
const POLL: Duration = Duration::from_millis(50);
/// Where throwaway data directories go: the ext4 root filesystem, never tmpfs.
pub const SCRATCH_ROOT: &str = "/var/tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RedisPersistence {
    /// appendonly yes, appendfsync always: durable per write, like mantisd.
    Always,
    /// appendonly yes, appendfsync everysec: up to a second of writes lost on a crash.
    Everysec,
    /// No AOF, no RDB snapshots.
    None,
}

impl RedisPersistence {
    pub fn name(self) -> &'static str {
        match self {
            RedisPersistence::Always => "redis-always",
            RedisPersistence::Everysec => "redis-everysec",
            RedisPersistence::None => "redis-nopersist",
        }
    }

    /// The redis-server flags, as the report shows them.
    pub fn settings(self) -> String {
        self.args().join(" ")
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            RedisPersistence::Always => &["--appendonly", "yes", "--appendfsync", "always"],
            RedisPersistence::Everysec => &["--appendonly", "yes", "--appendfsync", "everysec"],
            RedisPersistence::None => &["--appendonly", "no"],
        }
    }
}

/// A running server the harness started.
pub struct ServerGuard {
    pub name: String,
    pub resp_addr: SocketAddr,
    /// mantisd only.
    pub http_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub version: String,
    child: Option<Child>,
    keep_dir: bool,
}

/// A loopback port nobody listens on now (the kernel's choice; other engineers' tests start
/// servers too, so fixed ports could answer for someone else).
pub fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::Server {
        name: "port".into(),
        reason: e.to_string(),
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::Server {
            name: "port".into(),
            reason: e.to_string(),
        })
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn scratch_dir(name: &str) -> Result<PathBuf, BenchError> {
    let dir = Path::new(SCRATCH_ROOT).join(format!(
        "mantis-bench-{name}-{}-{}",
        std::process::id(),
        free_port()?
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::DataDir {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    Ok(dir)
}

fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Child, BenchError> {
    let err = |reason: String| BenchError::Server {
        name: name.to_string(),
        reason,
    };
    let log_file =
        std::fs::File::create(log).map_err(|e| err(format!("log {}: {e}", log.display())))?;
    let log_err = log_file.try_clone().map_err(|e| err(e.to_string()))?;
    cmd.stdin(Stdio::null()).stdout(log_file).stderr(log_err);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| err(format!("spawn {:?}: {e}", cmd.get_program())))
}

/// Starts mantisd from `binary` on a fresh data directory with `extra` flags.
pub fn start_mantisd(
    binary: &Path,
    name: &str,
    extra: &[String],
) -> Result<ServerGuard, BenchError> {
    let dir = scratch_dir(name)?;
    let (resp, http, pg) = (free_port()?, free_port()?, free_port()?);
    let mut cmd = Command::new(binary);
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--resp-addr", &loopback(resp).to_string()])
        .args(["--http-addr", &loopback(http).to_string()])
        .args(["--pg-addr", &loopback(pg).to_string()])
        .args(extra);
    let version = Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let child = spawn(name, cmd, &dir.join("server.log"))?;
    let mut guard = ServerGuard {
        name: name.to_string(),
        resp_addr: loopback(resp),
        http_addr: Some(loopback(http)),
        data_dir: dir,
        version,
        child: Some(child),
        keep_dir: false,
    };
    guard.wait_ready()?;
    Ok(guard)
}

/// Starts redis-server with the given persistence on a fresh directory.
pub fn start_redis(persistence: RedisPersistence) -> Result<ServerGuard, BenchError> {
    let name = persistence.name();
    let dir = scratch_dir(name)?;
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--daemonize",
        "no",
        "--save",
        "",
    ])
    .arg("--dir")
    .arg(&dir)
    .args(persistence.args());
    let version = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let child = spawn(name, cmd, &dir.join("server.log"))?;
    let mut guard = ServerGuard {
        name: name.to_string(),
        resp_addr: loopback(port),
        http_addr: None,
        data_dir: dir,
        version,
        child: Some(child),
        keep_dir: false,
    };
    guard.wait_ready()?;
    Ok(guard)
}

/// One blocking RESP PING; true on +PONG.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A blocking HTTP GET; the body on 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The sum over shards of a mantisd counter (e.g. `mantis_compactions_total`) from /metrics.
pub fn metric_sum(metrics_text: &str, name: &str) -> f64 {
    metrics_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl ServerGuard {
    fn wait_ready(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ping(self.resp_addr) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(self.fail(format!("exited ({status}) before answering PING")));
                }
            }
            if Instant::now() >= deadline {
                return Err(self.fail(format!("no PONG within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    fn fail(&mut self, reason: String) -> BenchError {
        let log = std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        // Keep the directory (and log) of a server that failed to start, for the operator.
        self.keep_dir = true;
        BenchError::Server {
            name: self.name.clone(),
            reason: format!(
                "{reason}; log {} ends: {}",
                self.data_dir.join("server.log").display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        }
    }

    /// SIGTERM, wait (bounded), SIGKILL if needed; remove the data directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(POLL),
                }
            }
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn metric_sums_add_every_shard() {
        let text = "# HELP mantis_compactions_total x\n# TYPE mantis_compactions_total counter\n\
                    mantis_compactions_total{shard=\"0\"} 3\nmantis_compactions_total{shard=\"1\"} 4\n\
                    mantis_compactions_totalx 100\nmantis_flushes_total{shard=\"0\"} 9\n";
        assert_eq!(metric_sum(text, "mantis_compactions_total"), 7.0);
        assert_eq!(metric_sum(text, "mantis_flushes_total"), 9.0);
        assert_eq!(metric_sum(text, "absent"), 0.0);
    }

    #[test]
    fn redis_starts_answers_and_is_stopped_by_drop() {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("redis-server not installed; .ci/run installs it");
            return;
        }
        let guard = start_redis(RedisPersistence::None).unwrap();
        let (addr, dir) = (guard.resp_addr, guard.data_dir.clone());
        assert!(ping(addr));
        assert!(dir.starts_with(SCRATCH_ROOT));
        drop(guard);
        assert!(!ping(addr));
        assert!(!dir.exists());
    }
}
