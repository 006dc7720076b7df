//! Latency recording: an HdrHistogram in nanoseconds, summarised in microseconds.
//!
//! Why nanoseconds: cached gets take a few microseconds, so microsecond buckets would round
//! the figure we compare against a 20 µs target to a handful of integer values.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track: anything slower is clamped (and still counted).
pub const LATENCY_NS_MAX: u64 = 60 * 1_000_000_000;
/// Three significant figures: 0.1 % relative error, plenty for p99.9.
const SIGNIFICANT_FIGURES: u8 = 3;

/// A latency histogram.
pub struct LatencyHist {
    hist: Histogram<u64>,
}

impl LatencyHist {
    pub fn new() -> Self {
        // The bounds are constants within hdrhistogram's supported range: a failure here is a
        // programming error, not an input or I/O error.
        let hist = match Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_FIGURES) {
            Ok(h) => h,
            Err(e) => panic!("constant histogram bounds rejected: {e}"),
        };
        LatencyHist { hist }
    }

    pub fn record(&mut self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(LATENCY_NS_MAX);
        self.hist.saturating_record(ns.clamp(1, LATENCY_NS_MAX));
    }

    pub fn merge(&mut self, other: &LatencyHist) {
        // Both histograms share the same bounds, so adding cannot overflow their ranges;
        // saturating_record already clamped every value.
        let _ = self.hist.add(&other.hist);
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Latency at percentiles 0, …, 90, …, 99, …, 99.999 (evenly spaced in "nines"), then the
    /// maximum: what a percentile-spectrum plot draws.
    pub fn spectrum(&self) -> Vec<SpectrumPoint> {
        let mut points = Vec::new();
        if self.hist.is_empty() {
            return points;
        }
        for step in 0..=(SPECTRUM_STEPS_PER_NINE * SPECTRUM_NINES_MAX) {
            let nines = f64::from(step) / f64::from(SPECTRUM_STEPS_PER_NINE);
            let quantile = 1.0 - 10f64.powf(-nines);
            points.push(SpectrumPoint {
                percentile: quantile * 100.0,
                latency_us: self.hist.value_at_quantile(quantile) as f64 / 1000.0,
            });
        }
        points.push(SpectrumPoint {
            percentile: 100.0,
            latency_us: self.hist.max() as f64 / 1000.0,
        });
        points
    }

    pub fn summary(&self) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |quantile: f64| us(self.hist.value_at_quantile(quantile));
        LatencySummary {
            count: self.hist.len(),
            min_us: us(self.hist.min()),
            mean_us: self.hist.mean() / 1000.0,
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: us(self.hist.max()),
        }
    }
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

/// One point of a percentile spectrum: the latency at `percentile` (0–100).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub latency_us: f64,
}

/// Points per decade of "nines" in a spectrum (p90 → p99 → p99.9 …).
const SPECTRUM_STEPS_PER_NINE: u32 = 10;
/// The spectrum goes to p99.999; beyond it a run of seconds has no samples.
const SPECTRUM_NINES_MAX: u32 = 5;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percentiles_follow_the_recorded_values() {
        let mut h = LatencyHist::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "p50 {}", s.p50_us);
        assert!((s.p99_us - 990.0).abs() < 2.0, "p99 {}", s.p99_us);
        assert!(s.max_us >= 999.0 && s.max_us <= 1001.0, "max {}", s.max_us);
    }

    #[test]
    fn merge_adds_counts_and_huge_values_are_clamped() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_secs(3600));
        a.merge(&b);
        assert_eq!(a.summary().count, 2);
        assert!(a.summary().max_us <= LATENCY_NS_MAX as f64 / 1000.0 * 1.001);
    }
}
