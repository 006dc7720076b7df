//! The daemon's side of `mantis-monitor`: the `[monitor]` config section, the process-wide
//! monitor (audit queue, alert engine), and the two threads that drive it.
//!
//! - The audit thread owns the [`AuditWriter`]: shards hand it records over a bounded queue
//!   (`audit_queue_records_max`) and never touch the file; it chains them, writes a batch and
//!   fdatasyncs once per `audit_flush_interval_ms` (or when `audit_batch_records_max` are
//!   waiting), and writes an anchor of the chain head to the log every
//!   `audit_anchor_interval_secs`. A full queue blocks the sending shard (backpressure)
//!   rather than losing a record. RESP pipelines send their records as one message per
//!   pipeline ([`PendingAudit`], [`record_deferred`]): one channel operation and at most one
//!   wake-up of the audit thread per pipeline instead of per command (issue 8's overhead).
//! - The alerts thread, every `alerts_eval_interval_ms`, has shard 0 refresh the registry
//!   (the same functions `/metrics` and `/health` run, called directly: no socket), evaluates
//!   the rules on the registry's values and delivers events to the channels with retries.
//!
//! The monitor starts when the daemon turns READY (`lifecycle::run`; requests also call the
//! idempotent [`ensure_started`]). At shutdown, after the connections drained,
//! [`flush_audit`] has the audit thread write and fdatasync everything queued, so a clean
//! exit loses no record (issue 8).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mantis_monitor::alerts::{default_rules, Engine, Rule};
use mantis_monitor::audit::{AuditEvent, AuditWriter};
use mantis_monitor::channels::{deliver, Channel, ChannelKind, RetryPolicy};
use serde::Deserialize;

use crate::server::{now_ms, Shared};

/// `[monitor]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Per-command metrics (counters, latency histograms). Off only to measure their cost.
    pub metrics: bool,
    pub audit: bool,
    pub audit_flush_interval_ms: u64,
    pub audit_queue_records_max: usize,
    pub audit_batch_records_max: usize,
    pub audit_anchor_interval_secs: u64,
    pub alerts: bool,
    pub alerts_eval_interval_ms: u64,
    pub alert_history_events_max: usize,
    /// Empty: the shipped default rules.
    pub rules: Vec<Rule>,
    /// Empty: one `log` channel.
    pub channels: Vec<Channel>,
    pub retry: RetryPolicy,
    /// Below this many free bytes on the data directory's filesystem, health is degraded.
    pub disk_free_bytes_min: u64,
    /// Slow-query log (RESP commands, PostgreSQL statements): a warning with target
    /// `slow_query` for each one that took at least this long. 0 logs every one, -1 none
    /// (PostgreSQL's `log_min_duration_statement`).
    pub slow_query_ms: i64,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            metrics: true,
            audit: true,
            audit_flush_interval_ms: 200,
            audit_queue_records_max: 65_536,
            audit_batch_records_max: 4_096,
            audit_anchor_interval_secs: 60,
            alerts: true,
            alerts_eval_interval_ms: 15_000,
            alert_history_events_max: 1_000,
            rules: Vec::new(),
            channels: Vec::new(),
            retry: RetryPolicy::default(),
            disk_free_bytes_min: 1 << 30,
            slow_query_ms: 1000,
        }
    }
}

/// The process-wide monitor.
pub struct Monitor {
    audit_tx: Option<SyncSender<AuditMsg>>,
    pub audit_queued: AtomicU64,
    pub alerts: Mutex<Engine>,
    pub data_dir: PathBuf,
}

static MONITOR: OnceLock<Monitor> = OnceLock::new();

/// What the audit thread receives: records, and flush requests answered once the records
/// queued before them are on disk (fdatasync).
enum AuditMsg {
    Record(AuditEvent),
    /// One shard's pending records ([`record_deferred`]), in the order they were taken: one
    /// channel send (and at most one wake-up of the audit thread) for a whole pipeline.
    Records(Vec<AuditEvent>),
    Flush(SyncSender<Result<(), String>>),
}

/// Writes and fdatasyncs every audit record queued so far, waiting at most `within`. Called
/// at shutdown once the connections drained; a no-op when auditing is off.
pub fn flush_audit(within: Duration) -> Result<(), String> {
    let Some(tx) = MONITOR.get().and_then(|m| m.audit_tx.as_ref()) else {
        return Ok(());
    };
    let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
    tx.send(AuditMsg::Flush(ack_tx))
        .map_err(|_| "audit thread gone".to_string())?;
    ack_rx
        .recv_timeout(within)
        .map_err(|e| format!("audit flush did not answer: {e}"))?
}
/// Read on the data path; set once from the config when the monitor starts.
static METRICS_ENABLED: AtomicBool = AtomicBool::new(true);

