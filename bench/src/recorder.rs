//! What a run records: per operation kind a histogram of charged latency (from the intended
//! send time), one of service time (from the actual send), errors and misses; plus a
//! latency-over-time series of all operations in fixed intervals.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::hist::{LatencyHist, LatencySummary, SpectrumPoint};
use crate::workload::OpKind;

/// Most intervals a timeline keeps (an hour of 1 s intervals); later samples land in the last.
pub const TIMELINE_INTERVALS_MAX: usize = 3600;
/// Interval histograms are in µs with 2 significant figures: small enough to keep thousands.
const TIMELINE_US_MAX: u64 = 60_000_000;

#[derive(Default)]
struct OpStats {
    charged: LatencyHist,
    service: LatencyHist,
    errors: u64,
    misses: u64,
    first_error: Option<String>,
}

/// A recorder per connection group; merged at the end of a run.
pub struct Recorder {
    /// Time zero of the measured window (after the warm-up).
    start: Instant,
    interval: Duration,
    ops: Vec<OpStats>,
    timeline: Vec<Histogram<u64>>,
    timeline_errors: Vec<u64>,
}

fn timeline_hist() -> Histogram<u64> {
    // Constant bounds within hdrhistogram's range: failure is a programming error.
    match Histogram::new_with_bounds(1, TIMELINE_US_MAX, 2) {
        Ok(h) => h,
        Err(e) => panic!("constant timeline histogram bounds rejected: {e}"),
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A read found no value (or a scan found no key).
    Miss,
    /// The server answered with an error, or the connection failed.
    Error(String),
}

impl Recorder {
    pub fn new(start: Instant, interval: Duration) -> Self {
        assert!(interval > Duration::ZERO);
        Recorder {
            start,
            interval,
            ops: OpKind::ALL.iter().map(|_| OpStats::default()).collect(),
            timeline: Vec::new(),
            timeline_errors: Vec::new(),
        }
    }

    /// One request: intended send time, actual send time, answer time. Requests intended
    /// before the measured window (warm-up) are not recorded.
    pub fn record(
        &mut self,
        kind: OpKind,
        intended: Instant,
        sent: Instant,
        done: Instant,
        outcome: &Outcome,
    ) {
        if intended < self.start {
            return;
        }
        let stats = &mut self.ops[kind.index()];
        match outcome {
            Outcome::Ok => {}
            Outcome::Miss => stats.misses += 1,
            Outcome::Error(e) => {
                stats.errors += 1;
                if stats.first_error.is_none() {
                    stats.first_error = Some(e.clone());
                }
            }
        }
        let charged = crate::schedule::charged_latency(intended, done);
        stats.charged.record(charged);
        stats.service.record(done.saturating_duration_since(sent));
        let slot = self.slot(done);
        let us = u64::try_from(charged.as_micros()).unwrap_or(TIMELINE_US_MAX);
        self.timeline[slot].saturating_record(us.clamp(1, TIMELINE_US_MAX));
        if matches!(outcome, Outcome::Error(_)) {
            self.timeline_errors[slot] += 1;
        }
    }

    fn slot(&mut self, at: Instant) -> usize {
        let elapsed = at.saturating_duration_since(self.start);
        let slot = ((elapsed.as_nanos() / self.interval.as_nanos()) as usize)
            .min(TIMELINE_INTERVALS_MAX - 1);
        while self.timeline.len() <= slot {
            self.timeline.push(timeline_hist());
            self.timeline_errors.push(0);
        }
        slot
    }

    pub fn merge(&mut self, other: &Recorder) {
        assert_eq!(
            self.interval, other.interval,
            "merging recorders of different intervals"
        );
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.charged.merge(&b.charged);
            a.service.merge(&b.service);
            a.errors += b.errors;
            a.misses += b.misses;
            if a.first_error.is_none() {
                a.first_error.clone_from(&b.first_error);
            }
        }
        while self.timeline.len() < other.timeline.len() {
            self.timeline.push(timeline_hist());
            self.timeline_errors.push(0);
        }
        for (i, h) in other.timeline.iter().enumerate() {
            // Same bounds on both sides: adding cannot fail.
            let _ = self.timeline[i].add(h);
            self.timeline_errors[i] += other.timeline_errors[i];
        }
    }

    /// The figures of the measured window of `window_s` seconds.
    pub fn finish(&self, window_s: f64) -> Recorded {
        let window_s = window_s.max(1e-9);
        let mut all = LatencyHist::new();
        let mut ops = Vec::new();
        for (kind, s) in OpKind::ALL.iter().zip(&self.ops) {
            if s.charged.len() == 0 {
                continue;
            }
            all.merge(&s.charged);
            ops.push(OpFigures {
                op: kind.name().to_string(),
                count: s.charged.len(),
                ops_per_sec: s.charged.len() as f64 / window_s,
                latency: s.charged.summary(),
                service: s.service.summary(),
                errors: s.errors,
                misses: s.misses,
                first_error: s.first_error.clone(),
            });
        }
        let interval_s = self.interval.as_secs_f64();
        let timeline = self
            .timeline
            .iter()
            .zip(&self.timeline_errors)
            .enumerate()
            .map(|(i, (h, &errors))| TimelinePoint {
                t_s: (i as f64 + 1.0) * interval_s,
                ops_per_sec: h.len() as f64 / interval_s,
                p50_us: h.value_at_quantile(0.5) as f64,
                p99_us: h.value_at_quantile(0.99) as f64,
                max_us: h.max() as f64,
                errors,
            })
            .collect();
        Recorded {
            ops: all.len(),
            ops_per_sec: all.len() as f64 / window_s,
            errors: ops.iter().map(|o| o.errors).sum(),
            all: all.summary(),
            spectrum: all.spectrum(),
            per_op: ops,
            timeline,
        }
    }
}

