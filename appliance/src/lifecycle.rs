//! The process lifecycle, on the main thread: logging, binding, recovery (`Engine::open`),
//! starting the front ends on every shard, sd_notify (READY, STATUS, WATCHDOG, STOPPING), and
//! the graceful shutdown on SIGTERM/SIGINT (stop accepting, drain, flush, exit 0). A second
//! signal exits at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mantis_engine::{Codec, Engine, EngineConfig, EngineError, EngineHandle};
use nix::sys::signal::{SigSet, Signal};
use sd_notify::NotifyState;
use thiserror::Error;

use crate::config::{CachePolicyName, ChecksumName, CompressionName, Config, LogFormat};
use crate::metrics::{Metrics, MetricsError};
use crate::net::{BindError, ListenerSet};
use crate::server::Shared;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("signal handling: {0}")]
    Signals(#[from] nix::Error),
    #[error("starting the signal thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("logging: {0}")]
    Logging(String),
    #[error(transparent)]
    Rpo(#[from] crate::rpo::RpoError),
}

/// Installs the tracing subscriber: text or JSON lines on stderr (the journal under systemd).
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), DaemonError> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| DaemonError::Logging(format!("log_level {filter:?}: {e}")))?;
    // Colour codes only for a person at a terminal: in the journal or a log file they are
    // noise that breaks grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| DaemonError::Logging(e.to_string()))
}

/// Sends states to the service manager when there is one (NOTIFY_SOCKET set). A failure is
/// logged, never fatal: the daemon works the same without systemd.
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn engine_config(c: &Config) -> EngineConfig {
    EngineConfig {
        data_dir: c.data_dir.clone(),
        // "One per CPU" applies to a new data directory; an existing one keeps the count it
        // was created with (keys are placed by hash modulo the count), even on another host.
        shards: match c.shards {
            0 => mantis_engine::layout::read_shards(&c.data_dir).unwrap_or(0),
            n => n,
        },
        pin_cpus: c.pin_cpus,
        memtable_bytes_max: c.memtable_bytes_max,
        block_cache_bytes: c.block_cache_bytes,
        cache_policy: match c.cache_policy {
            CachePolicyName::Lru => mantis_engine::CachePolicy::Lru,
            CachePolicyName::Lfu => mantis_engine::CachePolicy::Lfu,
        },
        compression: match c.compression {
            CompressionName::None => Codec::None,
            CompressionName::Lz4 => Codec::Lz4,
            CompressionName::Snappy => Codec::Snappy,
            CompressionName::Zstd => Codec::Zstd {
                level: c.zstd_level,
            },
        },
        value_bytes_max: c.value_bytes_max,
        key_bytes_max: c.key_bytes_max,
        wal_segment_bytes: c.wal_segment_bytes,
        repair_wal: c.repair_wal,
        scrub: c.storage.scrub.clone(),
        cold: c.storage.cold.clone(),
        keyspace_codecs: c.storage.keyspace_codecs.clone(),
        block_checksum: match c.block_checksum {
            ChecksumName::Crc32 => mantis_engine::ChecksumAlgorithm::Crc32,
            ChecksumName::Md5 => mantis_engine::ChecksumAlgorithm::Md5,
            ChecksumName::Sha256 => mantis_engine::ChecksumAlgorithm::Sha256,
        },
        // Issue 7.
        wal_checksum: match c.wal_checksum {
            ChecksumName::Crc32 => mantis_engine::ChecksumAlgorithm::Crc32,
            ChecksumName::Md5 => mantis_engine::ChecksumAlgorithm::Md5,
            ChecksumName::Sha256 => mantis_engine::ChecksumAlgorithm::Sha256,
        },
        // Issue 10.
        checkpoint_barrier_timeout_ms: c.checkpoint_barrier_timeout_ms,
        // Issue 9.
        idle_poll_us: c.idle_poll_us,
        ..EngineConfig::default()
    }
}

