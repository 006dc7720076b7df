//! The lock table of one shard: pooled records, per-resource FIFO queues, grant and release.
//! Everything here runs under one `RefCell` borrow; wakers are collected in `wake_buf` and
//! woken by the caller after the borrow ends (a woken task may run and re-enter at once).

use std::collections::VecDeque;
use std::task::Waker;
use std::time::Instant;

use crate::config::LockConfig;
use crate::error::LockError;
use crate::graph::WaitForGraph;
use crate::hash::FxHashMap;
use crate::mode::{LockMode, MODE_COUNT};
use crate::pool::Pool;
use crate::profile::{AdaptiveTimeout, LockEvent, LockEventKind, Profiler};
use crate::resource::{ResourceId, TxnId};
use crate::table::{Probe, SlotTable};

#[derive(Default, Debug)]
pub(crate) enum Outcome {
    #[default]
    Pending,
    Granted,
    Failed(LockError),
}

/// One transaction's lock (granted, queued, or granted with a queued upgrade) on one resource.
#[derive(Default)]
pub(crate) struct Request {
    pub(crate) txn: u32,
    pub(crate) head: u32,
    pub(crate) mode: LockMode,
    pub(crate) upgrade_to: Option<LockMode>,
    pub(crate) granted: bool,
    pub(crate) waiting: bool,
    /// A `LockWait` future refers to this record: it is freed by the future, not the table.
    pub(crate) has_waiter: bool,
    pub(crate) outcome: Outcome,
    pub(crate) waker: Option<Waker>,
    pub(crate) granted_pos: u32,
    /// Listed in `State::held_index` (its head has had more than `HELD_SCAN_MAX` holders).
    pub(crate) indexed: bool,
    pub(crate) enqueued_at: Option<Instant>,
    pub(crate) granted_at: Option<Instant>,
}

/// The lock head of one resource: holders, FIFO wait queue, granted count per mode.
pub(crate) struct Head {
    pub(crate) resource: ResourceId,
    pub(crate) granted: Vec<u32>,
    pub(crate) waiting: VecDeque<u32>,
    pub(crate) counts: [u32; MODE_COUNT],
    /// Its holders are listed in `State::held_index` (set once it has had more than
    /// `HELD_SCAN_MAX` holders; reset when the head is recycled).
    pub(crate) indexed: bool,
}

/// Up to this many holders, a transaction's own lock on a resource is found by scanning the
/// holders; beyond it, through `held_index`. Why: the index cost three hash operations per
/// uncontended lock (lookup, insert, remove) — most of the fast path — while almost every
/// resource has one or a few holders; only hot intention locks (a database's IS) have many.
pub(crate) const HELD_SCAN_MAX: usize = 8;

impl Default for Head {
    fn default() -> Self {
        Head {
            resource: ResourceId::Database(0),
            granted: Vec::new(),
            waiting: VecDeque::new(),
            counts: [0; MODE_COUNT],
            indexed: false,
        }
    }
}

#[derive(Default)]
pub(crate) struct Txn {
    pub(crate) id: Option<TxnId>,
    pub(crate) start_seq: u64,
    pub(crate) held: Vec<u32>,
    pub(crate) waiting: Option<u32>,
    pub(crate) work: u64,
    pub(crate) aborted: Option<LockError>,
}

#[derive(Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) acquires: u64,
    pub(crate) fast_path: u64,
    pub(crate) reentrant: u64,
    pub(crate) waits: u64,
    pub(crate) upgrades: u64,
    pub(crate) releases: u64,
    pub(crate) timeouts: u64,
    pub(crate) deadlock_victims: u64,
    pub(crate) cancelled: u64,
    pub(crate) detections: u64,
    pub(crate) detect_last_us: u64,
    pub(crate) waiting_now: u64,
    pub(crate) granted_now: u64,
    pub(crate) queue_depth_max: u64,
}

pub(crate) enum Step {
    Granted,
    Queued(u32),
}

