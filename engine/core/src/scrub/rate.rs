//! A byte-rate limiter for background reads: the scrubber and recompression call `consume`
//! after each unit of work and are put to sleep when ahead of their budget, so their share of
//! the disk stays bounded however fast the disk answers.

use std::time::{Duration, Instant};

/// A pause longer than this is cut short so a rate change or shutdown is seen soon.
const PAUSE_MAX: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct RateLimiter {
    rate_bytes_per_sec: u64,
    started: Instant,
    consumed_bytes: u64,
}

impl RateLimiter {
    /// `rate_bytes_per_sec` of 0 means unlimited.
    pub fn new(rate_bytes_per_sec: u64) -> Self {
        RateLimiter {
            rate_bytes_per_sec,
            started: Instant::now(),
            consumed_bytes: 0,
        }
    }

    /// How long to pause after `consumed_bytes` in `elapsed` to stay at the rate.
    pub fn delay_for(rate_bytes_per_sec: u64, consumed_bytes: u64, elapsed: Duration) -> Duration {
        if rate_bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let due_us = u128::from(consumed_bytes) * 1_000_000 / u128::from(rate_bytes_per_sec);
        let due = Duration::from_micros(u64::try_from(due_us).unwrap_or(u64::MAX));
        due.saturating_sub(elapsed)
    }

    /// Accounts `bytes` and sleeps (on the glommio timer) until the budget allows them.
    pub async fn consume(&mut self, bytes: u64) {
        self.consumed_bytes += bytes;
        loop {
            let wait = Self::delay_for(
                self.rate_bytes_per_sec,
                self.consumed_bytes,
                self.started.elapsed(),
            );
            if wait.is_zero() {
                return;
            }
            glommio::timer::sleep(wait.min(PAUSE_MAX)).await;
        }
    }

    pub fn consumed_bytes(&self) -> u64 {
        self.consumed_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_keeps_the_rate() {
        let s = Duration::from_secs;
        assert_eq!(RateLimiter::delay_for(1000, 1000, s(0)), s(1));
        assert_eq!(RateLimiter::delay_for(1000, 1000, s(1)), Duration::ZERO);
        assert_eq!(RateLimiter::delay_for(1000, 500, s(2)), Duration::ZERO);
        assert_eq!(RateLimiter::delay_for(1 << 20, 4 << 20, s(1)), s(3));
        assert_eq!(RateLimiter::delay_for(0, u64::MAX, s(0)), Duration::ZERO);
    }
}
