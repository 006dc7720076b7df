//! Issue 9: two-phase commit in Prometheus, one series per shard (`shard` label), from each
//! shard's `ShardStats::twopc` (the participant's counters): transactions prepared,
//! committed, aborted and resolved in doubt at restart (counters), prepared now (gauge).
//! Like `lock_metrics`, the collector turns the last snapshot into families at scrape time,
//! so the counters are the shards' own totals.

use std::sync::{Mutex, OnceLock};

use mantis_engine::twopc::TpcStats;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// `(name, help, kind, value)` of each per-shard family.
type Family = (&'static str, &'static str, MetricType, fn(&TpcStats) -> u64);

const FAMILIES: &[Family] = &[
    (
        "twopc_prepared_total",
        "Two-phase-commit Prepare records written by this participant shard",
        MetricType::COUNTER,
        |s| s.prepared_total,
    ),
    (
        "twopc_committed_total",
        "Prepared transactions committed on this participant shard",
        MetricType::COUNTER,
        |s| s.committed_total,
    ),
    (
        "twopc_aborted_total",
        "Prepared transactions aborted on this participant shard",
        MetricType::COUNTER,
        |s| s.aborted_total,
    ),
    (
        "twopc_in_doubt_resolved_total",
        "In-doubt transactions resolved from the log at restart on this shard",
        MetricType::COUNTER,
        |s| s.in_doubt_resolved_total,
    ),
    (
        "twopc_prepared",
        "Transactions prepared and not yet decided on this shard now",
        MetricType::GAUGE,
        |s| s.prepared_now,
    ),
];

/// (shard, figures) of the last refresh.
static SNAPSHOT: Mutex<Vec<(usize, TpcStats)>> = Mutex::new(Vec::new());

struct TpcCollector {
    descs: Vec<Desc>,
}

/// Registers the collector once per process.
fn register(registry: &prometheus::Registry) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        let mut descs = Vec::new();
        for (name, help, _, _) in FAMILIES {
            match Desc::new(
                (*name).into(),
                (*help).into(),
                vec!["shard".into()],
                Default::default(),
            ) {
                Ok(d) => descs.push(d),
                Err(e) => tracing::warn!(error = %e, name, "2PC metric not described"),
            }
        }
        if let Err(e) = registry.register(Box::new(TpcCollector { descs })) {
            tracing::warn!(error = %e, "2PC metrics not registered");
        }
    });
}

/// Takes a new snapshot from every shard's statistics (the `/metrics` refresh has them).
pub fn record(registry: &prometheus::Registry, stats: &[mantis_engine::ShardStats]) {
    register(registry);
    if let Ok(mut snapshot) = SNAPSHOT.lock() {
        *snapshot = stats.iter().map(|s| (s.shard, s.twopc)).collect();
    }
}

fn series(shard: usize, kind: MetricType, value: u64) -> Metric {
    let mut label = LabelPair::default();
    label.set_name("shard".into());
    label.set_value(shard.to_string());
    let mut m = Metric::from_label(vec![label]);
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

impl Collector for TpcCollector {
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
        FAMILIES
            .iter()
            .map(|(name, help, kind, value)| {
                let mut f = MetricFamily::default();
                f.set_name((*name).into());
                f.set_help((*help).into());
                f.set_field_type(*kind);
                f.set_metric(
                    snapshot
                        .iter()
                        .map(|(shard, s)| series(*shard, *kind, value(s)))
                        .collect(),
                );
                f
            })
            .collect()
    }
}