/// Blocks SIGTERM and SIGINT in this thread and every thread started after it, and starts the
/// thread that waits for them: the first is sent on the returned channel, a second one exits
/// the process at once.
fn start_signal_thread() -> Result<flume::Receiver<Signal>, DaemonError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()?;
    let (tx, rx) = flume::bounded(1);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first = true;
            loop {
                match set.wait() {
                    Ok(signal) if first => {
                        first = false;
                        tracing::info!(%signal, "shutdown requested: draining");
                        let _ = tx.try_send(signal);
                    }
                    Ok(signal) => {
                        tracing::warn!(%signal, "second signal: exiting without draining");
                        std::process::exit(128 + signal as i32);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "sigwait failed");
                        return;
                    }
                }
            }
        })?;
    Ok(rx)
}

/// Pings the watchdog while recovery runs (it can take a while on a big WAL) until dropped.
struct RecoveryPinger {
    stop: Option<flume::Sender<()>>,
}

impl RecoveryPinger {
    fn start(watchdog: Option<Duration>) -> RecoveryPinger {
        let Some(timeout) = watchdog else {
            return RecoveryPinger { stop: None };
        };
        let (tx, rx) = flume::bounded::<()>(1);
        let started = std::thread::Builder::new()
            .name("recovery-watchdog".into())
            .spawn(move || {
                while let Err(flume::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout / 2) {
                    notify(&[NotifyState::Watchdog]);
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "no watchdog pings during recovery");
        }
        RecoveryPinger { stop: Some(tx) }
    }
}

impl Drop for RecoveryPinger {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Whether every shard's executor runs tasks: each is asked to answer within `within`.
fn shards_alive(engine: &EngineHandle, within: Duration) -> bool {
    let n = engine.shard_count();
    let (tx, rx) = flume::bounded::<usize>(n);
    for shard in 0..n {
        let tx = tx.clone();
        if engine
            .spawn_on(shard, move || async move {
                let _ = tx.send(shard);
            })
            .is_err()
        {
            return false;
        }
    }
    let deadline = Instant::now() + within;
    (0..n).all(|_| rx.recv_deadline(deadline).is_ok())
}

/// How long shutdown waits for the audit thread's final fdatasync.
const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the daemon until a signal; returns once the engine is shut down.
pub fn run(config: Config) -> Result<(), DaemonError> {
    let signals = start_signal_thread()?;
    // Issue 9: before any shard builds its lock manager (lazily, on its first lock).
    if !mantis_sql::txlock::configure(config.locks.clone()) {
        tracing::warn!("lock configuration already set in this process; [locks] ignored");
    }
    let watchdog = sd_notify::watchdog_enabled();
    notify(&[NotifyState::Status("binding listeners")]);
    let mut resp = ListenerSet::bind_first("resp_addr", config.resp_addr)?;
    let mut http = ListenerSet::bind_first("http_addr", config.http_addr)?;
    let mut pg = ListenerSet::bind_first("pg_addr", config.pg_addr)?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        resp = %resp.addr,
        http = %http.addr,
        pg = %pg.addr,
        "starting: recovering shards"
    );
    notify(&[NotifyState::Status("recovering")]);
    let recovery_started = Instant::now();
    let engine = {
        let _pinger = RecoveryPinger::start(watchdog);
        Engine::open(engine_config(&config))?
    };
    let handle = engine.handle();
    let shards = handle.shard_count();
    tracing::info!(
        shards,
        recovery_ms = recovery_started.elapsed().as_millis(),
        "recovery finished"
    );
    resp.fill(shards)?;
    http.fill(shards)?;
    pg.fill(shards)?;
    let mut names = crate::resp::commands::metric_names();
    names.extend(crate::http::metric_names());
    names.push(("resp", "other"));
    names.push(("http", "other"));
    names.extend(
        crate::pg::listen::STATEMENT_KINDS
            .iter()
            .map(|k| ("pg", *k)),
    );
    let metrics = Metrics::new(&names)?;
    let (drained_tx, drained_rx) = flume::bounded(1);
    let shared = Arc::new(Shared::new(config, handle.clone(), metrics, drained_tx));
    let (resp_addr, http_addr, pg_addr) = (resp.addr, http.addr, pg.addr);
    let fds = resp
        .into_fds()
        .into_iter()
        .zip(http.into_fds())
        .zip(pg.into_fds());
    for (shard, ((resp_fd, http_fd), pg_fd)) in fds.enumerate() {
        let shared = Arc::clone(&shared);
        handle.spawn_on(shard, move || async move {
            crate::listen::start_shard(Arc::clone(&shared), resp_fd, http_fd);
            crate::pg::listen::start_shard(shared, pg_fd);
        })?;
    }
    // Issue 10: WAL archiving starts before READY, so no acknowledged write escapes it.
    crate::rpo::start(&shared.config.rpo, &handle, shared.metrics.registry())?;
    shared.set_ready();
    // Issue 8: audit, alerts and the disk gauges run from READY on, not from the first request.
    crate::monitoring::ensure_started(&shared);
    // Issue 10: cron-scheduled backups (a task on shard 0).
    crate::backup_schedule::start(&shared);
    let status =
        format!("serving: resp {resp_addr}, http {http_addr}, pg {pg_addr}, {shards} shards");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!(%resp_addr, %http_addr, %pg_addr, shards, "ready");

