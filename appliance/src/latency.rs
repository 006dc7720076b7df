//! Request latency percentiles from HdrHistogram recordings (issue 8).
//!
//! Prometheus histograms answer "how many requests took under 1 ms", not "what was p99.9";
//! their buckets are too coarse for that. So every request is also recorded, in microseconds,
//! into an HdrHistogram (3 significant digits) kept by the thread that served it: each shard
//! executor records into its own thread-local table without atomics or locks, as the
//! shard-per-core rule wants. A scrape gathers the tables from every shard by message
//! ([`gather`]), merges them, and publishes p50/p99/p999/max as the gauge family
//! `mantis_request_latency_seconds{protocol, command, quantile}`.
//!
//! The recordings are cumulative since the daemon started (like the Prometheus counters next to
//! them); rates over time come from the `request_duration_seconds` histogram.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use mantis_engine::EngineHandle;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};

/// Longest latency recorded exactly; slower requests are clamped to it (and still counted).
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant decimal digits kept: 0.1% relative error, about 50 KiB per command table entry
/// at the range above — only commands that were used get one.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Quantiles published, with the label value each gets.
pub const QUANTILES: [(f64, &str); 4] =
    [(0.5, "0.5"), (0.99, "0.99"), (0.999, "0.999"), (1.0, "1")];

thread_local! {
    /// This thread's recordings, indexed by the command's slot ([`crate::metrics::CommandMetrics`]).
    static RECORDINGS: RefCell<Vec<Option<Histogram<u64>>>> = const { RefCell::new(Vec::new()) };
}

fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS).ok()
}

/// Records one request of the command in `slot` on this thread.
pub fn record(slot: usize, elapsed: Duration) {
    let us = (elapsed.as_micros() as u64).clamp(1, LATENCY_US_MAX);
    RECORDINGS.with(|r| {
        let mut table = r.borrow_mut();
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        if table[slot].is_none() {
            table[slot] = new_histogram();
        }
        if let Some(h) = table[slot].as_mut() {
            // Cannot fail: the value is clamped into the histogram's bounds.
            let _ = h.record(us);
        }
    });
}

/// A copy of this thread's recordings: `(slot, histogram)` for every slot used.
pub fn snapshot() -> Vec<(usize, Histogram<u64>)> {
    RECORDINGS.with(|r| {
        r.borrow()
            .iter()
            .enumerate()
            .filter_map(|(slot, h)| h.as_ref().map(|h| (slot, h.clone())))
            .collect()
    })
}

/// Adds `part` into `merged` (slot by slot).
pub fn merge_into(merged: &mut Vec<Option<Histogram<u64>>>, part: Vec<(usize, Histogram<u64>)>) {
    for (slot, h) in part {
        if merged.len() <= slot {
            merged.resize_with(slot + 1, || None);
        }
        match merged[slot].as_mut() {
            // Same bounds on every thread, so adding cannot fail on range.
            Some(m) => {
                let _ = m.add(&h);
            }
            None => merged[slot] = Some(h),
        }
    }
}

/// Every shard's recordings (plus the calling thread's if it is not a shard), merged by slot.
pub async fn gather(engine: &EngineHandle) -> Result<Vec<Option<Histogram<u64>>>, String> {
    let mut merged = Vec::new();
    for shard in 0..engine.shard_count() {
        let part = engine
            .run_on(shard, || async { snapshot() })
            .await
            .map_err(|e| format!("latency recordings of shard {shard}: {e}"))?;
        merge_into(&mut merged, part);
    }
    Ok(merged)
}

/// The published quantiles of one histogram, in seconds.
pub fn quantiles_seconds(h: &Histogram<u64>) -> [(f64, &'static str, f64); 4] {
    QUANTILES.map(|(q, label)| {
        let us = if q >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(q)
        };
        (q, label, us as f64 / 1e6)
    })
}

/// The published summary: the last scrape's quantiles per `(protocol, command)`. The mutex is
/// taken only by scrapes (never on the request path), which the registry already serialises.
#[derive(Clone)]
pub struct LatencySummary {
    desc: Desc,
    metrics: Arc<Mutex<Vec<Metric>>>,
}

pub const SUMMARY_NAME: &str = "request_latency_seconds";

impl LatencySummary {
    pub fn new() -> Result<LatencySummary, prometheus::Error> {
        Ok(LatencySummary {
            desc: Desc::new(
                SUMMARY_NAME.into(),
                "Request latency quantiles since start, from HdrHistogram recordings".into(),
                vec!["protocol".into(), "command".into()],
                Default::default(),
            )?,
            metrics: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Replaces the published figures by those of `merged` (slot order = `names` order).
    pub fn publish(&self, names: &[(&str, &str)], merged: &[Option<Histogram<u64>>]) {
        let mut metrics = Vec::new();
        for (slot, h) in merged.iter().enumerate() {
            let (Some(h), Some(&(proto, cmd))) = (h, names.get(slot)) else {
                continue;
            };
            metrics.push(summary_metric(proto, cmd, h));
        }
        if let Ok(mut m) = self.metrics.lock() {
            *m = metrics;
        }
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

fn summary_metric(proto: &str, cmd: &str, h: &Histogram<u64>) -> Metric {
    let mut summary = Summary::default();
    summary.set_sample_count(h.len());
    // HdrHistogram keeps no exact sum: the mean of the recordings (µs) times their count.
    summary.set_sample_sum(h.mean() * h.len() as f64 / 1e6);
    summary.set_quantile(
        quantiles_seconds(h)
            .iter()
            .map(|&(q, _, seconds)| {
                let mut quantile = Quantile::default();
                quantile.set_quantile(q);
                quantile.set_value(seconds);
                quantile
            })
            .collect(),
    );
    // Label pairs sorted by name, as the registry's own metrics keep them.
    let mut m = Metric::from_label(vec![label("command", cmd), label("protocol", proto)]);
    m.set_summary(summary);
    m
}

impl Collector for LatencySummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = self.metrics.lock().map(|m| m.clone()).unwrap_or_default();
        if metrics.is_empty() {
            return Vec::new();
        }
        let mut family = MetricFamily::default();
        family.set_name(SUMMARY_NAME.into());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_merge_and_report_quantiles() {
        for us in 1..=1000u64 {
            record(3, Duration::from_micros(us));
        }
        record(5, Duration::from_secs(3600)); // clamped, still counted
        let mine = snapshot();
        assert_eq!(mine.len(), 2);
        let mut merged = Vec::new();
        merge_into(&mut merged, mine.clone());
        merge_into(&mut merged, mine);
        let h = merged[3].as_ref().unwrap();
        assert_eq!(h.len(), 2000);
        let q = quantiles_seconds(h);
        assert!((q[0].2 - 0.0005).abs() < 0.000_002, "p50 {:?}", q[0]);
        assert!((q[1].2 - 0.00099).abs() < 0.000_002, "p99 {:?}", q[1]);
        assert!((q[3].2 - 0.001).abs() < 0.000_002, "max {:?}", q[3]);
        let clamped = merged[5].as_ref().unwrap();
        assert_eq!(clamped.len(), 2);
        assert!(clamped.max() >= LATENCY_US_MAX - LATENCY_US_MAX / 1000);
        assert!(merged[4].is_none());
    }
}