pub fn metrics_enabled() -> bool {
    METRICS_ENABLED.load(Ordering::Relaxed)
}

/// Slow-query threshold in µs; `u64::MAX` = off. Set when the monitor starts.
static SLOW_QUERY_US: AtomicU64 = AtomicU64::new(u64::MAX);

/// Logs a RESP command or SQL statement that took `elapsed` when that reaches the configured
/// threshold (one relaxed load on the fast path).
pub fn note_slow(
    protocol: &'static str,
    command: &str,
    client: impl std::fmt::Display,
    statement: &str,
    elapsed: Duration,
) {
    let threshold_us = SLOW_QUERY_US.load(Ordering::Relaxed);
    let elapsed_us = elapsed.as_micros() as u64;
    if elapsed_us < threshold_us {
        return;
    }
    tracing::warn!(
        target: "slow_query",
        protocol,
        command,
        client = %client,
        statement = %truncate_target(statement.as_bytes()),
        elapsed_us,
        "slow query"
    );
}

/// The monitor, if started.
pub fn get() -> Option<&'static Monitor> {
    MONITOR.get()
}

/// Starts the monitor (threads included) once; later calls return the running one.
pub fn ensure_started(shared: &Arc<Shared>) -> &'static Monitor {
    if let Some(m) = MONITOR.get() {
        return m;
    }
    MONITOR.get_or_init(|| start(shared))
}

fn start(shared: &Arc<Shared>) -> Monitor {
    let config = shared.config.monitor.clone();
    METRICS_ENABLED.store(config.metrics, Ordering::Relaxed);
    let slow_us =
        u64::try_from(config.slow_query_ms).map_or(u64::MAX, |ms| ms.saturating_mul(1000));
    SLOW_QUERY_US.store(slow_us, Ordering::Relaxed);
    let data_dir = shared.config.data_dir.clone();
    shared.metrics.set_data_dir(&data_dir);
    let audit_dir = data_dir.join("audit");
    let audit_tx = if config.audit {
        start_audit(&config, audit_dir.clone())
    } else {
        None
    };
    let rules = if config.rules.is_empty() {
        default_rules()
    } else {
        config.rules.clone()
    };
    let history = audit_dir.join("alerts.jsonl");
    let engine = std::fs::create_dir_all(&audit_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            Engine::new(
                rules.clone(),
                Some(&history),
                config.alert_history_events_max,
            )
            .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|reason| {
            tracing::error!(%reason, "alert history unavailable: kept in memory only");
            // In-memory history cannot fail to open.
            Engine::new(rules, None, config.alert_history_events_max.max(1))
                .unwrap_or_else(|_| unreachable!("an engine without a file opens"))
        });
    let monitor = Monitor {
        audit_tx,
        audit_queued: AtomicU64::new(0),
        alerts: Mutex::new(engine),
        data_dir,
    };
    if config.alerts {
        start_alerts(shared, config);
    }
    monitor
}

fn start_audit(config: &MonitorConfig, dir: PathBuf) -> Option<SyncSender<AuditMsg>> {
    let writer = match AuditWriter::open(&dir, config.audit_batch_records_max.max(1)) {
        Ok(w) => w,
        Err(e) => {
            // A broken trail is kept as evidence; nothing is appended until an operator acts.
            tracing::error!(error = %e, "audit trail refused: auditing is OFF");
            return None;
        }
    };
    // The queue is bounded in records: a message carries at most AUDIT_PENDING_RECORDS_MAX.
    let queue_messages_max = (config.audit_queue_records_max / AUDIT_PENDING_RECORDS_MAX).max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel(queue_messages_max);
    let flush_interval = Duration::from_millis(config.audit_flush_interval_ms.max(1));
    let anchor_interval = Duration::from_secs(config.audit_anchor_interval_secs.max(1));
    let spawned = std::thread::Builder::new()
        .name("mantis-audit".into())
        .spawn(move || audit_loop(writer, rx, flush_interval, anchor_interval));
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::error!(error = %e, "audit thread did not start: auditing is OFF");
            None
        }
    }
}