    wait_for_signal(&signals, &handle, watchdog);
    shutdown(engine, &shared, &drained_rx)
}

/// Blocks until the first SIGTERM/SIGINT, pinging the watchdog meanwhile when enabled (only
/// while every shard still runs tasks, so a wedged executor gets the process restarted).
fn wait_for_signal(
    signals: &flume::Receiver<Signal>,
    engine: &EngineHandle,
    watchdog: Option<Duration>,
) {
    let tick = watchdog.map_or(Duration::from_secs(3600), |t| t / 2);
    loop {
        match signals.recv_timeout(tick) {
            Ok(_) | Err(flume::RecvTimeoutError::Disconnected) => return,
            Err(flume::RecvTimeoutError::Timeout) => {
                if watchdog.is_none() {
                    continue;
                }
                if shards_alive(engine, tick / 2) {
                    notify(&[NotifyState::Watchdog]);
                } else {
                    tracing::error!("a shard did not answer: withholding the watchdog ping");
                }
            }
        }
    }
}

fn shutdown(
    engine: Engine,
    shared: &Arc<Shared>,
    drained_rx: &flume::Receiver<()>,
) -> Result<(), DaemonError> {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining connections"),
    ]);
    shared.start_draining();
    let handle = engine.handle();
    for shard in 0..handle.shard_count() {
        // A shard that cannot take the job is already gone; nothing to drain there.
        let _ = handle.spawn_on(shard, || async { crate::server::drain_this_shard() });
    }
    let deadline = Instant::now() + shared.config.drain_timeout;
    while shared.connections_open() > 0 {
        if drained_rx.recv_deadline(deadline).is_err() {
            tracing::warn!(
                open = shared.connections_open(),
                "drain timeout: flushing with connections still open"
            );
            break;
        }
    }
    // Issue 8: the records of every drained request are queued; write and fdatasync them
    // before the process exits (the audit thread would otherwise sync them only on its next
    // tick, up to audit_flush_interval_ms later).
    if let Err(reason) = crate::monitoring::flush_audit(AUDIT_FLUSH_TIMEOUT) {
        tracing::error!(%reason, "audit trail not flushed at shutdown");
    }
    notify(&[NotifyState::Status("flushing memtables")]);
    let started = Instant::now();
    // Issue 10: the archiver ships what is durable (all writes drained) and stops.
    crate::rpo::stop();
    engine.shutdown()?;
    tracing::info!(
        flush_ms = started.elapsed().as_millis(),
        "shut down cleanly"
    );
    notify(&[NotifyState::Status("stopped")]);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Cli, FileConfig};

    /// Issue 10: a configured checkpoint barrier bound reaches the engine (it used to stop at
    /// the engine's default whatever the operator wrote).
    #[test]
    fn the_checkpoint_barrier_timeout_reaches_the_engine() {
        let file: FileConfig = toml::from_str("checkpoint_barrier_timeout_ms = 1234\n").unwrap();
        let c = Config::resolve(Cli::default(), file).unwrap();
        assert_eq!(engine_config(&c).checkpoint_barrier_timeout_ms, 1234);
    }
}
