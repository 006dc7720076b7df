//! Issue 9: the lock managers' figures in Prometheus, one series per shard (`shard` label):
//! acquires, waits, timeouts and deadlock victims (counters), locks granted and requests
//! waiting now (gauges), and the lock-wait time histogram (seconds). The `/metrics` handler
//! gathers every shard's `LockStats` by message ([`refresh`]); the collector turns the last
//! snapshot into families at scrape time, so the counters are the lock managers' own totals
//! (no delta bookkeeping that two scrapes could double).

use std::sync::{Mutex, OnceLock};

use mantis_lock::LockStats;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::server::Shared;

/// `(name, help, kind, value)` of each per-shard scalar family.
type Scalar = (
    &'static str,
    &'static str,
    MetricType,
    fn(&LockStats) -> u64,
);

const SCALARS: &[Scalar] = &[
    (
        "lock_acquires_total",
        "Lock requests (every mode, including intention locks)",
        MetricType::COUNTER,
        |s| s.acquires_total,
    ),
    (
        "lock_waits_total",
        "Lock requests that had to queue",
        MetricType::COUNTER,
        |s| s.waits_total,
    ),
    (
        "lock_timeouts_total",
        "Lock waits that failed with the adaptive timeout (55P03)",
        MetricType::COUNTER,
        |s| s.timeouts_total,
    ),
    (
        "lock_deadlock_victims_total",
        "Transactions aborted to break a deadlock (40P01), counted where they waited",
        MetricType::COUNTER,
        |s| s.deadlock_victims_total,
    ),
    (
        "lock_granted",
        "Locks granted now",
        MetricType::GAUGE,
        |s| s.granted_now,
    ),
    (
        "lock_waiting",
        "Lock requests waiting now",
        MetricType::GAUGE,
        |s| s.waiting_now,
    ),
];
const WAIT_HISTOGRAM: (&str, &str) = (
    "lock_wait_seconds",
    "Time lock requests waited before being granted",
);

static SNAPSHOT: Mutex<Vec<LockStats>> = Mutex::new(Vec::new());

struct LockCollector {
    descs: Vec<Desc>,
}

/// Registers the collector once per process.
fn register(registry: &prometheus::Registry) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        let names = SCALARS
            .iter()
            .map(|(n, h, _, _)| (*n, *h))
            .chain(std::iter::once(WAIT_HISTOGRAM));
        let mut descs = Vec::new();
        for (name, help) in names {
            match Desc::new(
                name.into(),
                help.into(),
                vec!["shard".into()],
                Default::default(),
            ) {
                Ok(d) => descs.push(d),
                Err(e) => tracing::warn!(error = %e, name, "lock metric not described"),
            }
        }
        if let Err(e) = registry.register(Box::new(LockCollector { descs })) {
            tracing::warn!(error = %e, "lock metrics not registered");
        }
    });
}

/// Takes a new snapshot of every shard's lock statistics (called by the `/metrics` handler).
pub async fn refresh(shared: &Shared) {
    register(shared.metrics.registry());
    match mantis_sql::txlock::lock_stats(&shared.engine).await {
        Ok(stats) => {
            if let Ok(mut snapshot) = SNAPSHOT.lock() {
                *snapshot = stats;
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics refresh without lock statistics"),
    }
}

fn shard_label(shard: u32) -> Vec<LabelPair> {
    let mut label = LabelPair::default();
    label.set_name("shard".into());
    label.set_value(shard.to_string());
    vec![label]
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn scalar(shard: u32, kind: MetricType, value: u64) -> Metric {
    let mut m = Metric::from_label(shard_label(shard));
    if kind == MetricType::COUNTER {
        let mut c = Counter::default();
        c.set_value(value as f64);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(value as f64);
        m.set_gauge(g);
    }
    m
}

fn wait_histogram(s: &LockStats) -> Metric {
    let mut h = Histogram::default();
    h.set_sample_count(s.wait_us.count);
    h.set_sample_sum(s.wait_us.mean * s.wait_us.count as f64 / 1e6);
    let buckets = s
        .wait_us_buckets
        .iter()
        .map(|&(le_us, count)| {
            let mut b = Bucket::default();
            b.set_upper_bound(le_us as f64 / 1e6);
            // Never above the total: the +Inf bucket (the count) must be the largest.
            b.set_cumulative_count(count.min(s.wait_us.count));
            b
        })
        .collect();
    h.set_bucket(buckets);
    let mut m = Metric::from_label(shard_label(s.shard));
    m.set_histogram(h);
    m
}

impl Collector for LockCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(snapshot) = SNAPSHOT.lock() else {
            return Vec::new();
        };
        if snapshot.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<MetricFamily> = SCALARS
            .iter()
            .map(|(name, help, kind, value)| {
                let metrics = snapshot
                    .iter()
                    .map(|s| scalar(s.shard, *kind, value(s)))
                    .collect();
                family(name, help, *kind, metrics)
            })
            .collect();
        out.push(family(
            WAIT_HISTOGRAM.0,
            WAIT_HISTOGRAM.1,
            MetricType::HISTOGRAM,
            snapshot.iter().map(wait_histogram).collect(),
        ));
        out
    }
}
