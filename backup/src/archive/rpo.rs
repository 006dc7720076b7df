//! RPO levels and the compliance tracker: how much committed data may be exposed (not yet
//! archived), and a record over time of whether the exposure stayed under that bound.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Breach intervals kept for `GET /api/v1/rpo`; the oldest go first.
pub const BREACHES_KEPT_MAX: usize = 64;

/// The recovery point objective: the largest tolerated age of the oldest committed write not
/// yet archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpoLevel {
    /// Every acknowledged write is already synced locally (`sync_local`: the WAL fdatasyncs
    /// before acknowledging); the archive ships every tick and is held to the Minimal bound.
    Zero,
    /// < 1 s.
    Minimal,
    /// < 5 s.
    Low,
    /// < 30 s.
    Medium,
    /// < 5 min.
    High,
}

impl RpoLevel {
    /// Exposure at or above this breaches the level.
    pub fn target_ms(self) -> u64 {
        match self {
            RpoLevel::Zero | RpoLevel::Minimal => 1_000,
            RpoLevel::Low => 5_000,
            RpoLevel::Medium => 30_000,
            RpoLevel::High => 300_000,
        }
    }

    /// Ship once the oldest unarchived write is this old: a quarter of the bound (none for
    /// Zero), which leaves three quarters for the upload itself and a slow tick.
    pub fn ship_after_ms(self) -> u64 {
        match self {
            RpoLevel::Zero => 0,
            other => other.target_ms() / 4,
        }
    }

    /// How often the archiver looks at the WAL and measures exposure.
    pub fn tick_ms(self) -> u64 {
        match self {
            RpoLevel::Zero | RpoLevel::Minimal => 50,
            RpoLevel::Low => 100,
            RpoLevel::Medium | RpoLevel::High => 250,
        }
    }

    pub fn parse(s: &str) -> Option<RpoLevel> {
        Some(match s {
            "zero" => RpoLevel::Zero,
            "minimal" => RpoLevel::Minimal,
            "low" => RpoLevel::Low,
            "medium" => RpoLevel::Medium,
            "high" => RpoLevel::High,
            _ => return None,
        })
    }
}

/// One interval during which some shard's exposure was at or above the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breach {
    pub started_at_ms: u64,
    /// None while it lasts.
    pub ended_at_ms: Option<u64>,
    pub exposure_max_ms: u64,
}

/// Compliance over time, fed one observation per archiver tick.
#[derive(Debug, Clone, Serialize)]
pub struct Compliance {
    pub target_ms: u64,
    pub since_ms: u64,
    pub compliant_ms: u64,
    pub breached_ms: u64,
    pub breaches_total: u64,
    /// The most recent breaches, the current one last.
    pub breaches: VecDeque<Breach>,
    #[serde(skip)]
    last_ms: u64,
}

impl Compliance {
    pub fn new(target_ms: u64, now_ms: u64) -> Compliance {
        assert!(target_ms > 0, "an RPO target is a positive duration");
        Compliance {
            target_ms,
            since_ms: now_ms,
            compliant_ms: 0,
            breached_ms: 0,
            breaches_total: 0,
            breaches: VecDeque::new(),
            last_ms: now_ms,
        }
    }

    pub fn breached(&self) -> bool {
        self.breaches
            .back()
            .is_some_and(|b| b.ended_at_ms.is_none())
    }

    /// Records the worst exposure across shards at `now_ms`. The time since the previous
    /// observation counts in the state that held during it.
    pub fn observe(&mut self, now_ms: u64, exposure_max_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        if self.breached() {
            self.breached_ms += elapsed;
        } else {
            self.compliant_ms += elapsed;
        }
        let over = exposure_max_ms >= self.target_ms;
        match (self.breached(), over) {
            (false, true) => {
                self.breaches_total += 1;
                if self.breaches.len() == BREACHES_KEPT_MAX {
                    self.breaches.pop_front();
                }
                self.breaches.push_back(Breach {
                    started_at_ms: now_ms,
                    ended_at_ms: None,
                    exposure_max_ms,
                });
            }
            (true, over) => {
                if let Some(b) = self.breaches.back_mut() {
                    b.exposure_max_ms = b.exposure_max_ms.max(exposure_max_ms);
                    if !over {
                        b.ended_at_ms = Some(now_ms);
                    }
                }
            }
            (false, false) => {}
        }
        assert!(self.breaches.len() <= BREACHES_KEPT_MAX);
    }

    /// Fraction of the observed time spent compliant (1.0 before any time passed).
    pub fn compliant_ratio(&self) -> f64 {
        let total = self.compliant_ms + self.breached_ms;
        if total == 0 {
            1.0
        } else {
            self.compliant_ms as f64 / total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn levels_have_the_issue_bounds() {
        let bounds: Vec<u64> = ["minimal", "low", "medium", "high"]
            .iter()
            .map(|s| RpoLevel::parse(s).unwrap().target_ms())
            .collect();
        assert_eq!(bounds, [1_000, 5_000, 30_000, 300_000]);
        assert_eq!(RpoLevel::parse("zero").unwrap().ship_after_ms(), 0);
        assert!(RpoLevel::parse("never").is_none());
    }

    #[test]
    fn breach_starts_at_target_and_ends_when_exposure_drops() {
        let mut c = Compliance::new(1_000, 0);
        c.observe(100, 999);
        assert!(!c.breached());
        c.observe(200, 1_000);
        assert!(c.breached());
        c.observe(700, 1_500);
        c.observe(900, 0);
        assert!(!c.breached());
        assert_eq!(c.breaches_total, 1);
        assert_eq!(c.compliant_ms, 200);
        assert_eq!(c.breached_ms, 700);
        let b = c.breaches.back().unwrap();
        assert_eq!(
            (b.started_at_ms, b.ended_at_ms, b.exposure_max_ms),
            (200, Some(900), 1_500)
        );
    }

    #[test]
    fn kept_breaches_are_bounded() {
        let mut c = Compliance::new(10, 0);
        for i in 0..(BREACHES_KEPT_MAX as u64 + 5) {
            c.observe(i * 2, 10);
            c.observe(i * 2 + 1, 0);
        }
        assert_eq!(c.breaches.len(), BREACHES_KEPT_MAX);
        assert_eq!(c.breaches_total, BREACHES_KEPT_MAX as u64 + 5);
    }
}
