//! The daemon's Prometheus registry: requests, errors and latency per command and protocol,
//! connections, uptime, and the engine's per-shard statistics (copied in at scrape time).
//!
//! The metric handles are atomics shared by every shard. Per-command handles are looked up once
//! per command name at start ([`Metrics::command`] returns a cached entry), so the data path
//! does one hash lookup and a few atomic adds, never a registry lock.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The handles of one command of one protocol.
#[derive(Clone)]
pub struct CommandMetrics {
    pub requests: IntCounter,
    pub errors: IntCounter,
    pub latency: Histogram,
    /// Index of this entry's HdrHistogram recordings ([`crate::latency`]).
    pub slot: usize,
}

impl CommandMetrics {
    /// Counts one request that took `elapsed` and did or did not end in an error.
    pub fn observe(&self, elapsed: Duration, failed: bool) {
        self.requests.inc();
        if failed {
            self.errors.inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
        crate::latency::record(self.slot, elapsed);
    }
}

/// Per-shard engine statistics, in the units the metric names carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardSample {
    pub live_keys: u64,
    pub memtable_bytes: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub wal_records: u64,
    pub wal_bytes_written: u64,
    pub wal_syncs: u64,
    pub wal_sync_latency_us_max: u64,
    pub flushes: u64,
    pub compactions: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub torn_tail_bytes: u64,
    pub last_lsn: u64,
    pub flushed_lsn: u64,
    pub recovered_records: u64,
    pub read_only: bool,
    pub disk_full: bool,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    commands: HashMap<(&'static str, &'static str), CommandMetrics>,
    /// Commands not in the table (unknown names) share one entry per protocol.
    other: HashMap<&'static str, CommandMetrics>,
    pub connections_open: IntGaugeVec,
    pub connections_accepted: IntCounterVec,
    pub connections_rejected: IntCounterVec,
    pub protocol_errors: IntCounterVec,
    /// PostgreSQL ErrorResponses sent, by SQLSTATE class (first two characters).
    pub pg_errors: IntCounterVec,
    uptime_seconds: Gauge,
    ready: IntGauge,
    /// One family per entry of [`SHARD_GAUGES`], labelled by shard.
    shard_gauges: Vec<IntGaugeVec>,
    /// One family per entry of [`SHARD_COUNTERS`], labelled by shard.
    shard_counters: Vec<IntCounterVec>,
    /// Seconds, as Prometheus' base unit wants (the engine counts microseconds).
    wal_sync_latency_max_seconds: GaugeVec,
    /// Serialises scrapes so that two concurrent ones cannot add the same counter delta twice.
    scrape_lock: Mutex<()>,
    started: Instant,
    resources: Resources,
    /// Corruption events, scrubber, compression by codec (issue 7).
    pub integrity: crate::integrity_metrics::IntegrityMetrics,
    /// `(protocol, command)` of each latency slot, in slot order (issue 8).
    slot_names: Vec<(&'static str, &'static str)>,
    /// p50/p99/p999/max from the merged HdrHistogram recordings, set at scrape time.
    request_latency_seconds: crate::latency::LatencySummary,
}

/// Process and disk resources, read at scrape time.
struct Resources {
    resident_memory_bytes: IntGauge,
    cpu_seconds: Gauge,
    disk_free_bytes: IntGauge,
    disk_total_bytes: IntGauge,
    health_status: IntGauge,
    audit_unflushed_records: IntGauge,
    alerts_firing: IntGauge,
    data_dir: OnceLock<PathBuf>,
}

impl Resources {
    fn new() -> Result<Resources, prometheus::Error> {
        Ok(Resources {
            resident_memory_bytes: IntGauge::new(
                "process_resident_memory_bytes",
                "Resident memory of the daemon",
            )?,
            // A gauge holding a running total: the kernel's count, not one we increment.
            cpu_seconds: Gauge::new(
                "process_cpu_seconds",
                "User plus system CPU time used by the daemon",
            )?,
            disk_free_bytes: IntGauge::new(
                "disk_free_bytes",
                "Bytes available to the daemon on the data directory's filesystem",
            )?,
            disk_total_bytes: IntGauge::new(
                "disk_total_bytes",
                "Size of the data directory's filesystem",
            )?,
            health_status: IntGauge::new(
                "health_status",
                "Last health verdict: 0 healthy, 1 degraded, 2 unhealthy",
            )?,
            audit_unflushed_records: IntGauge::new(
                "audit_queue_records",
                "Audit records chained but not yet written and synced",
            )?,
            alerts_firing: IntGauge::new("alerts_firing", "Alerts currently firing")?,
            data_dir: OnceLock::new(),
        })
    }