pub(crate) struct State {
    pub(crate) config: LockConfig,
    pub(crate) epoch: Instant,
    pub(crate) heads: Pool<Head>,
    pub(crate) requests: Pool<Request>,
    pub(crate) txns: Pool<Txn>,
    pub(crate) by_resource: SlotTable<ResourceId>,
    pub(crate) by_txn: SlotTable<TxnId>,
    /// (txn slot, head) → request, for heads with more than `HELD_SCAN_MAX` holders: finds a
    /// transaction's own lock without scanning them (a database IS lock can have thousands).
    pub(crate) held_index: FxHashMap<(u32, u32), u32>,
    /// The transaction of the last acquire: a transaction takes its locks one after another,
    /// so this saves the `by_txn` lookup for all but the first.
    last_txn: Option<(TxnId, u32)>,
    pub(crate) counters: Counters,
    pub(crate) profiler: Profiler,
    pub(crate) timeout: AdaptiveTimeout,
    pub(crate) wake_buf: Vec<Waker>,
    /// Grants left before the next one whose hold time is measured (1..=hold_sample_every).
    grants_until_sample: u32,
    /// The shard-local detector's graph, reused by every pass (taken out during one).
    pub(crate) detect_graph: WaitForGraph,
}

impl State {
    pub(crate) fn new(config: LockConfig) -> Self {
        let profiler = Profiler::new(
            config.profiled_resources_max,
            config.events_per_resource_max.max(1),
        );
        let timeout = AdaptiveTimeout::new(
            config.timeout_initial_us,
            config.timeout_min_us,
            config.timeout_max_us,
            config.timeout_p99_factor,
            config.timeout_update_every_waits,
        );
        State {
            heads: Pool::new(config.resources_max),
            requests: Pool::new(config.requests_max),
            txns: Pool::new(config.txns_max),
            by_resource: SlotTable::default(),
            by_txn: SlotTable::default(),
            held_index: FxHashMap::default(),
            last_txn: None,
            counters: Counters::default(),
            profiler,
            timeout,
            wake_buf: Vec::new(),
            grants_until_sample: config.hold_sample_every.max(1),
            detect_graph: WaitForGraph::default(),
            epoch: Instant::now(),
            config,
        }
    }

    #[cold]
    fn requests_full(&mut self, h: u32) -> LockError {
        self.free_head_if_idle(h);
        self.capacity("request", self.config.requests_max)
    }

    #[cold]
    fn capacity(&self, what: &'static str, records_max: usize) -> LockError {
        LockError::Capacity {
            shard: self.config.shard,
            what,
            records_max,
        }
    }

    pub(crate) fn since_epoch_us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    pub(crate) fn register_txn(&mut self, txn: TxnId, start_seq: u64) -> Result<u32, LockError> {
        match self.by_txn.probe(&txn) {
            Probe::Found(t) => Ok(t),
            Probe::Vacant(index) => self.register_new_txn(index, txn, start_seq),
        }
    }

    /// Registers `txn`, known not to be registered yet, at the vacant `index` of `by_txn`
    /// (one probe of the map per new transaction: it is a third of a one-lock transaction).
    #[inline(always)]
    fn register_new_txn(
        &mut self,
        index: usize,
        txn: TxnId,
        start_seq: u64,
    ) -> Result<u32, LockError> {
        let t = self
            .txns
            .alloc()
            .ok_or_else(|| self.capacity("transaction", self.config.txns_max))?;
        let rec = &mut self.txns[t];
        assert!(
            rec.held.is_empty() && rec.waiting.is_none(),
            "recycled txn record not clean"
        );
        rec.id = Some(txn);
        rec.start_seq = start_seq;
        rec.work = 0;
        rec.aborted = None;
        self.by_txn.insert_vacant(index, txn, t);
        self.last_txn = Some((txn, t));
        Ok(t)
    }

    /// The slot of a registered transaction.
    #[inline]
    pub(crate) fn txn_slot(&mut self, txn: TxnId) -> Option<u32> {
        if let Some((id, t)) = self.last_txn {
            if id == txn {
                debug_assert_eq!(self.txns[t].id, Some(txn), "stale last_txn");
                return Some(t);
            }
        }
        let t = *self.by_txn.get(&txn)?;
        self.last_txn = Some((txn, t));
        Some(t)
    }

    /// Forgets transaction slot `t` (its locks are released).
    #[inline(always)]
    pub(crate) fn forget_txn(&mut self, t: u32) {
        assert!(
            self.txns[t].held.is_empty(),
            "forgetting a txn that holds locks"
        );
        if let Some(id) = self.txns[t].id.take() {
            self.by_txn.remove(&id);
        }
        if self.last_txn.is_some_and(|(_, slot)| slot == t) {
            self.last_txn = None;
        }
        self.txns.free(t);
    }

    /// `t`'s granted request on head `h`, if it holds one.
    #[inline(always)]
    pub(crate) fn find_held(&self, t: u32, h: u32) -> Option<u32> {
        let head = &self.heads[h];
        if head.indexed {
            return self.held_index.get(&(t, h)).copied();
        }
        debug_assert!(head.granted.len() <= HELD_SCAN_MAX);
        head.granted
            .iter()
            .copied()
            .find(|&r| self.requests[r].txn == t)
    }

