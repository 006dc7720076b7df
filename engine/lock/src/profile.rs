//! Lock profiling: wait and hold histograms, and a bounded history per contended resource.
//! Only the slow path (a request that waits) records per-resource data, so the uncontended
//! fast path pays nothing for it.

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hash::FxHashMap;
use crate::mode::LockMode;
use crate::resource::{ResourceId, TxnId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockEventKind {
    Queued,
    Granted,
    TimedOut,
    DeadlockVictim,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEvent {
    /// Microseconds since the lock manager was created.
    pub at_us: u64,
    pub txn: TxnId,
    pub mode: LockMode,
    pub kind: LockEventKind,
    /// Queue length (for `Queued`) or wait time in microseconds (for the others).
    pub value: u64,
}

/// Contention figures of one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hotspot {
    pub resource: Option<ResourceId>,
    pub waits: u64,
    pub wait_total_us: u64,
    pub wait_max_us: u64,
    pub queue_depth_max: u64,
    pub timeouts: u64,
    pub deadlock_victims: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl HistogramSummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        HistogramSummary {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

struct ResourceProfile {
    figures: Hotspot,
    events: VecDeque<LockEvent>,
}

pub(crate) struct Profiler {
    resources: FxHashMap<ResourceId, ResourceProfile>,
    resources_max: usize,
    events_max: usize,
    pub(crate) wait_us: Histogram<u64>,
    pub(crate) hold_us: Histogram<u64>,
}

/// Longest wait or hold the histograms tell apart, in microseconds (one hour); longer ones
/// count as this long.
pub const LOCK_TIME_US_MAX: u64 = 3_600_000_000;

/// A wait/hold histogram over 1 µs ..= `LOCK_TIME_US_MAX`, two significant figures: its size is
/// fixed up front (a few KiB).
/// The story: it was `Histogram::new(2)` with auto-resize, whose range starts at 1..=2, and
/// `saturating_record` clamps instead of resizing: every hold read as 2 µs and no wait as
/// longer than 255 µs, while the same waits summed to milliseconds per resource.
fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LOCK_TIME_US_MAX, 2) {
        Ok(h) => h,
        Err(e) => unreachable_histogram(e),
    }
}

#[cold]
fn unreachable_histogram(e: hdrhistogram::CreationError) -> Histogram<u64> {
    panic!("hdrhistogram refused 1..={LOCK_TIME_US_MAX} at 2 significant figures: {e}")
}

impl Profiler {
    pub(crate) fn new(resources_max: usize, events_max: usize) -> Self {
        assert!(events_max > 0, "events_per_resource_max must be positive");
        Profiler {
            resources: FxHashMap::default(),
            resources_max,
            events_max,
            wait_us: histogram(),
            hold_us: histogram(),
        }
    }

    fn profile(&mut self, resource: ResourceId) -> Option<&mut ResourceProfile> {
        if !self.resources.contains_key(&resource) {
            if self.resources_max == 0 {
                return None;
            }
            if self.resources.len() >= self.resources_max {
                // Evict the least contended resource: the table keeps the hot ones.
                let coldest = self
                    .resources
                    .iter()
                    .min_by_key(|(_, p)| p.figures.wait_total_us)
                    .map(|(r, _)| *r);
                if let Some(r) = coldest {
                    self.resources.remove(&r);
                }
            }
            self.resources.insert(
                resource,
                ResourceProfile {
                    figures: Hotspot {
                        resource: Some(resource),
                        ..Hotspot::default()
                    },
                    events: VecDeque::with_capacity(self.events_max),
                },
            );
        }
        self.resources.get_mut(&resource)
    }

    pub(crate) fn record(&mut self, resource: ResourceId, event: LockEvent) {
        let events_max = self.events_max;
        if event.kind == LockEventKind::Granted {
            self.wait_us.saturating_record(event.value);
        }
        let Some(p) = self.profile(resource) else {
            return;
        };
        match event.kind {
            LockEventKind::Queued => {
                p.figures.queue_depth_max = p.figures.queue_depth_max.max(event.value);
            }
            LockEventKind::Granted => {
                p.figures.waits += 1;
                p.figures.wait_total_us += event.value;
                p.figures.wait_max_us = p.figures.wait_max_us.max(event.value);
            }
            LockEventKind::TimedOut => {
                p.figures.timeouts += 1;
                p.figures.wait_total_us += event.value;
            }
            LockEventKind::DeadlockVictim => {
                p.figures.deadlock_victims += 1;
                p.figures.wait_total_us += event.value;
            }
            LockEventKind::Cancelled => {}
        }
        if p.events.len() >= events_max {
            p.events.pop_front();
        }
        p.events.push_back(event);
    }

    pub(crate) fn record_hold(&mut self, hold_us: u64) {
        self.hold_us.saturating_record(hold_us);
    }

    /// The `n` resources with the most total wait time.
    pub(crate) fn hotspots(&self, n: usize) -> Vec<Hotspot> {
        let mut all: Vec<Hotspot> = self.resources.values().map(|p| p.figures.clone()).collect();
        all.sort_by(|a, b| {
            b.wait_total_us
                .cmp(&a.wait_total_us)
                .then(b.waits.cmp(&a.waits))
        });
        all.truncate(n);
        all
    }

    pub(crate) fn resource(&self, resource: ResourceId) -> Option<(Hotspot, Vec<LockEvent>)> {
        self.resources
            .get(&resource)
            .map(|p| (p.figures.clone(), p.events.iter().copied().collect()))
    }

    pub(crate) fn profiled_resources(&self) -> usize {
        self.resources.len()
    }
}

/// The lock-wait timeout, following the observed wait distribution: p99 × factor, clamped.
/// A fixed timeout is either too short under load (spurious aborts) or too long when a
/// deadlock spans shards and detection has not run yet.
pub(crate) struct AdaptiveTimeout {
    pub(crate) current_us: u64,
    min_us: u64,
    max_us: u64,
    factor: f64,
    update_every_waits: u64,
    waits_since_update: u64,
}

impl AdaptiveTimeout {
    pub(crate) fn new(
        initial_us: u64,
        min_us: u64,
        max_us: u64,
        factor: f64,
        update_every_waits: u64,
    ) -> Self {
        assert!(
            min_us <= max_us,
            "timeout_min_us {min_us} > timeout_max_us {max_us}"
        );
        AdaptiveTimeout {
            current_us: initial_us.clamp(min_us, max_us),
            min_us,
            max_us,
            factor,
            update_every_waits: update_every_waits.max(1),
            waits_since_update: 0,
        }
    }

    pub(crate) fn observe(&mut self, waits: &Histogram<u64>) {
        self.waits_since_update += 1;
        if self.waits_since_update < self.update_every_waits {
            return;
        }
        self.waits_since_update = 0;
        let p99 = waits.value_at_quantile(0.99) as f64;
        let target = (p99 * self.factor).min(u64::MAX as f64 / 2.0) as u64;
        self.current_us = target.clamp(self.min_us, self.max_us);
    }
}