fn audit_loop(
    mut writer: AuditWriter,
    rx: Receiver<AuditMsg>,
    flush_interval: Duration,
    anchor_interval: Duration,
) {
    let mut last_flush = Instant::now();
    let mut last_anchor = Instant::now();
    let mut anchored_seq = u64::MAX;
    let nap = Duration::from_micros(AUDIT_WRITER_NAP_US).min(flush_interval / 4);
    loop {
        let wait = flush_interval.saturating_sub(last_flush.elapsed());
        let open = match rx.recv_timeout(wait) {
            Ok(msg) => {
                take(&mut writer, msg);
                drain(&mut writer, &rx);
                // Nap, then take what came meanwhile. A sender that finds this thread
                // parked on the channel pays a futex wake and a task switch per message
                // (issue 8 profile: most of the trail's cost unpipelined); one napping is
                // not parked on the channel, so senders only queue. Records wait in memory
                // for the flush timer anyway, so a nap well below it costs no durability,
                // and the queue bound still blocks a shard that outruns the writer.
                std::thread::sleep(nap);
                drain(&mut writer, &rx);
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        if let Some(m) = MONITOR.get() {
            m.audit_queued
                .store(writer.unflushed() as u64, Ordering::Relaxed);
        }
        if !open || last_flush.elapsed() >= flush_interval {
            flush(&mut writer);
            last_flush = Instant::now();
        }
        if last_anchor.elapsed() >= anchor_interval && writer.head().seq != anchored_seq {
            let head = writer.head();
            tracing::info!(target: "audit_anchor", seq = head.seq, hash = %head.hash, "audit chain head");
            anchored_seq = head.seq;
            last_anchor = Instant::now();
        }
        if !open {
            return;
        }
    }
}

/// Takes what is queued without waiting.
fn drain(writer: &mut AuditWriter, rx: &Receiver<AuditMsg>) {
    while let Ok(msg) = rx.try_recv() {
        take(writer, msg);
    }
}

fn take(writer: &mut AuditWriter, msg: AuditMsg) {
    // One clock read per message, not per record (issue 8 profile: `clock_gettime` per
    // record was a fifth of the audit thread's time under -P 16): a pipeline's records were
    // taken within the same moment, and the chain orders them, not their timestamps.
    match msg {
        AuditMsg::Record(event) => append(writer, now_ms(), event),
        AuditMsg::Records(events) => {
            let ts_ms = now_ms();
            for event in events {
                append(writer, ts_ms, event);
            }
        }
        AuditMsg::Flush(ack) => {
            let result = writer.flush().map(|_| ()).map_err(|e| e.to_string());
            if let Some(m) = MONITOR.get() {
                m.audit_queued
                    .store(writer.unflushed() as u64, Ordering::Relaxed);
            }
            // The asker may have given up waiting: nothing to tell then.
            let _ = ack.try_send(result);
        }
    }
}

fn append(writer: &mut AuditWriter, ts_ms: u64, event: AuditEvent) {
    if writer.is_full() {
        flush(writer);
    }
    if let Err(e) = writer.append(ts_ms, event) {
        tracing::error!(error = %e, "audit record lost");
    }
}

fn flush(writer: &mut AuditWriter) {
    if let Err(e) = writer.flush() {
        tracing::error!(error = %e, "audit flush failed");
    }
}

/// Sends one record to the audit thread. Never blocks while the queue has room.
pub fn audit(event: AuditEvent) {
    send(AuditMsg::Record(event));
}

fn send(msg: AuditMsg) {
    let Some(tx) = MONITOR.get().and_then(|m| m.audit_tx.as_ref()) else {
        return;
    };
    match tx.try_send(msg) {
        Ok(()) => {}
        // Backpressure: the shard waits for the audit thread rather than drop a record.
        Err(TrySendError::Full(msg)) => {
            let _ = tx.send(msg);
        }
        Err(TrySendError::Disconnected(_)) => {
            tracing::error!("audit thread gone: record lost");
        }
    }
}

/// How long the audit thread sleeps after taking a message before it looks again (capped at a
/// quarter of `audit_flush_interval_ms`). Measured (docs/benchmarks.md, issue 8): 2 ms saved
/// ~15% of the daemon's CPU per unpipelined SET with the trail on.
pub const AUDIT_WRITER_NAP_US: u64 = 1_000;

/// Most records one thread gathers before they are sent, whatever the pipeline: bounds the
/// pending buffer and how late a record reaches the audit thread.
pub const AUDIT_PENDING_RECORDS_MAX: usize = 64;

thread_local! {
    /// This shard's records not yet sent to the audit thread (issue 8: one send per SET cost
    /// a channel operation and a wake-up of the audit thread per command; under `-P 16` that
    /// was a fifth of the SET throughput). Only [`record_deferred`] adds to it, only
    /// [`send_pending`] empties it.
    static PENDING: std::cell::RefCell<Vec<AuditEvent>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// Live [`PendingAudit`] guards on this thread (one per connection in a pipeline).
    static GUARDS: Cell<usize> = const { Cell::new(0) };
}

/// Queues a record on this thread; it is sent with the others of its pipeline when a
/// [`PendingAudit`] guard of the thread drops (or at once when [`AUDIT_PENDING_RECORDS_MAX`]
/// are waiting, or when no guard is live: nothing would send it then). Order is kept: the
/// trail receives this thread's records in the order taken.
pub fn record_deferred(event: AuditEvent) {
    if GUARDS.with(Cell::get) == 0 {
        send_pending();
        audit(event);
        return;
    }
    let full = PENDING.with(|p| {
        let mut pending = p.borrow_mut();
        pending.push(event);
        pending.len() >= AUDIT_PENDING_RECORDS_MAX
    });
    if full {
        send_pending();
    }
}

/// Sends this thread's pending records (if any) to the audit thread as one message.
pub fn send_pending() {
    let events = PENDING.with(|p| {
        let mut pending = p.borrow_mut();
        if pending.is_empty() {
            return None;
        }
        // Keep the buffer's capacity for the next pipeline.
        let events = pending.drain(..).collect::<Vec<_>>();
        Some(events)
    });
    if let Some(events) = events {
        assert!(events.len() <= AUDIT_PENDING_RECORDS_MAX);
        send(AuditMsg::Records(events));
    }
}

/// Sends the thread's pending records when dropped: held by whatever runs commands that call
/// [`record_deferred`] (a RESP pipeline), so that no exit path — error, early return, a
/// connection dropped at shutdown — leaves a record behind on the shard.
#[must_use = "the records are sent when the guard drops"]
pub struct PendingAudit(std::marker::PhantomData<*const ()>);

impl PendingAudit {
    pub fn new() -> PendingAudit {
        GUARDS.with(|g| g.set(g.get() + 1));
        // !Send: the count it keeps is this thread's.
        PendingAudit(std::marker::PhantomData)
    }
}

impl Default for PendingAudit {
    fn default() -> PendingAudit {
        PendingAudit::new()
    }
}

impl Drop for PendingAudit {
    fn drop(&mut self) {
        GUARDS.with(|g| {
            assert!(
                g.get() > 0,
                "guards are counted on the thread that made them"
            );
            g.set(g.get() - 1);
        });
        // Sent even while other connections' guards live: this pipeline's replies are about
        // to be written, and its records should not wait for another client's pipeline.
        send_pending();
    }
}

/// Keys and statements are cut to this many bytes in the trail.
const AUDIT_TARGET_BYTES_MAX: usize = 256;

pub fn truncate_target(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(AUDIT_TARGET_BYTES_MAX)];
    String::from_utf8_lossy(cut).into_owned()
}

/// One data-modifying or administrative call, as the front ends report it.
pub fn record(protocol: &str, who: &str, from: &str, what: &str, target: String, outcome: &str) {
    if MONITOR.get().is_none_or(|m| m.audit_tx.is_none()) {
        return;
    }
    audit(AuditEvent {
        who: who.to_owned().into(),
        from: from.to_owned().into(),
        protocol: protocol.to_owned().into(),
        what: what.to_owned().into(),
        target: target.into(),
        outcome: outcome.to_owned().into(),
    });
}

fn start_alerts(shared: &Arc<Shared>, config: MonitorConfig) {
    let shared = Arc::clone(shared);
    let channels = if config.channels.is_empty() {
        vec![Channel {
            name: "log".into(),
            kind: ChannelKind::Log,
            min_level: mantis_monitor::alerts::Level::Info,
        }]
    } else {
        config.channels.clone()
    };
    let interval = Duration::from_millis(config.alerts_eval_interval_ms.max(100));
    let spawned = std::thread::Builder::new()
        .name("mantis-alerts".into())
        .spawn(move || loop {
            // A periodic evaluation, not a wait for an event.
            std::thread::sleep(interval);
            if shared.is_draining() {
                return;
            }
            refresh_from_shards(&shared, REFRESH_TIMEOUT);
            let values = shared.metrics.values();
            evaluate(&values, &channels, &config.retry);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "alerts thread did not start: alerting is OFF");
    }
}

/// Evaluates the rules on `values` and delivers what fired, resolved or escalated.
pub fn evaluate(values: &BTreeMap<String, f64>, channels: &[Channel], retry: &RetryPolicy) {
    let Some(m) = MONITOR.get() else { return };
    let events = {
        let Ok(mut engine) = m.alerts.lock() else {
            return;
        };
        match engine.evaluate(now_ms(), &|name| values.get(name).copied()) {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(error = %e, "alert evaluation failed");
                return;
            }
        }
    };
    for event in &events {
        for d in deliver(channels, retry, event) {
            tracing::debug!(channel = %d.channel, attempts = d.attempts, ok = d.error.is_none(), "alert delivered");
        }
    }
}