/// The figures of one operation kind.
#[derive(Debug, Clone, Serialize)]
pub struct OpFigures {
    pub op: String,
    pub count: u64,
    pub ops_per_sec: f64,
    /// From the intended send time (open loop) / the send time (closed loop) to the answer.
    pub latency: LatencySummary,
    /// From the actual send time to the answer (what an uncorrected client reports).
    pub service: LatencySummary,
    pub errors: u64,
    pub misses: u64,
    pub first_error: Option<String>,
}

/// One interval of the latency-over-time series (all operation kinds), in µs.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// End of the interval, seconds from the start of the measured window.
    pub t_s: f64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub errors: u64,
}

/// A run's merged figures.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    /// All operation kinds together.
    pub all: LatencySummary,
    pub spectrum: Vec<SpectrumPoint>,
    pub per_op: Vec<OpFigures>,
    pub timeline: Vec<TimelinePoint>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn warmup_is_dropped_and_merge_keeps_everything() {
        let t0 = Instant::now();
        let start = t0 + Duration::from_secs(1);
        let mut a = Recorder::new(start, Duration::from_secs(1));
        let mut b = Recorder::new(start, Duration::from_secs(1));
        // Warm-up: not recorded.
        a.record(
            OpKind::Read,
            t0,
            t0,
            t0 + Duration::from_millis(1),
            &Outcome::Ok,
        );
        let at = |ms: u64| start + Duration::from_millis(ms);
        a.record(OpKind::Read, at(10), at(10), at(11), &Outcome::Ok);
        a.record(OpKind::Read, at(20), at(20), at(22), &Outcome::Miss);
        b.record(
            OpKind::Update,
            at(1500),
            at(1600),
            at(1700),
            &Outcome::Error("ERR x".into()),
        );
        a.merge(&b);
        let r = a.finish(2.0);
        assert_eq!(r.ops, 3);
        assert_eq!(r.errors, 1);
        assert_eq!(r.per_op.len(), 2);
        let update = r.per_op.iter().find(|o| o.op == "update").unwrap();
        // Charged from the intended time (200 ms), service from the send (100 ms).
        assert!((update.latency.p50_us - 200_000.0).abs() < 200.0);
        assert!((update.service.p50_us - 100_000.0).abs() < 100.0);
        assert_eq!(update.first_error.as_deref(), Some("ERR x"));
        assert_eq!(r.per_op[0].misses, 1);
        assert_eq!(r.timeline.len(), 2);
        assert_eq!(r.timeline[1].errors, 1);
        assert!((r.ops_per_sec - 1.5).abs() < 1e-9);
    }
}