    fn gauges(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.resident_memory_bytes.clone()),
            Box::new(self.cpu_seconds.clone()),
            Box::new(self.disk_free_bytes.clone()),
            Box::new(self.disk_total_bytes.clone()),
            Box::new(self.health_status.clone()),
            Box::new(self.audit_unflushed_records.clone()),
            Box::new(self.alerts_firing.clone()),
        ]
    }

    fn refresh(&self) {
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
            let pages: i64 = statm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.resident_memory_bytes.set(pages.saturating_mul(4096));
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the parenthesised command name: utime and stime are 12 and 13.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let ticks: f64 = after
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<f64>().ok())
                .sum();
            self.cpu_seconds.set(ticks / 100.0);
        }
        if let Some(dir) = self.data_dir.get() {
            if let Ok(fs) = nix::sys::statvfs::statvfs(dir.as_path()) {
                let block = fs.fragment_size() as i64;
                self.disk_free_bytes
                    .set((fs.blocks_available() as i64).saturating_mul(block));
                self.disk_total_bytes
                    .set((fs.blocks() as i64).saturating_mul(block));
            }
        }
        if let Some(m) = crate::monitoring::get() {
            self.audit_unflushed_records
                .set(m.audit_queued.load(std::sync::atomic::Ordering::Relaxed) as i64);
            if let Ok(engine) = m.alerts.lock() {
                self.alerts_firing
                    .set(engine.active().filter(|a| a.firing).count() as i64);
            }
        }
    }
}

/// Latency buckets from 50 µs to 10 s: an fdatasync here takes 70 µs to 9 ms.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

const SHARD_GAUGES: &[(&str, &str)] = &[
    ("shard_live_keys", "Live keys in the shard (estimate)"),
    ("shard_memtable_bytes", "Bytes in the shard's memtables"),
    ("shard_segments", "Segment files of the shard"),
    ("shard_segment_bytes", "Bytes in the shard's segment files"),
    ("wal_last_lsn", "Last log sequence number written"),
    (
        "wal_flushed_lsn",
        "Highest log sequence number persisted in segment files",
    ),
    (
        "wal_recovered_records",
        "WAL records replayed at the last start",
    ),
    (
        "shard_read_only",
        "1 when the shard refuses writes after an fsync failure",
    ),
    (
        "shard_disk_full",
        "1 when the shard's last write hit ENOSPC",
    ),
];

