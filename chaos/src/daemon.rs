//! Starting, killing and restarting the real `mantisd` on loopback ports and a throwaway data
//! directory; readiness is its sd_notify READY=1 (an event), with the process watched so an
//! early exit is reported at once.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{io_err, ChaosError, Result};

/// How long recovery may take before the harness calls it hung, by default.
pub const START_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);
static START_TIMEOUT_MS: AtomicU64 = AtomicU64::new(120_000);

/// Sets the start timeout for every daemon of this process (`--start-timeout-secs`).
pub fn set_start_timeout(t: Duration) {
    START_TIMEOUT_MS.store(t.as_millis() as u64, Ordering::Relaxed);
}

pub fn start_timeout() -> Duration {
    Duration::from_millis(START_TIMEOUT_MS.load(Ordering::Relaxed))
}
/// How much of the daemon's log goes into an error message.
const LOG_TAIL_BYTES_MAX: usize = 4000;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub memtable_bytes: u64,
    pub wal_segment_bytes: u64,
    pub block_cache_bytes: u64,
    pub extra_args: Vec<String>,
    /// A cgroup v1 `cgroup.procs` file the daemon is moved into right after it starts.
    pub cgroup_procs: Option<PathBuf>,
    pub seed: u64,
}

impl DaemonConfig {
    pub fn new(bin: &Path, data_dir: &Path, seed: u64) -> DaemonConfig {
        DaemonConfig {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            shards: 2,
            memtable_bytes: 4 << 20,
            wal_segment_bytes: 4 << 20,
            block_cache_bytes: 8 << 20,
            extra_args: Vec::new(),
            cgroup_procs: None,
            seed,
        }
    }
}

/// How a start ended.
#[derive(Debug)]
pub enum Start {
    Ready {
        recovery: Duration,
    },
    /// The daemon refused to start (exit status, log tail): expected after some corruptions.
    Refused {
        status: String,
        log_tail: String,
    },
}

pub struct Daemon {
    pub cfg: DaemonConfig,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    /// PostgreSQL wire port (fresh on every start, like the others).
    pub pg: SocketAddr,
    child: Option<Child>,
    notify: UnixDatagram,
    notify_path: PathBuf,
    log_path: PathBuf,
}

fn free_port(path: &Path) -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err(path))?;
    Ok(l.local_addr().map_err(io_err(path))?.port())
}