    /// A head for `resource`, known not to have one, at the vacant `index` of `by_resource`.
    #[inline(always)]
    fn new_head(&mut self, index: usize, resource: ResourceId) -> Result<u32, LockError> {
        let Some(h) = self.heads.alloc() else {
            return Err(self.capacity("resource", self.config.resources_max));
        };
        let head = &mut self.heads[h];
        assert!(
            head.granted.is_empty() && head.waiting.is_empty(),
            "recycled head not empty"
        );
        head.resource = resource;
        head.counts = [0; MODE_COUNT];
        head.indexed = false;
        self.by_resource.insert_vacant(index, resource, h);
        Ok(h)
    }

    #[inline(always)]
    fn free_head_if_idle(&mut self, h: u32) {
        let head = &self.heads[h];
        if head.granted.is_empty() && head.waiting.is_empty() {
            self.free_idle_head(h);
        }
    }

    /// Frees head `h`, known to have no holder and no waiter.
    #[inline(always)]
    fn free_idle_head(&mut self, h: u32) {
        let head = &self.heads[h];
        assert!(
            head.granted.is_empty() && head.waiting.is_empty(),
            "freeing a head in use"
        );
        assert!(
            head.counts == [0; MODE_COUNT],
            "idle head with granted counts"
        );
        let resource = head.resource;
        let removed = self.by_resource.remove(&resource);
        debug_assert_eq!(removed, Some(h), "resource index out of date");
        self.heads.free(h);
    }

    #[inline(always)]
    fn new_request(&mut self, t: u32, h: u32, mode: LockMode) -> Result<u32, LockError> {
        let Some(r) = self.requests.alloc() else {
            return Err(self.requests_full(h));
        };
        let rq = &mut self.requests[r];
        rq.txn = t;
        rq.head = h;
        rq.mode = mode;
        rq.upgrade_to = None;
        rq.granted = false;
        rq.indexed = false;
        rq.waiting = false;
        rq.has_waiter = false;
        rq.outcome = Outcome::Pending;
        rq.waker = None;
        rq.enqueued_at = None;
        rq.granted_at = None;
        Ok(r)
    }

    #[inline(always)]
    fn add_granted(&mut self, r: u32) {
        let (t, h, mode) = {
            let rq = &self.requests[r];
            (rq.txn, rq.head, rq.mode)
        };
        let head = &mut self.heads[h];
        let pos = head.granted.len();
        head.granted.push(r);
        head.counts[mode.index()] += 1;
        let index = head.indexed || pos >= HELD_SCAN_MAX;
        self.txns[t].held.push(r);
        self.counters.granted_now += 1;
        if index {
            self.index_holder(t, h, r);
        }
        // Counting down to the next sampled grant: one clock read per `hold_sample_every`
        // grants (and one at its release), not two per lock.
        self.grants_until_sample -= 1;
        let sample = self.grants_until_sample == 0;
        if sample {
            self.grants_until_sample = self.config.hold_sample_every.max(1);
        }
        let rq = &mut self.requests[r];
        rq.granted = true;
        rq.granted_pos = pos as u32;
        rq.granted_at = if sample { Some(Instant::now()) } else { None };
    }

    /// `t` if it may acquire: not a deadlock victim, not already waiting.
    #[inline(always)]
    fn usable_txn(&self, t: u32, txn: TxnId) -> Result<u32, LockError> {
        let rec = &self.txns[t];
        if let Some(err) = &rec.aborted {
            return Err(err.clone());
        }
        if rec.waiting.is_some() {
            return Err(LockError::AlreadyWaiting {
                shard: self.config.shard,
                txn,
            });
        }
        Ok(t)
    }

    /// Lists `r` (of txn slot `t`) in `held_index`, first listing every holder of `h` if the
    /// head just passed `HELD_SCAN_MAX` holders. Rare: only heads with many holders.
    #[cold]
    fn index_holder(&mut self, t: u32, h: u32, r: u32) {
        if self.heads[h].indexed {
            self.held_index.insert((t, h), r);
            self.requests[r].indexed = true;
            return;
        }
        self.heads[h].indexed = true;
        for i in 0..self.heads[h].granted.len() {
            let g = self.heads[h].granted[i];
            let owner = self.requests[g].txn;
            let before = self.held_index.insert((owner, h), g);
            assert!(before.is_none(), "a txn holds two requests on one resource");
            self.requests[g].indexed = true;
        }
    }