const SHARD_COUNTERS: &[(&str, &str)] = &[
    ("wal_records_total", "WAL records written"),
    ("wal_bytes_written_total", "WAL bytes written"),
    ("wal_syncs_total", "WAL fdatasync calls (group commits)"),
    ("flushes_total", "Memtable flushes to segment files"),
    ("compactions_total", "Compactions finished"),
    ("cache_hits_total", "Block cache hits"),
    ("cache_misses_total", "Block cache misses"),
    (
        "wal_torn_tail_bytes_total",
        "Bytes of torn WAL tail cut at recovery",
    ),
];

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Builds the registry with a cached entry for every `(protocol, command)` pair given.
    pub fn new(commands: &[(&'static str, &'static str)]) -> Result<Metrics, MetricsError> {
        let registry = Registry::new_custom(Some("mantis".into()), None)?;
        let labels = &["protocol", "command"];
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests by protocol and command"),
            labels,
        )?;
        let errors = IntCounterVec::new(
            Opts::new("request_errors_total", "Requests answered with an error"),
            labels,
        )?;
        let latency = prometheus::HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Request latency by command")
                .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
            labels,
        )?;
        let mut slot_names: Vec<(&'static str, &'static str)> = Vec::new();
        let mut entry = |proto: &'static str, cmd: &'static str| {
            slot_names.push((proto, cmd));
            CommandMetrics {
                requests: requests.with_label_values(&[proto, cmd]),
                errors: errors.with_label_values(&[proto, cmd]),
                latency: latency.with_label_values(&[proto, cmd]),
                slot: slot_names.len() - 1,
            }
        };
        let table = commands
            .iter()
            .map(|&(p, c)| ((p, c), entry(p, c)))
            .collect::<HashMap<_, _>>();
        let mut other = HashMap::new();
        for &(p, _) in commands {
            other.entry(p).or_insert_with(|| entry(p, "other"));
        }
        let proto_label = &["protocol"];
        let metrics = Metrics {
            connections_open: IntGaugeVec::new(
                Opts::new("connections_open", "Open client connections"),
                proto_label,
            )?,
            connections_accepted: IntCounterVec::new(
                Opts::new("connections_accepted_total", "Client connections accepted"),
                proto_label,
            )?,
            connections_rejected: IntCounterVec::new(
                Opts::new(
                    "connections_rejected_total",
                    "Connections refused at the connection limit",
                ),
                proto_label,
            )?,
            protocol_errors: IntCounterVec::new(
                Opts::new(
                    "protocol_errors_total",
                    "Malformed requests (connection closed)",
                ),
                proto_label,
            )?,
            pg_errors: IntCounterVec::new(
                Opts::new(
                    "pg_errors_total",
                    "PostgreSQL error responses by SQLSTATE class",
                ),
                &["sqlstate_class"],
            )?,
            uptime_seconds: Gauge::new("uptime_seconds", "Seconds since the daemon started")?,
            ready: IntGauge::new(
                "ready",
                "1 once recovery finished and until shutdown starts",
            )?,
            shard_gauges: SHARD_GAUGES
                .iter()
                .map(|(name, help)| IntGaugeVec::new(Opts::new(*name, *help), &["shard"]))
                .collect::<Result<_, _>>()?,
            shard_counters: SHARD_COUNTERS
                .iter()
                .map(|(name, help)| IntCounterVec::new(Opts::new(*name, *help), &["shard"]))
                .collect::<Result<_, _>>()?,
            registry,
            commands: table,
            other,
            wal_sync_latency_max_seconds: GaugeVec::new(
                Opts::new("wal_sync_latency_max_seconds", "Slowest WAL fdatasync seen"),
                &["shard"],
            )?,
            scrape_lock: Mutex::new(()),
            started: Instant::now(),
            resources: Resources::new()?,
            integrity: crate::integrity_metrics::IntegrityMetrics::new()?,
            slot_names,
            request_latency_seconds: crate::latency::LatencySummary::new()?,
        };
        let r = &metrics.registry;
        r.register(Box::new(requests))?;
        r.register(Box::new(errors))?;
        r.register(Box::new(latency))?;
        r.register(Box::new(metrics.connections_open.clone()))?;
        r.register(Box::new(metrics.connections_accepted.clone()))?;
        r.register(Box::new(metrics.connections_rejected.clone()))?;
        r.register(Box::new(metrics.protocol_errors.clone()))?;
        r.register(Box::new(metrics.pg_errors.clone()))?;
        r.register(Box::new(metrics.uptime_seconds.clone()))?;
        r.register(Box::new(metrics.ready.clone()))?;
        for g in &metrics.shard_gauges {
            r.register(Box::new(g.clone()))?;
        }
        for c in &metrics.shard_counters {
            r.register(Box::new(c.clone()))?;
        }
        r.register(Box::new(metrics.wal_sync_latency_max_seconds.clone()))?;
        r.register(Box::new(metrics.request_latency_seconds.clone()))?;
        for g in metrics.resources.gauges() {
            r.register(g)?;
        }
        metrics.integrity.register(r)?;
        Ok(metrics)
    }

    /// Cached handles by exact static key: the fast path used by the protocol front ends.
    pub fn command_static(
        &self,
        protocol: &'static str,
        command: &'static str,
    ) -> Option<&CommandMetrics> {
        if !crate::monitoring::metrics_enabled() {
            return None;
        }
        self.commands
            .get(&(protocol, command))
            .or_else(|| self.other.get(protocol))
    }

    /// Publishes the quantiles of the merged HdrHistogram recordings ([`crate::latency::gather`]).
    pub fn record_latency(&self, merged: &[Option<hdrhistogram::Histogram<u64>>]) {
        self.request_latency_seconds
            .publish(&self.slot_names, merged);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Copies the engine's per-shard numbers in. Counters only move forward: the engine's
    /// counters are cumulative since start, so the difference to what we exported is added.
    pub fn record_shards(&self, samples: &[ShardSample]) {
        let Ok(_guard) = self.scrape_lock.lock() else {
            return;
        };
        for (shard, s) in samples.iter().enumerate() {
            let shard = shard.to_string();
            let gauges = [
                s.live_keys,
                s.memtable_bytes,
                s.segments,
                s.segment_bytes,
                s.last_lsn,
                s.flushed_lsn,
                s.recovered_records,
                u64::from(s.read_only),
                u64::from(s.disk_full),
            ];
            assert_eq!(
                gauges.len(),
                self.shard_gauges.len(),
                "one value per gauge family"
            );
            self.wal_sync_latency_max_seconds
                .with_label_values(&[&shard])
                .set(s.wal_sync_latency_us_max as f64 / 1e6);
            for (family, value) in self.shard_gauges.iter().zip(gauges) {
                family
                    .with_label_values(&[&shard])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
            let counters = [
                s.wal_records,
                s.wal_bytes_written,
                s.wal_syncs,
                s.flushes,
                s.compactions,
                s.cache_hits,
                s.cache_misses,
                s.torn_tail_bytes,
            ];
            assert_eq!(
                counters.len(),
                self.shard_counters.len(),
                "one value per counter family"
            );
            for (family, value) in self.shard_counters.iter().zip(counters) {
                let counter = family.with_label_values(&[&shard]);
                let exported = counter.get();
                if value > exported {
                    counter.inc_by(value - exported);
                }
            }
        }
    }

    /// Where the disk gauges look (set once when the monitor starts).
    pub fn set_data_dir(&self, dir: &Path) {
        let _ = self.resources.data_dir.set(dir.to_path_buf());
    }

    /// 0 healthy, 1 degraded, 2 unhealthy (what `/health` last found).
    pub fn set_health(&self, status: i64) {
        self.resources.health_status.set(status);
    }

    fn refresh(&self) {
        self.uptime_seconds
            .set(self.started.elapsed().as_secs_f64());
        self.resources.refresh();
        crate::rpo::export_metrics();
    }

    /// One number per metric name for alert rules: counters summed over their labels,
    /// gauges at their maximum (the worst shard); histograms are left out. The health verdict
    /// is also given as `health.status`.
    pub fn values(&self) -> BTreeMap<String, f64> {
        self.refresh();
        let mut out = BTreeMap::new();
        for family in self.registry.gather() {
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            let gauge = family.get_field_type() == prometheus::proto::MetricType::GAUGE;
            if !counter && !gauge {
                continue;
            }
            let mut value: Option<f64> = None;
            for m in family.get_metric() {
                let v = if counter {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                };
                value = Some(match value {
                    None => v,
                    Some(acc) if counter => acc + v,
                    Some(acc) => acc.max(v),
                });
            }
            if let Some(v) = value {
                out.insert(family.name().to_string(), v);
            }
        }
        if let Some(&v) = out.get("mantis_health_status") {
            out.insert("health.status".into(), v);
        }
        out
    }

    /// Every sample as JSON: `{name: {help, type, samples: [{labels, value}]}}`; histograms
    /// give count, sum and their cumulative buckets.
    pub fn render_json(&self) -> serde_json::Value {
        self.refresh();
        let mut out = serde_json::Map::new();
        for family in self.registry.gather() {
            let kind = family.get_field_type();
            let samples: Vec<serde_json::Value> = family
                .get_metric()
                .iter()
                .map(|m| {
                    let labels: serde_json::Map<String, serde_json::Value> = m
                        .get_label()
                        .iter()
                        .map(|l| (l.name().to_string(), l.value().into()))
                        .collect();
                    let value = match kind {
                        prometheus::proto::MetricType::COUNTER => {
                            serde_json::json!(m.get_counter().get_value())
                        }
                        prometheus::proto::MetricType::GAUGE => {
                            serde_json::json!(m.get_gauge().get_value())
                        }
                        prometheus::proto::MetricType::SUMMARY => {
                            let s = m.get_summary();
                            let quantiles: serde_json::Map<String, serde_json::Value> = s
                                .get_quantile()
                                .iter()
                                .map(|q| (q.quantile().to_string(), q.value().into()))
                                .collect();
                            serde_json::json!({
                                "count": s.sample_count(),
                                "sum": s.sample_sum(),
                                "quantiles": quantiles,
                            })
                        }
                        _ => {
                            let h = m.get_histogram();
                            serde_json::json!({
                                "count": h.get_sample_count(),
                                "sum": h.get_sample_sum(),
                                "buckets": h.get_bucket().iter().map(|b| {
                                    serde_json::json!([b.upper_bound(), b.cumulative_count()])
                                }).collect::<Vec<_>>(),
                            })
                        }
                    };
                    serde_json::json!({ "labels": labels, "value": value })
                })
                .collect();
            out.insert(
                family.name().to_string(),
                serde_json::json!({
                    "help": family.help(),
                    "type": format!("{kind:?}").to_lowercase(),
                    "samples": samples,
                }),
            );
        }
        serde_json::Value::Object(out)
    }

    /// Plain text for people: `name{labels} = value`, histograms as count and mean.
    pub fn render_plain(&self) -> String {
        use std::fmt::Write as _;
        let json = self.render_json();
        let mut out = String::new();
        let Some(families) = json.as_object() else {
            return out;
        };
        for (name, family) in families {
            for sample in family["samples"].as_array().into_iter().flatten() {
                let labels = sample["labels"]
                    .as_object()
                    .map(|l| {
                        l.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let value = &sample["value"];
                let shown = match (value.get("count"), value.get("sum")) {
                    (Some(count), Some(sum)) => {
                        let n = count.as_f64().unwrap_or(0.0);
                        let mean = if n > 0.0 {
                            sum.as_f64().unwrap_or(0.0) / n
                        } else {
                            0.0
                        };
                        format!("count {n} mean {mean:.6}")
                    }
                    _ => value.to_string(),
                };
                let _ = writeln!(out, "{name}{{{labels}}} = {shown}");
            }
        }
        out
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Issue 10: the registry, for subsystems that register their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_requests_errors_and_shards() {
        let m = Metrics::new(&[("resp", "get"), ("resp", "set")]).unwrap();
        m.command_static("resp", "get")
            .unwrap()
            .observe(Duration::from_micros(120), false);
        m.command_static("resp", "set")
            .unwrap()
            .observe(Duration::from_millis(2), true);
        m.command_static("resp", "nosuch")
            .unwrap()
            .observe(Duration::from_millis(1), true);
        let sample = ShardSample {
            wal_syncs: 7,
            live_keys: 3,
            ..Default::default()
        };
        m.record_shards(&[sample.clone(), ShardSample::default()]);
        m.record_shards(&[sample]);
        let text = m.render();
        assert!(text.contains("mantis_requests_total{command=\"get\",protocol=\"resp\"} 1"));
        assert!(text.contains("mantis_request_errors_total{command=\"set\",protocol=\"resp\"} 1"));
        assert!(text.contains("mantis_request_errors_total{command=\"other\",protocol=\"resp\"} 1"));
        assert!(text.contains("mantis_request_duration_seconds_bucket{command=\"get\""));
        assert!(text.contains("mantis_wal_syncs_total{shard=\"0\"} 7"));
        assert!(text.contains("mantis_shard_live_keys{shard=\"0\"} 3"));
        assert!(text.contains("mantis_uptime_seconds"));
    }
}
