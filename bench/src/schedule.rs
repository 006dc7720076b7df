//! The open-loop schedule: when each request of a connection is *meant* to be sent.
//!
//! Why: a closed-loop client that waits for each answer sends nothing while the server stalls,
//! so the stall costs one slow sample instead of the hundreds of requests a real user population
//! would have sent meanwhile ("coordinated omission"). In open loop every request has an
//! intended send time fixed in advance by the rate alone, and its latency is measured from that
//! time: a request that could only be sent late because the connection was still waiting is
//! charged the wait. Intended times are computed from the start and the request number, never
//! from "now", so a stall never shifts the schedule.

use std::time::{Duration, Instant};

/// Intended send times of one connection: `start + offset + k × interval`, k = 0, 1, …
#[derive(Debug, Clone)]
pub struct OpenLoopSchedule {
    start: Instant,
    offset_ns: u128,
    interval_ns: f64,
    next_k: u64,
}

impl OpenLoopSchedule {
    /// Connection `conn` of `connections` sharing `rate_per_sec` requests per second: each sends
    /// every `connections / rate` seconds, and the connections are staggered evenly within one
    /// interval so the aggregate arrivals are evenly spaced too.
    pub fn for_connection(
        start: Instant,
        rate_per_sec: f64,
        conn: usize,
        connections: usize,
    ) -> Self {
        assert!(
            rate_per_sec > 0.0 && rate_per_sec.is_finite(),
            "rate {rate_per_sec}"
        );
        assert!(connections > 0 && conn < connections);
        let interval_ns = 1e9 * connections as f64 / rate_per_sec;
        let offset_ns = (interval_ns * conn as f64 / connections as f64) as u128;
        OpenLoopSchedule {
            start,
            offset_ns,
            interval_ns,
            next_k: 0,
        }
    }

    /// The intended send time of request `k`.
    pub fn intended(&self, k: u64) -> Instant {
        let ns = self.offset_ns + (self.interval_ns * k as f64) as u128;
        // Durations up to u64::MAX ns (584 years): a run never gets there.
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The intended time of the next request, whatever the time is now.
    pub fn next_intended(&mut self) -> Instant {
        let t = self.intended(self.next_k);
        self.next_k += 1;
        t
    }
}

/// The latency charged to a request: from its intended send time (open loop) or its actual
/// send time (closed loop, where the two coincide) to its answer.
pub fn charged_latency(intended: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::hist::LatencyHist;

    #[test]
    fn intended_times_follow_the_rate_not_the_clock() {
        let start = Instant::now();
        let mut s = OpenLoopSchedule::for_connection(start, 1000.0, 0, 1);
        let first = s.next_intended();
        assert_eq!(first, start);
        // Whenever it is asked, request k is due at start + k ms.
        for k in 1..=10_000u64 {
            let t = s.next_intended();
            let expected = start + Duration::from_micros(1000 * k);
            let diff = if t > expected {
                t - expected
            } else {
                expected - t
            };
            assert!(diff <= Duration::from_nanos(1), "k {k}: {diff:?}");
        }
    }

    #[test]
    fn connections_are_staggered_and_share_the_rate() {
        let start = Instant::now();
        let rate = 4000.0;
        let mut all: Vec<Instant> = (0..4)
            .flat_map(|c| {
                let mut s = OpenLoopSchedule::for_connection(start, rate, c, 4);
                (0..100).map(move |_| s.next_intended()).collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        // 400 requests at 4000/s: evenly 250 µs apart, from the start on.
        for (i, t) in all.iter().enumerate() {
            let expected = start + Duration::from_micros(250 * i as u64);
            let diff = if *t > expected {
                *t - expected
            } else {
                expected - *t
            };
            assert!(diff <= Duration::from_nanos(2), "request {i}: {diff:?}");
        }
    }

    /// A simulated server that answers in 100 µs but stalls once for 1 s, driven by one
    /// connection at 1000 requests/s for 10 s. Measured from the actual send time (what a
    /// closed-loop client reports), the stall is one slow sample of 10 000 and p99 stays at
    /// 100 µs; measured from the intended time it delays the ~1000 requests that were due during
    /// the stall, and p99 shows it.
    #[test]
    fn a_stall_shows_in_p99_only_with_the_correction() {
        let start = Instant::now();
        let mut schedule = OpenLoopSchedule::for_connection(start, 1000.0, 0, 1);
        let service = Duration::from_micros(100);
        let stall_at = start + Duration::from_secs(5);
        let stall = Duration::from_secs(1);
        let mut corrected = LatencyHist::new();
        let mut naive = LatencyHist::new();
        let mut free_at = start;
        let mut stalled = false;
        for _ in 0..10_000 {
            let intended = schedule.next_intended();
            let sent = intended.max(free_at);
            let mut took = service;
            if !stalled && sent >= stall_at {
                took += stall;
                stalled = true;
            }
            let done = sent + took;
            free_at = done;
            corrected.record(charged_latency(intended, done));
            naive.record(charged_latency(sent, done));
        }
        let (c, n) = (corrected.summary(), naive.summary());
        assert!(n.p99_us < 150.0, "uncorrected p99 {}", n.p99_us);
        assert!(c.p99_us > 500_000.0, "corrected p99 {}", c.p99_us);
        assert!(c.p90_us > 50_000.0, "corrected p90 {}", c.p90_us);
        assert!((c.max_us - n.max_us).abs() < 1000.0);
        assert_eq!(c.count, 10_000);
    }
}
