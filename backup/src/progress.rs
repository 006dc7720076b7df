//! Progress of an upload, verification or restore: bytes done of total and an ETA.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Raw (uncompressed) bytes handled so far, and in all.
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub elapsed: Duration,
    /// Remaining time at the average rate so far; None before the first byte.
    pub eta: Option<Duration>,
}

/// Accumulates progress and hands a snapshot to the callback after every file.
pub(crate) struct Tracker<'a> {
    started: Instant,
    p: Progress,
    callback: &'a mut dyn FnMut(&Progress),
}

impl<'a> Tracker<'a> {
    pub fn new(bytes_total: u64, files_total: u64, callback: &'a mut dyn FnMut(&Progress)) -> Self {
        let t = Tracker {
            started: Instant::now(),
            p: Progress {
                bytes_done: 0,
                bytes_total,
                files_done: 0,
                files_total,
                elapsed: Duration::ZERO,
                eta: None,
            },
            callback,
        };
        (t.callback)(&t.p);
        t
    }

    pub fn file_done(&mut self, bytes: u64) {
        self.p.bytes_done += bytes;
        self.p.files_done += 1;
        assert!(
            self.p.files_done <= self.p.files_total,
            "more files than planned"
        );
        self.p.elapsed = self.started.elapsed();
        self.p.eta = eta(self.p.bytes_done, self.p.bytes_total, self.p.elapsed);
        (self.callback)(&self.p);
    }

    pub fn progress(&self) -> &Progress {
        &self.p
    }
}

fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    Some(Duration::from_secs_f64(
        elapsed.as_secs_f64() * left / done as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_scales_with_the_rate_so_far() {
        assert_eq!(eta(0, 100, Duration::from_secs(1)), None);
        assert_eq!(
            eta(25, 100, Duration::from_secs(1)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(eta(100, 100, Duration::from_secs(9)), Some(Duration::ZERO));
    }
}
