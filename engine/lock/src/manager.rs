//! The public face of a shard's lock manager: acquire (hierarchical or single), release at
//! transaction end, timeouts, deadlock detection, stats.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::LockConfig;
use crate::error::LockError;
use crate::graph::{ShardWaitGraph, TxnCost, Victim, WaitEdge};
use crate::mode::LockMode;
use crate::profile::{HistogramSummary, Hotspot, LockEvent, LockEventKind};
use crate::resource::{ResourceId, TxnId};
use crate::state::{Outcome, State, Step};

/// Upper bounds (µs) of the lock-wait histogram buckets exported in [`LockStats`]: from a
/// contended fast handoff (10 µs) to the longest timeout (30 s).
pub const WAIT_BUCKETS_US: [u64; 12] = [
    10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 5_000_000, 30_000_000,
];

/// A shard's lock manager. Cheap to clone (one `Rc`); not `Send`: it lives on its shard.
#[derive(Clone)]
pub struct LockManager {
    inner: Rc<RefCell<State>>,
}

/// The result of a non-blocking acquire.
pub enum Acquire {
    Granted,
    /// Queued; await the future (dropping it withdraws the request).
    Wait(LockWait),
}

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TickReport {
    pub victims: Vec<Victim>,
    pub timeouts: usize,
}

/// The shard's lock statistics (JSON for `GET /api/v1/locks`, figures for `/metrics`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LockStats {
    pub shard: u32,
    pub acquires_total: u64,
    pub fast_path_total: u64,
    pub reentrant_total: u64,
    pub waits_total: u64,
    pub upgrades_total: u64,
    pub releases_total: u64,
    pub timeouts_total: u64,
    pub deadlock_victims_total: u64,
    pub cancelled_total: u64,
    pub detections_total: u64,
    pub detect_last_us: u64,
    pub granted_now: u64,
    pub waiting_now: u64,
    pub resources_now: u64,
    pub txns_now: u64,
    pub queue_depth_max: u64,
    pub request_records_allocated: u64,
    pub timeout_current_us: u64,
    pub uptime_us: u64,
    pub wait_us: HistogramSummary,
    /// Waits that ended in a grant, cumulative per upper bound in µs ([`WAIT_BUCKETS_US`]):
    /// the buckets of a Prometheus histogram.
    #[serde(default)]
    pub wait_us_buckets: Vec<(u64, u64)>,
    /// Hold times (grant to release) of one grant in `hold_sample_every`: its `count` is the
    /// number of sampled holds; `releases_total` counts every hold.
    pub hold_us: HistogramSummary,
    /// The sampling period of `hold_us` (`LockConfig::hold_sample_every`).
    #[serde(default)]
    pub hold_sample_every: u32,
    pub profiled_resources: u64,
    pub hotspots: Vec<Hotspot>,
}

/// One resource as seen now plus its history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceView {
    pub resource: Option<ResourceId>,
    pub granted: Vec<(TxnId, LockMode)>,
    /// Queue order; the flag says whether the entry is an upgrade of a granted lock.
    pub waiting: Vec<(TxnId, LockMode, bool)>,
    pub figures: Option<Hotspot>,
    pub events: Vec<LockEvent>,
}

impl LockManager {
    pub fn new(config: LockConfig) -> Self {
        LockManager {
            inner: Rc::new(RefCell::new(State::new(config))),
        }
    }

    pub fn config(&self) -> LockConfig {
        self.inner.borrow().config.clone()
    }

