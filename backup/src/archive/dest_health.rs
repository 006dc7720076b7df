//! Issue 8: how a backup destination is doing, as `/health` reports it — reachable, when it
//! last took an upload (or answered a probe), and since when it has been failing.
//!
//! Fed by whoever talks to the destination (the WAL archiver, the backup scheduler). An
//! upload that hangs (a stopped server accepts the TCP connection and never answers) is not
//! an error until its request times out; [`DestinationHealth::view`] therefore counts an
//! upload in flight for longer than `stalled_after_ms` as failing since it started, so health
//! turns at the RPO bound rather than at the client's timeout.

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationHealth {
    /// The last attempt (upload or probe) succeeded, and none is stalled.
    pub reachable: bool,
    /// When the destination last took an upload or answered a probe.
    pub last_ok_at_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Start of the run of failed (or stalled) attempts; None while it works.
    pub failing_since_ms: Option<u64>,
    /// An upload running since then, not answered yet.
    pub in_flight_since_ms: Option<u64>,
    pub failures_total: u64,
    /// Failed attempts since the last success (issue 10: a schedule's check escalates from
    /// warning to critical with it, as its alert does).
    pub failures_in_a_row: u64,
}

impl DestinationHealth {
    /// Nothing tried yet: reachable until shown otherwise (a daemon without traffic starts
    /// healthy; the archiver's probe finds a dead destination within its interval).
    pub fn new() -> DestinationHealth {
        DestinationHealth {
            reachable: true,
            ..DestinationHealth::default()
        }
    }

    pub fn started(&mut self, now_ms: u64) {
        self.in_flight_since_ms = Some(now_ms);
    }

    pub fn succeeded(&mut self, now_ms: u64) {
        self.reachable = true;
        self.last_ok_at_ms = Some(now_ms);
        self.last_error = None;
        self.failing_since_ms = None;
        self.in_flight_since_ms = None;
        self.failures_in_a_row = 0;
    }

    pub fn failed(&mut self, now_ms: u64, error: String) {
        let since = self.in_flight_since_ms.take().unwrap_or(now_ms);
        self.reachable = false;
        self.last_error = Some(error);
        self.failures_total += 1;
        self.failures_in_a_row += 1;
        self.failing_since_ms.get_or_insert(since);
    }

    pub fn is_failing(&self) -> bool {
        self.failing_since_ms.is_some()
    }

    /// The state as of `now_ms`, with an upload in flight for `stalled_after_ms` or longer
    /// counted as a failure since it started.
    pub fn view(&self, now_ms: u64, stalled_after_ms: u64) -> DestinationHealth {
        let mut v = self.clone();
        if let Some(since) = self.in_flight_since_ms {
            let waited_ms = now_ms.saturating_sub(since);
            if waited_ms >= stalled_after_ms {
                v.reachable = false;
                v.failing_since_ms = Some(self.failing_since_ms.map_or(since, |f| f.min(since)));
                v.last_error = Some(format!(
                    "an upload has waited {waited_ms} ms for an answer (stalled after {stalled_after_ms} ms)"
                ));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_since_is_the_first_failure_and_clears_on_success() {
        let mut h = DestinationHealth::new();
        assert!(h.reachable && !h.is_failing());
        h.started(100);
        h.failed(150, "refused".into());
        h.started(200);
        h.failed(260, "refused".into());
        assert_eq!(h.failing_since_ms, Some(100));
        assert_eq!(h.failures_total, 2);
        assert_eq!(h.failures_in_a_row, 2);
        assert!(!h.reachable);
        h.started(300);
        h.succeeded(310);
        assert_eq!(
            (h.reachable, h.failing_since_ms, h.last_ok_at_ms),
            (true, None, Some(310))
        );
        assert_eq!((h.failures_total, h.failures_in_a_row), (2, 0));
    }

    #[test]
    fn a_stalled_upload_counts_as_failing_from_its_start() {
        let mut h = DestinationHealth::new();
        h.started(1_000);
        assert!(!h.view(1_500, 1_000).is_failing());
        let v = h.view(2_000, 1_000);
        assert_eq!(v.failing_since_ms, Some(1_000));
        assert!(!v.reachable);
        assert!(v.last_error.is_some_and(|e| e.contains("1000 ms")));
        // The stored state is unchanged: the view only reads.
        assert!(h.reachable);
    }
}