    /// Acquire `mode` on `resource` for `txn`: granted at once, or queued (FIFO, upgrades first).
    pub(crate) fn acquire(
        &mut self,
        txn: TxnId,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<Step, LockError> {
        let t = match self.last_txn {
            Some((id, t)) if id == txn => self.usable_txn(t, txn)?,
            _ => match self.by_txn.probe(&txn) {
                Probe::Found(t) => {
                    self.last_txn = Some((txn, t));
                    self.usable_txn(t, txn)?
                }
                // A new transaction is neither aborted nor waiting.
                Probe::Vacant(index) => self.register_new_txn(index, txn, txn.0)?,
            },
        };
        self.counters.acquires += 1;
        let h = match self.by_resource.probe(&resource) {
            Probe::Found(h) => h,
            Probe::Vacant(index) => {
                // Nobody holds or waits for `resource`: granted at once, without scanning
                // holders or checking modes (the common case: a row locked for the first time).
                let h = self.new_head(index, resource)?;
                let r = self.new_request(t, h, mode)?;
                self.add_granted(r);
                self.counters.fast_path += 1;
                return Ok(Step::Granted);
            }
        };
        if let Some(r) = self.find_held(t, h) {
            return Ok(self.upgrade(t, h, r, mode));
        }
        let head = &self.heads[h];
        // FIFO: a compatible newcomer still queues behind waiters, or a stream of readers
        // would starve a writer forever.
        if head.waiting.is_empty() && mode.compatible_with_counts(&head.counts) {
            let r = self.new_request(t, h, mode)?;
            self.add_granted(r);
            self.counters.fast_path += 1;
            return Ok(Step::Granted);
        }
        let r = self.new_request(t, h, mode)?;
        self.enqueue(t, h, r, false);
        Ok(Step::Queued(r))
    }

    fn upgrade(&mut self, t: u32, h: u32, r: u32, mode: LockMode) -> Step {
        let held = self.requests[r].mode;
        if held.covers(mode) {
            self.counters.reentrant += 1;
            return Step::Granted;
        }
        let target = held.supremum(mode);
        self.counters.upgrades += 1;
        let head = &mut self.heads[h];
        head.counts[held.index()] -= 1;
        if target.compatible_with_counts(&head.counts) {
            head.counts[target.index()] += 1;
            self.requests[r].mode = target;
            return Step::Granted;
        }
        head.counts[held.index()] += 1;
        self.requests[r].upgrade_to = Some(target);
        self.enqueue(t, h, r, true);
        Step::Queued(r)
    }

    fn enqueue(&mut self, t: u32, h: u32, r: u32, upgrade: bool) {
        let now = Instant::now();
        {
            let rq = &mut self.requests[r];
            rq.waiting = true;
            rq.has_waiter = true;
            rq.outcome = Outcome::Pending;
            rq.enqueued_at = Some(now);
        }
        let requests = &self.requests;
        let head = &mut self.heads[h];
        if upgrade {
            // Upgraders go before plain waiters (FIFO among themselves): they already hold the
            // resource, so a waiter ahead of them that conflicts with their held mode could
            // never be granted before them anyway.
            let pos = head
                .waiting
                .iter()
                .position(|&w| requests[w].upgrade_to.is_none())
                .unwrap_or(head.waiting.len());
            head.waiting.insert(pos, r);
        } else {
            head.waiting.push_back(r);
        }
        let depth = head.waiting.len() as u64;
        let resource = head.resource;
        self.txns[t].waiting = Some(r);
        self.counters.waits += 1;
        self.counters.waiting_now += 1;
        self.counters.queue_depth_max = self.counters.queue_depth_max.max(depth);
        let event = self.event(r, LockEventKind::Queued, depth, now);
        self.profiler.record(resource, event);
    }

    fn event(&self, r: u32, kind: LockEventKind, value: u64, at: Instant) -> LockEvent {
        let rq = &self.requests[r];
        LockEvent {
            at_us: self.since_epoch_us(at),
            txn: self.txns[rq.txn].id.unwrap_or(TxnId(0)),
            mode: rq.upgrade_to.unwrap_or(rq.mode),
            kind,
            value,
        }
    }

    /// Grants queued requests from the front while they fit (strict FIFO: stop at the first
    /// that does not).
    #[inline(always)]
    fn grant_waiters(&mut self, h: u32) {
        if self.heads[h].waiting.is_empty() {
            return; // the common case: no clock read on an uncontended release
        }
        self.grant_queued(h);
    }

    #[inline(never)]
    fn grant_queued(&mut self, h: u32) {
        let now = Instant::now();
        while let Some(&r) = self.heads[h].waiting.front() {
            let (mode, upgrade_to) = (self.requests[r].mode, self.requests[r].upgrade_to);
            let head = &mut self.heads[h];
            if let Some(target) = upgrade_to {
                head.counts[mode.index()] -= 1;
                if !target.compatible_with_counts(&head.counts) {
                    head.counts[mode.index()] += 1;
                    return;
                }
                head.counts[target.index()] += 1;
                head.waiting.pop_front();
                let rq = &mut self.requests[r];
                rq.mode = target;
                rq.upgrade_to = None;
            } else {
                if !mode.compatible_with_counts(&head.counts) {
                    return;
                }
                head.waiting.pop_front();
                self.add_granted(r);
            }
            let waited_us = self.requests[r]
                .enqueued_at
                .map_or(0, |at| now.saturating_duration_since(at).as_micros() as u64);
            let event = self.event(r, LockEventKind::Granted, waited_us, now);
            let resource = self.heads[h].resource;
            self.profiler.record(resource, event);
            self.timeout.observe(&self.profiler.wait_us);
            self.finish_wait(r, Outcome::Granted);
        }
    }

    /// The request left its queue: publish the outcome and wake its future.
    fn finish_wait(&mut self, r: u32, outcome: Outcome) {
        let t = self.requests[r].txn;
        assert_eq!(
            self.txns[t].waiting,
            Some(r),
            "finished wait not the txn's wait"
        );
        self.txns[t].waiting = None;
        self.counters.waiting_now -= 1;
        let rq = &mut self.requests[r];
        assert!(rq.waiting, "finish_wait on a request not waiting");
        rq.waiting = false;
        rq.enqueued_at = None;
        rq.outcome = outcome;
        if let Some(w) = rq.waker.take() {
            self.wake_buf.push(w);
        }
    }

    /// Removes a queued request (timeout, victim, cancel). An upgrade keeps its granted mode.
    pub(crate) fn cancel_wait(&mut self, r: u32, err: LockError, kind: LockEventKind) {
        let h = self.requests[r].head;
        let now = Instant::now();
        let waited_us = self.requests[r]
            .enqueued_at
            .map_or(0, |at| now.saturating_duration_since(at).as_micros() as u64);
        let event = self.event(r, kind, waited_us, now);
        let head = &mut self.heads[h];
        let pos = head.waiting.iter().position(|&w| w == r);
        assert!(pos.is_some(), "cancelled request not in its queue");
        if let Some(pos) = pos {
            head.waiting.remove(pos);
        }
        let resource = head.resource;
        self.profiler.record(resource, event);
        self.requests[r].upgrade_to = None;
        self.finish_wait(r, Outcome::Failed(err));
        // The removed request may have been what blocked the ones behind it.
        self.grant_waiters(h);
        self.free_head_if_idle(h);
    }

    /// Releases one granted request; the record is freed unless a future still refers to it.
    #[inline(always)]
    fn release_request(&mut self, r: u32, reason: &LockError) {
        let rq = &self.requests[r];
        assert!(rq.granted, "releasing a request that is not granted");
        let (t, h, pos) = (rq.txn, rq.head, rq.granted_pos as usize);
        let (indexed, granted_at) = (rq.indexed, rq.granted_at);
        if rq.waiting {
            self.cancel_upgrade(r, reason);
        }
        // Read after the cancel: a cancelled upgrade keeps its granted mode.
        let mode = self.requests[r].mode;
        let head = &mut self.heads[h];
        assert_eq!(head.granted[pos], r, "granted position out of date");
        head.granted.swap_remove(pos);
        let moved = head.granted.get(pos).copied();
        head.counts[mode.index()] -= 1;
        let idle = head.granted.is_empty() && head.waiting.is_empty();
        if let Some(moved) = moved {
            self.requests[moved].granted_pos = pos as u32;
        }
        if indexed {
            self.unindex_holder(t, h, r);
        }
        self.counters.granted_now -= 1;
        self.counters.releases += 1;
        if let Some(at) = granted_at {
            self.record_hold(at);
        }
        let rq = &mut self.requests[r];
        rq.granted = false;
        if rq.has_waiter {
            Self::fail_unobserved_grant(rq, reason);
        } else {
            self.requests.free(r);
        }
        if idle {
            self.free_idle_head(h); // the uncontended case: nobody else holds or waits
        } else {
            self.grant_waiters(h);
            self.free_head_if_idle(h);
        }
    }

    /// A granted request with a queued upgrade is released: the upgrade's wait ends first.
    #[cold]
    fn cancel_upgrade(&mut self, r: u32, reason: &LockError) {
        self.cancel_wait(r, reason.clone(), LockEventKind::Cancelled);
    }

    #[cold]
    fn unindex_holder(&mut self, t: u32, h: u32, r: u32) {
        let removed = self.held_index.remove(&(t, h));
        assert_eq!(removed, Some(r), "held index out of date");
        self.requests[r].indexed = false;
    }

    /// One grant in `hold_sample_every` carries its grant time: its hold goes in the histogram.
    #[inline(never)]
    fn record_hold(&mut self, granted_at: Instant) {
        self.profiler
            .record_hold(granted_at.elapsed().as_micros() as u64);
    }

    /// Granted but not yet observed by its future: the future must not report success.
    #[cold]
    fn fail_unobserved_grant(rq: &mut Request, reason: &LockError) {
        if matches!(rq.outcome, Outcome::Granted) {
            rq.outcome = Outcome::Failed(reason.clone());
        }
    }

    /// Releases every lock of `t` (and its queued wait); the record stays unless `forget`.
    pub(crate) fn release_txn(&mut self, t: u32, reason: &LockError, forget: bool) -> usize {
        if let Some(r) = self.txns[t].waiting {
            self.end_wait_of_releasing_txn(r, reason);
        }
        // By index: `release_request` does not touch the transaction's list.
        let released = self.txns[t].held.len();
        for i in 0..released {
            let r = self.txns[t].held[i];
            self.release_request(r, reason);
        }
        let held = &mut self.txns[t].held;
        assert_eq!(held.len(), released, "held list changed during release");
        held.clear();
        if forget {
            self.forget_txn(t);
        }
        released
    }

    /// The queued wait of a transaction whose locks are being released fails.
    #[cold]
    fn end_wait_of_releasing_txn(&mut self, r: u32, reason: &LockError) {
        {
            let kind = match reason {
                LockError::Deadlock { .. } => LockEventKind::DeadlockVictim,
                _ => LockEventKind::Cancelled,
            };
            if !self.requests[r].granted {
                self.counters.cancelled += u64::from(kind == LockEventKind::Cancelled);
            }
            self.cancel_wait(r, reason.clone(), kind);
            if !self.requests[r].granted && !self.requests[r].has_waiter {
                self.requests.free(r);
            }
        }
    }

    /// Releases one resource early (not under strict 2PL; for callers such as WATCH).
    pub(crate) fn release_one(&mut self, t: u32, resource: ResourceId, reason: &LockError) -> bool {
        let Some(&h) = self.by_resource.get(&resource) else {
            return false;
        };
        let Some(r) = self.find_held(t, h) else {
            return false;
        };
        let held = &mut self.txns[t].held;
        if let Some(pos) = held.iter().position(|&x| x == r) {
            held.swap_remove(pos);
        }
        self.release_request(r, reason);
        true
    }

    /// Fails every wait older than the current timeout; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let timeout_us = self.timeout.current_us;
        let mut expired: Vec<u32> = Vec::new();
        for (_, txn) in self.txns.iter_live() {
            if let Some(r) = txn.waiting {
                let at = self.requests[r].enqueued_at;
                if at.is_some_and(|at| {
                    now.saturating_duration_since(at).as_micros() as u64 > timeout_us
                }) {
                    expired.push(r);
                }
            }
        }
        let mut cancelled = 0;
        for &r in &expired {
            // Cancelling an earlier wait may have granted this one (it queued behind it):
            // it no longer waits, so there is nothing to time out.
            if !self.requests[r].waiting {
                continue;
            }
            cancelled += 1;
            let rq = &self.requests[r];
            let waited_us = rq
                .enqueued_at
                .map_or(0, |at| now.saturating_duration_since(at).as_micros() as u64);
            let err = LockError::Timeout {
                shard: self.config.shard,
                txn: self.txns[rq.txn].id.unwrap_or(TxnId(0)),
                resource: self.heads[rq.head].resource,
                mode: rq.upgrade_to.unwrap_or(rq.mode),
                waited_us,
                timeout_us,
            };
            self.counters.timeouts += 1;
            self.cancel_wait(r, err, LockEventKind::TimedOut);
        }
        cancelled
    }
}