/// How long the alerts thread waits for shard 0 to refresh the registry: the health check
/// itself gives the shards 2 s (`SHARD_PROBE_TIMEOUT`) twice.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the registry refresh of `/metrics` and the health verdict of `/health` on shard 0
/// (the engine's statistics live on the shards' executors) and waits for them, so that the
/// per-shard numbers and `health.status` are fresh for the rules.
pub fn refresh_from_shards(shared: &Arc<Shared>, within: Duration) {
    let (done_tx, done_rx) = flume::bounded::<()>(1);
    let s = Arc::clone(shared);
    let spawned = shared.engine.spawn_on(0, move || async move {
        crate::http::health::refresh_metrics(&s).await;
        // Sets the `health_status` gauge; the response itself is not needed.
        let _ = crate::http::health::health(&s).await;
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "registry refresh not started");
        return;
    }
    if done_rx.recv_timeout(within).is_err() {
        tracing::warn!(
            within_ms = within.as_millis() as u64,
            "registry refresh did not finish: rules evaluated on older values"
        );
    }
}

/// Whether records are being taken (checked before building one on the data path).
pub fn auditing() -> bool {
    MONITOR.get().is_some_and(|m| m.audit_tx.is_some())
}

/// RESP: the target to audit for a command that writes or administers (`None` otherwise, or
/// when auditing is off). Taken before the command consumes its arguments.
pub fn resp_audit_target(name: &str, flags: &[&str], args: &[Vec<u8>]) -> Option<String> {
    let audited = flags.contains(&"write") || flags.contains(&"admin") || name == "auth";
    if !audited || !auditing() {
        return None;
    }
    // AUTH's argument is the password: never in the trail.
    let target = if name == "auth" {
        String::new()
    } else {
        args.get(1).map_or_else(String::new, |a| truncate_target(a))
    };
    Some(target)
}