    /// Runs `f` on the state, then wakes the futures it granted or failed (outside the borrow).
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (result, mut wakers) = {
            let mut st = self.inner.borrow_mut();
            let result = f(&mut st);
            if st.wake_buf.is_empty() {
                return result;
            }
            let wakers = std::mem::take(&mut st.wake_buf);
            (result, wakers)
        };
        for w in wakers.drain(..) {
            w.wake();
        }
        let mut st = self.inner.borrow_mut();
        if st.wake_buf.is_empty() {
            st.wake_buf = wakers; // keep the buffer's capacity
        }
        result
    }

    /// Registers `txn` with its global start order (higher = younger). Optional: a
    /// transaction first seen by an acquire gets `start_seq = txn.0`.
    pub fn begin(&self, txn: TxnId, start_seq: u64) -> Result<(), LockError> {
        self.with(|st| st.register_txn(txn, start_seq).map(|_| ()))
    }

    /// Counts work done by `txn` (rows touched), used by the least-work and cost victims.
    pub fn add_work(&self, txn: TxnId, units: u64) {
        self.with(|st| {
            if let Some(&t) = st.by_txn.get(&txn) {
                st.txns[t].work += units;
            }
        })
    }

    /// Acquires `mode` on `resource` alone (no intention locks on its ancestors).
    pub fn try_lock(
        &self,
        txn: TxnId,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<Acquire, LockError> {
        let step = self.with(|st| st.acquire(txn, resource, mode))?;
        Ok(match step {
            Step::Granted => Acquire::Granted,
            Step::Queued(r) => Acquire::Wait(self.wait_for(r)),
        })
    }

    /// Acquires `mode` on `resource` alone, waiting if needed.
    pub async fn lock(
        &self,
        txn: TxnId,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<(), LockError> {
        match self.try_lock(txn, resource, mode)? {
            Acquire::Granted => Ok(()),
            Acquire::Wait(w) => w.await,
        }
    }

    /// Acquires the intention mode on every ancestor (root first), then `mode` on `resource`.
    pub async fn lock_hierarchical(
        &self,
        txn: TxnId,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<(), LockError> {
        let [db, table] = resource.ancestors();
        let chain = [
            db.map(|r| (r, mode.intention())),
            table.map(|r| (r, mode.intention())),
            Some((resource, mode)),
        ];
        // Fast path: the whole chain under one borrow while every step is granted at once
        // (one `with`, no future or `Acquire` per level); the first step that queues is
        // awaited, and the rest of the chain then goes one lock at a time.
        let queued = self.with(|st| {
            for (i, (r, m)) in chain.iter().flatten().enumerate() {
                if let Step::Queued(req) = st.acquire(txn, *r, *m)? {
                    return Ok(Some((i, req)));
                }
            }
            Ok::<_, LockError>(None)
        })?;
        let Some((queued_at, req)) = queued else {
            return Ok(());
        };
        self.wait_for(req).await?;
        for (r, m) in chain.iter().flatten().skip(queued_at + 1) {
            self.lock(txn, *r, *m).await?;
        }
        Ok(())
    }

    /// The future of queued request `req`.
    fn wait_for(&self, req: u32) -> LockWait {
        let generation = self.inner.borrow().requests.generation(req);
        LockWait {
            mgr: self.clone(),
            req,
            generation,
            finished: false,
        }
    }

    /// Releases every lock of `txn` and forgets it (COMMIT / ROLLBACK). Returns locks released.
    pub fn end_txn(&self, txn: TxnId) -> usize {
        self.with(|st| {
            let Some(t) = st.txn_slot(txn) else {
                return 0;
            };
            let reason = LockError::Cancelled {
                shard: st.config.shard,
                txn,
                resource: ResourceId::Database(0),
            };
            st.release_txn(t, &reason, true)
        })
    }

    /// Releases one lock before the transaction ends. Breaks strict 2PL: only for callers
    /// that do not need serializability on that resource (RESP WATCH bookkeeping).
    pub fn release(&self, txn: TxnId, resource: ResourceId) -> bool {
        self.with(|st| {
            let Some(&t) = st.by_txn.get(&txn) else {
                return false;
            };
            let reason = LockError::Cancelled {
                shard: st.config.shard,
                txn,
                resource,
            };
            st.release_one(t, resource, &reason)
        })
    }

    /// Makes `victim` fail if it still waits here: its queued wait returns the deadlock error
    /// (SQLSTATE 40P01), its locks here are released now, and its later acquires fail until
    /// `end_txn`. Returns false (and changes nothing) when it does not wait here.
    ///
    /// WHY only while it waits: victims are chosen from a snapshot of the wait-for graph (for
    /// cycles across shards, gathered shard by shard at different moments), and one pass may
    /// name several. By the time of the abort a victim's wait may have been granted — by an
    /// earlier victim's released locks, or because the snapshot was stale — and its session
    /// is running on, sure that it holds its locks. Releasing them then let a second
    /// transaction write the same row: `mantis-chaos bank` found money created (16,040 in a
    /// bank of 16,000). A transaction that no longer waits is no longer in a deadlock.
    pub fn abort_victim(&self, victim: &Victim) -> bool {
        let waits_here = {
            let st = self.inner.borrow();
            st.by_txn
                .get(&victim.txn)
                .is_some_and(|&t| st.txns[t].waiting.is_some())
        };
        waits_here && self.release_victim(victim)
    }

    /// Fails `victim` on this shard whether or not it waits here: marks it aborted (its later
    /// acquires fail until `end_txn`) and releases its locks here. Only for a victim known to
    /// be doomed — one whose wait [`LockManager::abort_victim`] failed on some shard, so its
    /// session gets 40P01 and never commits: its locks on the other shards may go at once.
    pub fn release_victim(&self, victim: &Victim) -> bool {
        self.with(|st| {
            let Some(&t) = st.by_txn.get(&victim.txn) else {
                return false;
            };
            let resource = st.txns[t]
                .waiting
                .map(|r| st.heads[st.requests[r].head].resource);
            let err = LockError::Deadlock {
                shard: st.config.shard,
                txn: victim.txn,
                resource,
                strategy: victim.strategy,
                cycle_len: victim.cycle_len,
            };
            // Counted where the victim waits, so a cross-shard victim counts once.
            if resource.is_some() {
                st.counters.deadlock_victims += 1;
            }
            st.txns[t].aborted = Some(err.clone());
            st.release_txn(t, &err, false);
            true
        })
    }

    /// This shard's wait-for edges and the costs of the transactions in them.
    pub fn wait_graph(&self) -> ShardWaitGraph {
        let st = self.inner.borrow();
        let mut graph = ShardWaitGraph {
            shard: st.config.shard,
            ..ShardWaitGraph::default()
        };
        let mut involved: Vec<u32> = Vec::new();
        for (_, head) in st.heads.iter_live() {
            for (i, &w) in head.waiting.iter().enumerate() {
                let wr = &st.requests[w];
                let wanted = wr.upgrade_to.unwrap_or(wr.mode);
                let blockers = head
                    .granted
                    .iter()
                    .copied()
                    .filter(|&g| g != w && !wanted.compatible(st.requests[g].mode))
                    .chain(head.waiting.iter().take(i).copied().filter(|&q| {
                        let qr = &st.requests[q];
                        !wanted.compatible(qr.upgrade_to.unwrap_or(qr.mode))
                    }));
                for b in blockers {
                    let (waiter, holder) = (st.requests[w].txn, st.requests[b].txn);
                    if waiter == holder {
                        continue;
                    }
                    involved.push(waiter);
                    involved.push(holder);
                    graph.edges.push(WaitEdge {
                        waiter: st.txns[waiter].id.unwrap_or(TxnId(0)),
                        holder: st.txns[holder].id.unwrap_or(TxnId(0)),
                        shard: st.config.shard,
                        resource: head.resource,
                    });
                }
            }
        }
        involved.sort_unstable();
        involved.dedup();
        graph.txns = involved
            .into_iter()
            .filter_map(|t| {
                let rec = &st.txns[t];
                rec.id.map(|txn| TxnCost {
                    txn,
                    start_seq: rec.start_seq,
                    locks_held: rec.held.len() as u64,
                    work: rec.work,
                })
            })
            .collect();
        graph
    }

    /// Shard-local detection: builds the graph, picks victims by the configured strategy and
    /// aborts them. Cross-shard cycles need `WaitForGraph` over every shard's `wait_graph`.
    pub fn detect_deadlocks(&self) -> Vec<Victim> {
        let started = Instant::now();
        let part = self.wait_graph();
        if part.edges.is_empty() {
            return Vec::new();
        }
        let config = self.config();
        // The shard's graph is kept between passes (its buffers keep their capacity).
        let mut graph = std::mem::take(&mut self.inner.borrow_mut().detect_graph);
        graph.clear();
        graph.add_shard(&part);
        let resolution = graph.resolve(
            config.algorithm,
            config.adaptive_small_edges_max,
            config.victim,
            &config.cost_weights,
        );
        for victim in &resolution.victims {
            self.abort_victim(victim);
        }
        let mut st = self.inner.borrow_mut();
        st.detect_graph = graph;
        st.counters.detections += 1;
        st.counters.detect_last_us = started.elapsed().as_micros() as u64;
        resolution.victims
    }

    /// Fails waits older than the adaptive timeout.
    pub fn expire_timeouts(&self, now: Instant) -> usize {
        self.with(|st| st.expire(now))
    }

    /// One maintenance pass (the shard runs it every `detect_interval_ms`): deadlocks first,
    /// so a deadlocked wait reports 40P01 rather than a timeout.
    pub fn tick(&self, now: Instant) -> TickReport {
        if self.inner.borrow().counters.waiting_now == 0 {
            return TickReport::default();
        }
        let victims = self.detect_deadlocks();
        let timeouts = self.expire_timeouts(now);
        TickReport { victims, timeouts }
    }

    /// The longest current wait: a shard runs detection early when it passes half the timeout.
    pub fn oldest_wait_us(&self, now: Instant) -> u64 {
        let st = self.inner.borrow();
        st.txns
            .iter_live()
            .filter_map(|(_, t)| t.waiting)
            .filter_map(|r| st.requests[r].enqueued_at)
            .map(|at| now.saturating_duration_since(at).as_micros() as u64)
            .max()
            .unwrap_or(0)
    }

    pub fn timeout_us(&self) -> u64 {
        self.inner.borrow().timeout.current_us
    }

    /// The mode `txn` holds on `resource`, if any.
    pub fn held_mode(&self, txn: TxnId, resource: ResourceId) -> Option<LockMode> {
        let st = self.inner.borrow();
        let t = *st.by_txn.get(&txn)?;
        let h = *st.by_resource.get(&resource)?;
        let r = st.find_held(t, h)?;
        Some(st.requests[r].mode)
    }

    pub fn is_waiting(&self, txn: TxnId) -> bool {
        let st = self.inner.borrow();
        st.by_txn
            .get(&txn)
            .is_some_and(|&t| st.txns[t].waiting.is_some())
    }

    pub fn locks_held(&self, txn: TxnId) -> usize {
        let st = self.inner.borrow();
        st.by_txn.get(&txn).map_or(0, |&t| st.txns[t].held.len())
    }

    pub fn stats(&self) -> LockStats {
        let st = self.inner.borrow();
        let c = st.counters;
        LockStats {
            shard: st.config.shard,
            acquires_total: c.acquires,
            fast_path_total: c.fast_path,
            reentrant_total: c.reentrant,
            waits_total: c.waits,
            upgrades_total: c.upgrades,
            releases_total: c.releases,
            timeouts_total: c.timeouts,
            deadlock_victims_total: c.deadlock_victims,
            cancelled_total: c.cancelled,
            detections_total: c.detections,
            detect_last_us: c.detect_last_us,
            granted_now: st.counters.granted_now,
            waiting_now: c.waiting_now,
            resources_now: st.by_resource.len() as u64,
            txns_now: st.by_txn.len() as u64,
            queue_depth_max: c.queue_depth_max,
            request_records_allocated: st.requests.allocated() as u64,
            timeout_current_us: st.timeout.current_us,
            uptime_us: st.since_epoch_us(Instant::now()),
            wait_us: HistogramSummary::of(&st.profiler.wait_us),
            wait_us_buckets: WAIT_BUCKETS_US
                .iter()
                .map(|&le| (le, st.profiler.wait_us.count_between(0, le)))
                .collect(),
            hold_us: HistogramSummary::of(&st.profiler.hold_us),
            hold_sample_every: st.config.hold_sample_every.max(1),
            profiled_resources: st.profiler.profiled_resources() as u64,
            hotspots: st.profiler.hotspots(st.config.hotspots_max),
        }
    }

    /// Holders, queue and history of one resource.
    pub fn resource_view(&self, resource: ResourceId) -> ResourceView {
        let st = self.inner.borrow();
        let mut view = ResourceView {
            resource: Some(resource),
            ..ResourceView::default()
        };
        if let Some(&h) = st.by_resource.get(&resource) {
            let head = &st.heads[h];
            let id = |r: u32| st.txns[st.requests[r].txn].id.unwrap_or(TxnId(0));
            view.granted = head
                .granted
                .iter()
                .map(|&r| (id(r), st.requests[r].mode))
                .collect();
            view.waiting = head
                .waiting
                .iter()
                .map(|&r| {
                    let rq = &st.requests[r];
                    (
                        id(r),
                        rq.upgrade_to.unwrap_or(rq.mode),
                        rq.upgrade_to.is_some(),
                    )
                })
                .collect();
        }
        if let Some((figures, events)) = st.profiler.resource(resource) {
            view.figures = Some(figures);
            view.events = events;
        }
        view
    }

    /// Records in use, for leak checks in tests: (requests, resources, txns).
    pub fn records_in_use(&self) -> (usize, usize, usize) {
        let st = self.inner.borrow();
        (st.requests.live(), st.heads.live(), st.txns.live())
    }
}

/// A queued lock request; resolves when granted, or fails on timeout / deadlock / cancel.
pub struct LockWait {
    mgr: LockManager,
    req: u32,
    generation: u32,
    finished: bool,
}

impl Future for LockWait {
    type Output = Result<(), LockError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "LockWait polled after completion");
        let mut st = this.mgr.inner.borrow_mut();
        assert!(
            st.requests.is_live(this.req, this.generation),
            "lock request record recycled under its future"
        );
        let rq = &mut st.requests[this.req];
        match std::mem::take(&mut rq.outcome) {
            Outcome::Pending => {
                match &rq.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => rq.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Outcome::Granted => {
                rq.has_waiter = false;
                this.finished = true;
                Poll::Ready(Ok(()))
            }
            Outcome::Failed(err) => {
                rq.has_waiter = false;
                let granted = rq.granted;
                if !granted {
                    st.requests.free(this.req);
                }
                this.finished = true;
                Poll::Ready(Err(err))
            }
        }
    }
}

impl Drop for LockWait {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (req, generation) = (self.req, self.generation);
        self.mgr.with(|st| {
            if !st.requests.is_live(req, generation) {
                return;
            }
            if st.requests[req].waiting {
                let t = st.requests[req].txn;
                let err = LockError::Cancelled {
                    shard: st.config.shard,
                    txn: st.txns[t].id.unwrap_or(TxnId(0)),
                    resource: st.heads[st.requests[req].head].resource,
                };
                st.counters.cancelled += 1;
                st.cancel_wait(req, err, LockEventKind::Cancelled);
            }
            let rq = &mut st.requests[req];
            rq.has_waiter = false;
            rq.outcome = Outcome::Pending;
            rq.waker = None;
            if !rq.granted {
                st.requests.free(req);
            }
        });
    }
}