impl Daemon {
    /// Prepares (does not start) a daemon; `run_dir` holds its notify socket and log.
    pub fn new(cfg: DaemonConfig, run_dir: &Path) -> Result<Daemon> {
        std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
        let notify_path = run_dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).map_err(io_err(&notify_path))?;
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(io_err(&notify_path))?;
        Ok(Daemon {
            resp: SocketAddr::from(([127, 0, 0, 1], free_port(run_dir)?)),
            http: SocketAddr::from(([127, 0, 0, 1], free_port(run_dir)?)),
            pg: SocketAddr::from(([127, 0, 0, 1], free_port(run_dir)?)),
            cfg,
            child: None,
            notify,
            notify_path,
            log_path: run_dir.join("mantisd.log"),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts the daemon and waits for READY=1 or its exit. The time returned is start → ready.
    pub fn start(&mut self) -> Result<Start> {
        assert!(self.child.is_none(), "start of a running daemon");
        // Fresh ports on every start: a port picked once can be taken as an ephemeral source
        // port by one of the harness's own client connections while the daemon is down.
        self.resp = SocketAddr::from(([127, 0, 0, 1], free_port(&self.log_path)?));
        self.http = SocketAddr::from(([127, 0, 0, 1], free_port(&self.log_path)?));
        self.pg = SocketAddr::from(([127, 0, 0, 1], free_port(&self.log_path)?));
        // Drop stale datagrams from a previous life.
        let mut buf = [0u8; 4096];
        self.notify
            .set_nonblocking(true)
            .map_err(io_err(&self.notify_path))?;
        while self.notify.recv(&mut buf).is_ok() {}
        self.notify
            .set_nonblocking(false)
            .map_err(io_err(&self.notify_path))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_err(&self.log_path))?;
        let c = &self.cfg;
        let mut cmd = Command::new(&c.bin);
        cmd.arg("--data-dir")
            .arg(&c.data_dir)
            .arg("--resp-addr")
            .arg(self.resp.to_string())
            .arg("--http-addr")
            .arg(self.http.to_string())
            .arg("--pg-addr")
            .arg(self.pg.to_string())
            .arg("--shards")
            .arg(c.shards.to_string())
            .arg("--pin-cpus")
            .arg("false")
            .arg("--memtable-bytes-max")
            .arg(c.memtable_bytes.to_string())
            .arg("--wal-segment-bytes")
            .arg(c.wal_segment_bytes.to_string())
            .arg("--block-cache-bytes")
            .arg(c.block_cache_bytes.to_string())
            .arg("--idle-timeout-secs")
            .arg("0")
            .args(&c.extra_args)
            .env("NOTIFY_SOCKET", &self.notify_path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let started = Instant::now();
        let child = cmd.spawn().map_err(io_err(&c.bin))?;
        if let Some(procs) = &c.cgroup_procs {
            std::fs::write(procs, child.id().to_string()).map_err(io_err(procs))?;
        }
        self.child = Some(child);
        self.wait_ready(started)
    }

    fn wait_ready(&mut self, started: Instant) -> Result<Start> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().map_err(io_err(&self.cfg.bin))? {
                    self.child = None;
                    return Ok(Start::Refused {
                        status: status.to_string(),
                        log_tail: self.log_tail(),
                    });
                }
            }
            if started.elapsed() > start_timeout() {
                return Err(ChaosError::NotReady {
                    seed: self.cfg.seed,
                    waited_ms: started.elapsed().as_millis(),
                    log_tail: self.log_tail(),
                });
            }
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]);
                    if msg.lines().any(|l| l == "READY=1") {
                        return Ok(Start::Ready {
                            recovery: started.elapsed(),
                        });
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(io_err(&self.notify_path)(e)),
            }
        }
    }

    /// Starts and insists on ready.
    pub fn start_ready(&mut self) -> Result<Duration> {
        match self.start()? {
            Start::Ready { recovery } => Ok(recovery),
            Start::Refused { status, log_tail } => Err(ChaosError::ExitedEarly {
                seed: self.cfg.seed,
                status,
                log_tail,
            }),
        }
    }

    /// Whether the process is still running (reaps it if not).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Exit status if the process ended (reaping it).
    pub fn exit_status(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.to_string())
    }

    pub fn signal(&mut self, sig: Signal) -> Result<()> {
        if let Some(pid) = self.pid() {
            let pid = i32::try_from(pid).map_err(|_| ChaosError::Host {
                what: "signal".into(),
                detail: format!("pid {pid} out of range"),
            })?;
            let _ = kill(Pid::from_raw(pid), sig);
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        if let Some(mut c) = self.child.take() {
            c.wait().map_err(io_err(&self.cfg.bin))?;
        }
        Ok(())
    }

    /// SIGTERM (graceful drain and flush) and reap; returns the exit status.
    pub fn stop(&mut self) -> Result<Option<String>> {
        self.signal(Signal::SIGTERM)?;
        match self.child.take() {
            Some(mut c) => Ok(Some(c.wait().map_err(io_err(&self.cfg.bin))?.to_string())),
            None => Ok(None),
        }
    }

    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        let cut = s.len().saturating_sub(LOG_TAIL_BYTES_MAX);
        let cut = (cut..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[cut..].to_string()
    }

    /// One HTTP GET on a fresh connection; (status, body).
    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        crate::http::get(self.http, path)
    }

    /// Sum of a Prometheus family over its labels, from /metrics.
    pub fn metric_sum(&self, family: &str) -> std::io::Result<f64> {
        let (_, body) = self.http_get("/metrics")?;
        Ok(crate::http::metric_sum(&body, family))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Finds mantisd: the given path, next to this binary, or target/{release,debug} above it.
pub fn find_mantisd(given: Option<&Path>) -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Some(p) = given {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        tried.push(p.to_path_buf());
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            for cand in [
                dir.join("mantisd"),
                dir.join("debug/mantisd"),
                dir.join("release/mantisd"),
            ] {
                if cand.is_file() {
                    return Ok(cand);
                }
                tried.push(cand);
            }
        }
    }
    Err(ChaosError::NoMantisd { tried })
}