/// RESP: records a command [`resp_audit_target`] selected, with its outcome.
pub fn audit_resp(
    client_id: u64,
    authenticated: bool,
    name: &'static str,
    target: Option<String>,
    reply: &crate::resp::reply::Reply,
) {
    let Some(target) = target else { return };
    let failed = match reply {
        crate::resp::reply::Reply::Error(e) => Some(e.as_str()),
        _ => None,
    };
    let who = if authenticated {
        "default"
    } else {
        "anonymous"
    };
    if !auditing() {
        return;
    }
    // Deferred: sent once per pipeline by the connection's `PendingAudit` guard.
    // Static strings but for the peer and the key: two allocations per record.
    record_deferred(AuditEvent {
        who: who.into(),
        from: format!("client:{client_id}").into(),
        protocol: "resp".into(),
        what: name.into(),
        target: target.into(),
        outcome: failed.map_or(Cow::Borrowed("ok"), |e| Cow::Owned(e.to_owned())),
    });
}

/// SQL statements that change data or schema or grant rights, by their first word.
pub fn sql_modifies(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .next()
        .unwrap_or("");
    [
        "insert", "update", "delete", "create", "drop", "alter", "truncate", "grant", "revoke",
        "copy", "merge",
    ]
    .iter()
    .any(|w| first.eq_ignore_ascii_case(w))
}

/// PostgreSQL: records a data-modifying statement with its outcome.
pub fn audit_sql(user: &str, sql: &str, error: Option<String>) {
    if !auditing() || !sql_modifies(sql) {
        return;
    }
    let what = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    record(
        "pg",
        user,
        "pg",
        &what,
        truncate_target(sql.as_bytes()),
        error.as_deref().unwrap_or("ok"),
    );
}
