//! The engine: one glommio executor thread per shard, and the handle that routes requests.
//!
//! Each shard's data is owned by its executor; nobody else touches it. A request for a key
//! is run in place when the caller already is on the owning shard's executor (the fast path
//! of a connection that landed on the right core), and otherwise sent to the owner as a
//! message and answered back through a oneshot channel. No locks on the data path.

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::{ExecutorJoinHandle, Latency, Shares};
use mantis_storage::{DmaStorage, Storage};

use crate::config::EngineConfig;
use crate::error::{EngineError, Result};
use crate::layout;
use crate::record::Mutation;
use crate::shard::write::{expiry_from_ttl, ValueEntry, WriteOp};
use crate::shard::{ScanRange, Shard, ShardStats};

/// Requests waiting for one shard, at most. Senders beyond it wait (backpressure).
pub const SHARD_QUEUE_MAX: usize = 4096;

/// Work sent to a shard: runs on its executor with the shard in hand.
type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

enum Msg {
    Job(Job),
    /// Flush and stop; answer when done.
    Shutdown(std::sync::mpsc::Sender<Result<()>>),
    /// Stop at once without flushing: what a crash leaves behind (tests, chaos).
    Halt,
}

thread_local! {
    static LOCAL_SHARD: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

fn local_shard() -> Option<Rc<Shard>> {
    LOCAL_SHARD.with(|s| s.borrow().clone())
}

/// One mutation of [`EngineHandle::write_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    Delete {
        key: Vec<u8>,
    },
}

impl From<BatchOp> for Mutation {
    fn from(op: BatchOp) -> Self {
        match op {
            BatchOp::Put {
                key,
                value,
                expires_at_ms,
            } => Mutation::Put {
                key,
                value,
                expires_at_ms,
            },
            BatchOp::Delete { key } => Mutation::Delete { key },
        }
    }
}

struct Inner {
    senders: Vec<flume::Sender<Msg>>,
    /// One per shard, set when its thread exits (also by panic), which wakes every caller
    /// still waiting for an answer: glommio does not drop the tasks left in an executor that
    /// stops, so their reply channels would otherwise never close.
    exited: Vec<Arc<ShardExit>>,
}

/// A shard thread's exit, as callers on any thread wait for it. Waiters register in
/// `event`'s list (O(1) to join and to leave): a flume channel per shard did this before,
/// and dropping each call's receive future scanned all the channel's waiters (O(waiters) per
/// call: 4% of a pipelined GET load's CPU in `VecDeque::retain`).
#[derive(Default)]
struct ShardExit {
    exited: AtomicBool,
    event: event_listener::Event,
}

/// Held by a shard thread; marks the shard exited when dropped.
struct ExitNotice(Arc<ShardExit>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        self.0.exited.store(true, Ordering::SeqCst);
        self.0.event.notify(usize::MAX);
    }
}

/// A cheap, cloneable, thread-safe handle to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

/// FNV-1a, 64-bit: stable across versions and platforms, which placement must be (a key's
/// shard is decided by it on every start).
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl EngineHandle {
    pub fn shard_count(&self) -> usize {
        self.inner.senders.len()
    }

    pub fn shard_for(&self, key: &[u8]) -> usize {
        (key_hash(key) % self.shard_count() as u64) as usize
    }

    /// The shard whose executor runs the calling thread, if any.
    pub fn current_shard() -> Option<usize> {
        local_shard().map(|s| s.id)
    }

    /// Runs `f` on shard `shard` and returns its result.
    async fn call<R, F, Fut>(&self, shard: usize, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if let Some(local) = local_shard() {
            if local.id == shard {
                return Ok(f(local).await);
            }
        }
        let rx = self.enqueue_on(shard, f).await?;
        let exit = &self.inner.exited[shard];
        // Listen before looking at the flag: an exit between the two still wakes us.
        let exited = exit.event.listen();
        if exit.exited.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        match futures::future::select(rx, exited).await {
            futures::future::Either::Left((Ok(r), _)) => Ok(r),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// Issue 9: puts `f` in shard `shard`'s queue (a remote shard: `call` runs a local one
    /// in place) and returns, once it is queued, the receiver of its answer. WHY: a shard
    /// runs its messages in queue order, so whatever anyone queues there after this returns
    /// (a lock release, a read) runs after `f` has started; the caller need not wait for `f`.
    pub(crate) async fn enqueue_on<R, F, Fut>(
        &self,
        shard: usize,
        f: F,
    ) -> Result<oneshot::Receiver<R>>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        assert_ne!(
            Self::current_shard(),
            Some(shard),
            "enqueue_on the calling shard"
        );
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |s| {
            Box::pin(async move {
                let r = f(s).await;
                let _ = tx.send(r);
            })
        });
        self.inner
            .senders
            .get(shard)
            .ok_or_else(|| EngineError::Invalid(format!("no shard {shard}")))?
            .send_async(Msg::Job(job))
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        Ok(rx)
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_entry(key).await?.map(|e| e.value))
    }

    pub async fn get_entry(&self, key: &[u8]) -> Result<Option<ValueEntry>> {
        let key = key.to_vec();
        self.call(self.shard_for(&key), move |s| async move {
            s.get_entry(&key).await
        })
        .await?
    }

    /// Stores `value` under `key`, durably. `ttl` makes it expire that long from now.
    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>, ttl: Option<Duration>) -> Result<()> {
        let expires_at_ms = expiry_from_ttl(ttl)?;
        self.put_expiring_at(key, value, expires_at_ms).await
    }

    pub async fn put_expiring_at(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    ) -> Result<()> {
        self.write_batch(vec![BatchOp::Put {
            key,
            value,
            expires_at_ms,
        }])
        .await
    }

    /// Removes `key`; true if it held a live value.
    pub async fn delete(&self, key: Vec<u8>) -> Result<bool> {
        self.call(
            self.shard_for(&key),
            move |s| async move { s.delete(key).await },
        )
        .await?
    }

    /// Applies `ops` durably; the part of the batch that falls on one shard is atomic.
    /// Issue 9: a batch over several shards is atomic too, across crashes (two-phase commit,
    /// `crate::twopc`); after an error nothing of it is visible (if the coordinator's Decision
    /// sync failed, the restart decides from what reached its disk).
    pub async fn write_batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        let n = self.shard_count();
        let mut per_shard: Vec<Vec<Mutation>> = (0..n).map(|_| Vec::new()).collect();
        for op in ops {
            let m: Mutation = op.into();
            per_shard[self.shard_for(m.key())].push(m);
        }
        // Issue 9: a batch over several shards commits all-or-nothing by two-phase commit.
        if per_shard.iter().filter(|b| !b.is_empty()).count() > 1 {
            return self.write_multi_shard(per_shard, None).await;
        }
        let calls = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(i, batch)| self.call(i, move |s| async move { s.write(batch).await }));
        let results = futures::future::join_all(calls).await;
        for r in results {
            r??;
        }
        Ok(())
    }

    /// Issue 9: the two-phase commit of a batch split per shard (`per_shard[i]` for shard i),
    /// coordinated by the calling shard, or by shard 0 from outside the shards.
    async fn write_multi_shard(
        &self,
        per_shard: Vec<Vec<Mutation>>,
        stop: Option<crate::twopc::TpcStop>,
    ) -> Result<()> {
        let parts: Vec<(usize, Vec<Mutation>)> = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .collect();
        let coordinator = Self::current_shard().unwrap_or(0);
        let handle = self.clone();
        self.call(coordinator, move |s| {
            crate::twopc::coordinator::coordinate(handle, s, parts, stop)
        })
        .await?
    }

    /// Issue 9, for crash tests: [`EngineHandle::write_batch`] over several shards whose
    /// coordinator stops at `stop` as if it crashed there (then abandon the engine).
    #[doc(hidden)]
    pub async fn write_batch_stopping(
        &self,
        ops: Vec<BatchOp>,
        stop: crate::twopc::TpcStop,
    ) -> Result<()> {
        let mut per_shard: Vec<Vec<Mutation>> =
            (0..self.shard_count()).map(|_| Vec::new()).collect();
        for op in ops {
            let m: Mutation = op.into();
            per_shard[self.shard_for(m.key())].push(m);
        }
        if per_shard.iter().filter(|b| !b.is_empty()).count() < 2 {
            return Err(EngineError::Invalid("not a multi-shard batch".into()));
        }
        self.write_multi_shard(per_shard, Some(stop)).await
    }

    /// Issue 9: runs `f` on shard `shard` (in place when already there).
    pub(crate) async fn call_on<R, F, Fut>(&self, shard: usize, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        self.call(shard, f).await
    }

    /// Issue 10, for tests: arms `shard` to hold the next two-phase-commit transaction that
    /// passes `point` there until the returned control releases it (or is dropped).
    #[doc(hidden)]
    pub async fn arm_tpc_hold(
        &self,
        shard: usize,
        point: crate::twopc::TpcHoldPoint,
    ) -> Result<crate::twopc::TpcHoldControl> {
        let (armed, control) = crate::twopc::hold::arm(point);
        self.call(shard, move |s| async move {
            let old = s.tpc.hold.borrow_mut().replace(armed);
            assert!(old.is_none(), "shard {}: a 2PC hold is already armed", s.id);
        })
        .await?;
        Ok(control)
    }

    /// Issue 9: two-phase-commit counters of every shard: (prepares, commits, aborts,
    /// prepared now, WAL pins).
    #[doc(hidden)]
    pub async fn tpc_counters(&self) -> Result<Vec<[u64; 5]>> {
        let calls = (0..self.shard_count()).map(|i| {
            self.call(i, |s| async move {
                let t = &s.tpc;
                [
                    t.prepares.get(),
                    t.commits.get(),
                    t.aborts.get(),
                    t.prepared.borrow().len() as u64,
                    t.pins.len() as u64,
                ]
            })
        });
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// Atomic read-modify-write of one key on its owning shard, durable before it returns.
    pub async fn update<R, F>(&self, key: Vec<u8>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Option<ValueEntry>) -> Result<(WriteOp, R)> + Send + 'static,
    {
        self.call(self.shard_for(&key), move |s| async move {
            s.update(key, f).await
        })
        .await?
    }

    /// Up to `limit` live entries of `range`, in key order, merged across shards.
    pub async fn scan(&self, range: ScanRange, limit: usize) -> Result<Vec<(Vec<u8>, ValueEntry)>> {
        let calls = (0..self.shard_count()).map(|i| {
            let range = range.clone();
            self.call(i, move |s| async move { s.scan(&range, limit).await })
        });
        let mut all = Vec::new();
        for r in futures::future::join_all(calls).await {
            all.extend(r??);
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        Ok(all)
    }

    /// Live keys in the whole engine (a full scan of every shard).
    pub async fn count_keys(&self) -> Result<u64> {
        let calls =
            (0..self.shard_count()).map(|i| self.call(i, |s| async move { s.count_live().await }));
        let mut total = 0;
        for r in futures::future::join_all(calls).await {
            total += r??;
        }
        Ok(total)
    }

    pub async fn stats(&self) -> Result<Vec<ShardStats>> {
        let calls = (0..self.shard_count()).map(|i| self.call(i, |s| async move { s.stats() }));
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// Flushes every shard's memtables into segments.
    pub async fn flush(&self) -> Result<()> {
        let calls =
            (0..self.shard_count()).map(|i| self.call(i, |s| async move { s.flush_all().await }));
        for r in futures::future::join_all(calls).await {
            r??;
        }
        Ok(())
    }

    /// Merges every shard's segments into one per shard.
    pub async fn compact(&self) -> Result<()> {
        let calls =
            (0..self.shard_count()).map(|i| self.call(i, |s| async move { s.compact_all().await }));
        for r in futures::future::join_all(calls).await {
            r??;
        }
        Ok(())
    }

    /// Asks every shard's scrubber for a pass now; progress shows in [`ShardStats::scrub`].
    pub async fn request_scrub(&self) -> Result<()> {
        let calls =
            (0..self.shard_count()).map(|i| self.call(i, |s| async move { s.integrity.request() }));
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }

    /// Closes the access epoch on every shard and rewrites the segments that are cold now
    /// (what the background task does every `ColdConfig::epoch_secs`).
    pub async fn cold_tick(&self) -> Result<()> {
        let calls = (0..self.shard_count())
            .map(|i| self.call(i, |s| async move { crate::cold::tick(&s).await }));
        for r in futures::future::join_all(calls).await {
            r??;
        }
        Ok(())
    }

    /// Issue 10: takes a checkpoint of every shard under `dir` (normally
    /// `checkpoint::checkpoints_dir(data_dir)`): each shard flushes, then hard-links its live
    /// segments and writes its manifest copy; `meta` is written last. Every write acknowledged
    /// before this call is in it. See `crate::checkpoint`.
    pub async fn checkpoint(
        &self,
        dir: &std::path::Path,
        kind: crate::checkpoint::CheckpointKind,
        parent: Option<&str>,
    ) -> Result<crate::checkpoint::CheckpointMeta> {
        let plan =
            crate::checkpoint::CheckpointPlan::prepare(dir, kind, parent, self.shard_count())?;
        // Issue 10: one job on shard 0 closes every shard's two-phase-commit gate, cuts every
        // shard, and reopens the gates (`checkpoint::barrier`): a global cut.
        let plans: Vec<_> = (0..self.shard_count())
            .map(|i| plan.shard_plan(i))
            .collect();
        let handle = self.clone();
        let cut = self
            .call(0, move |_| crate::checkpoint::barrier::run(handle, plans))
            .await;
        match cut.and_then(|cuts| cuts) {
            Ok(cuts) => plan.finish(cuts),
            Err(e) => {
                plan.abandon();
                Err(e)
            }
        }
    }

    /// Issue 10 (RPO): attaches an archive gate to every shard's WAL, starting after
    /// `archived_lsn[i]` (what the destination already holds for shard `i`): from then on
    /// no WAL segment holding a record above the gate's archived LSN is recycled. Returns
    /// each shard's gate and WAL directory, for the archiver thread.
    pub async fn attach_archive_gates(
        &self,
        archived_lsn: &[u64],
    ) -> Result<Vec<(std::sync::Arc<mantis_wal::ArchiveGate>, PathBuf)>> {
        if archived_lsn.len() != self.shard_count() {
            return Err(EngineError::Invalid(format!(
                "{} archived LSNs for {} shards",
                archived_lsn.len(),
                self.shard_count()
            )));
        }
        let mut out = Vec::with_capacity(self.shard_count());
        for (i, &lsn) in archived_lsn.iter().enumerate() {
            let attached = self
                .call(i, move |s| async move {
                    let gate = std::sync::Arc::new(mantis_wal::ArchiveGate::new(lsn));
                    s.wal.set_archive_gate(gate.clone());
                    (gate, s.wal.dir().to_path_buf())
                })
                .await?;
            out.push(attached);
        }
        Ok(out)
    }

    /// Issue 10: the data directory the shards run in (the parent of `shard-0`).
    pub async fn data_dir(&self) -> Result<PathBuf> {
        self.call(0, |s| async move {
            s.dir.parent().map(|p| p.to_path_buf()).unwrap_or_default()
        })
        .await
    }

    /// Runs `f` on shard `shard`'s executor and returns its result: for models
    /// built on the engine (documents, issue 11) that place their keys on a chosen shard and
    /// push work (filters) down to it.
    /// Inside `f`, the `*_on(shard, ..)` methods for the same shard run in place.
    pub async fn run_on<R, F, Fut>(&self, shard: usize, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        self.run_on_shard(shard, move |_| f()).await
    }

    async fn run_on_shard<R, F, Fut>(&self, shard: usize, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if shard >= self.shard_count() {
            return Err(EngineError::Invalid(format!("no shard {shard}")));
        }
        self.call(shard, f).await
    }

    /// Builds a visitor with `make` on shard `shard`, feeds it every live entry of `range`
    /// held there, in key order, and returns its result (issue 6: scans that filter and
    /// aggregate on the owning shard, so only their partial results cross shards).
    pub async fn scan_visit_on<V, M>(
        &self,
        shard: usize,
        range: ScanRange,
        make: M,
    ) -> Result<V::Output>
    where
        V: crate::shard::ScanVisitor + 'static,
        M: FnOnce() -> V + Send + 'static,
    {
        self.run_on_shard(shard, move |s| async move {
            let mut v = make();
            s.scan_visit(&range, &mut |k: &[u8], val: &[u8]| v.visit(k, val))
                .await?;
            Ok(v.finish())
        })
        .await?
    }

    /// [`EngineHandle::get_entry`] on an explicit shard (keys placed there by their owner
    /// rather than by their own hash).
    pub async fn get_on(&self, shard: usize, key: Vec<u8>) -> Result<Option<ValueEntry>> {
        self.run_on_shard(shard, move |s| async move { s.get_entry(&key).await })
            .await?
    }

    /// [`EngineHandle::write_batch`] on one explicit shard: the whole batch is atomic.
    pub async fn write_batch_on(&self, shard: usize, ops: Vec<BatchOp>) -> Result<()> {
        let batch: Vec<Mutation> = ops.into_iter().map(Mutation::from).collect();
        self.run_on_shard(shard, move |s| async move { s.write(batch).await })
            .await?
    }

    /// [`EngineHandle::scan`] of one explicit shard.
    pub async fn scan_on(
        &self,
        shard: usize,
        range: ScanRange,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, ValueEntry)>> {
        self.run_on_shard(shard, move |s| async move { s.scan(&range, limit).await })
            .await?
    }

    /// Atomic multi-key read-modify-write on one explicit shard, guarded by `key`: see
    /// [`Shard::update_batch`].
    pub async fn update_batch_on<R, F>(
        &self,
        shard: usize,
        key: Vec<u8>,
        read_keys: Vec<Vec<u8>>,
        f: F,
    ) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Option<ValueEntry>, Vec<Option<ValueEntry>>) -> Result<(Vec<BatchOp>, R)>
            + Send
            + 'static,
    {
        self.run_on_shard(shard, move |s| async move {
            s.update_batch(key, read_keys, move |cur, reads| {
                let (ops, r) = f(cur, reads)?;
                Ok((ops.into_iter().map(Mutation::from).collect(), r))
            })
            .await
        })
        .await?
    }

    /// Runs a task on shard `shard`'s executor (network listeners, benchmarks).
    pub fn spawn_on<F, Fut>(&self, shard: usize, f: F) -> Result<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move |_| Box::pin(f()));
        self.inner
            .senders
            .get(shard)
            .ok_or_else(|| EngineError::Invalid(format!("no shard {shard}")))?
            .send(Msg::Job(job))
            .map_err(|_| EngineError::ShuttingDown)
    }
}

/// The running engine. Dropping it without [`Engine::shutdown`] stops the shards without a
/// flush (what a crash would leave, minus the lost page cache).
pub struct Engine {
    handle: EngineHandle,
    threads: Vec<ExecutorJoinHandle<()>>,
    data_dir: PathBuf,
}

impl Engine {
    /// Starts one executor per shard and returns once every shard has recovered.
    pub fn open(mut cfg: EngineConfig) -> Result<Engine> {
        // Executors resolve paths on their own threads; pin the directory down first so that
        // a relative path means the same everywhere (and in log lines).
        cfg.data_dir = std::path::absolute(&cfg.data_dir).map_err(|e| EngineError::Layout {
            dir: cfg.data_dir.display().to_string(),
            reason: format!("cannot make the path absolute: {e}"),
        })?;
        crate::heap::tune_allocator();
        let shards = cfg.effective_shards();
        if cfg.sim_storage.is_none() {
            layout::open_or_create(&cfg.data_dir, shards)?;
            mantis_storage::rt::raise_memlock_limit().map_err(|e| EngineError::Startup {
                shard: 0,
                reason: format!("raise RLIMIT_MEMLOCK: {e}"),
            })?;
        }
        let mut senders = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let mut ready = Vec::with_capacity(shards);
        let mut exited = Vec::with_capacity(shards);
        for id in 0..shards {
            let (tx, rx) = flume::bounded::<Msg>(SHARD_QUEUE_MAX);
            let exit = Arc::new(ShardExit::default());
            let exit_notice = ExitNotice(exit.clone());
            exited.push(exit);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
            let cfg = cfg.clone();
            let builder =
                mantis_storage::rt::shard_executor_builder(id, cfg.pin_cpus, cfg.idle_poll_us);
            let spawned = builder.spawn(move || async move {
                let _exit_notice = exit_notice;
                shard_main(id, cfg, rx, ready_tx).await
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    drop(tx);
                    halt_all(&senders, threads);
                    return Err(EngineError::Startup {
                        shard: id,
                        reason: format!("executor: {e}"),
                    });
                }
            }
            senders.push(tx);
            ready.push(ready_rx);
        }
        let mut failure = None;
        for (id, r) in ready.into_iter().enumerate() {
            let res = r.recv().unwrap_or_else(|_| {
                Err(EngineError::Startup {
                    shard: id,
                    reason: "executor exited during recovery".into(),
                })
            });
            if let Err(e) = res {
                failure.get_or_insert(e);
            }
        }
        if let Some(e) = failure {
            halt_all(&senders, threads);
            return Err(e);
        }
        let engine = Engine {
            handle: EngineHandle {
                inner: Arc::new(Inner { senders, exited }),
            },
            threads,
            data_dir: cfg.data_dir,
        };
        // Issue 9: in-doubt transactions are resolved before anyone gets the handle.
        let resolved =
            futures::executor::block_on(crate::twopc::recovery::resolve_in_doubt(&engine.handle))?;
        if resolved != Default::default() {
            tracing::info!(?resolved, "two-phase-commit recovery");
        }
        Ok(engine)
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Waits for accepted writes, flushes every memtable, closes the WALs, stops the threads.
    pub fn shutdown(mut self) -> Result<()> {
        let mut first_err = None;
        let mut replies = Vec::new();
        for s in &self.handle.inner.senders {
            let (tx, rx) = std::sync::mpsc::channel();
            if s.send(Msg::Shutdown(tx)).is_ok() {
                replies.push(rx);
            }
        }
        for rx in replies {
            if let Ok(Err(e)) = rx.recv() {
                first_err.get_or_insert(e);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Stops every shard at once, without flushing or closing anything: the state a crash
    /// leaves behind. For crash tests with a simulated disk.
    pub fn abandon(mut self) {
        let threads = std::mem::take(&mut self.threads);
        halt_all(&self.handle.inner.senders, threads);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let threads = std::mem::take(&mut self.threads);
            halt_all(&self.handle.inner.senders, threads);
        }
    }
}

fn halt_all(senders: &[flume::Sender<Msg>], threads: Vec<ExecutorJoinHandle<()>>) {
    for s in senders {
        let _ = s.send(Msg::Halt);
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Why a heartbeat: glommio 0.9 can miss a wake-up sent from another thread while its
/// reactor sleeps in io_uring; a short timer bounds the delay such a miss can cause.
const REACTOR_HEARTBEAT: Duration = Duration::from_millis(10);

async fn shard_main(
    id: usize,
    cfg: EngineConfig,
    rx: flume::Receiver<Msg>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    // The heartbeat starts before recovery: a start after SIGKILL sometimes hung for good with
    // one shard asleep in io_uring_enter in the middle of recovery (mantis-chaos, 19 of ~750
    // starts; docs/chaos.md) — the same missed wake-up the heartbeat bounds after start.
    let heartbeat_tq = glommio::executor().create_task_queue(
        Shares::Static(10),
        Latency::NotImportant,
        "heartbeat",
    );
    let heartbeat = glommio::spawn_local_into(
        async {
            loop {
                glommio::timer::sleep(REACTOR_HEARTBEAT).await;
            }
        },
        heartbeat_tq,
    );
    let dir = cfg.data_dir.join(format!("shard-{id}"));
    let storage: Rc<dyn Storage> = match &cfg.sim_storage {
        Some(sim) => sim.handle(),
        None => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                let _ = ready.send(Err(EngineError::Startup {
                    shard: id,
                    reason: format!("create {}: {e}", dir.display()),
                }));
                return;
            }
            match DmaStorage::new(&dir).await {
                Ok(s) => Rc::new(s),
                Err(e) => {
                    let _ = ready.send(Err(EngineError::storage(id, e)));
                    return;
                }
            }
        }
    };
    let shard = match Shard::open(id, dir, storage, cfg).await {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    LOCAL_SHARD.with(|s| *s.borrow_mut() = Some(shard.clone()));
    let _ = ready.send(Ok(()));
    loop {
        match rx.recv_async().await {
            Ok(Msg::Job(job)) => {
                glommio::spawn_local(job(shard.clone())).detach();
            }
            Ok(Msg::Shutdown(reply)) => {
                let r = shard.shutdown().await;
                let _ = reply.send(r);
                break;
            }
            Ok(Msg::Halt) | Err(_) => break,
        }
    }
    drop(heartbeat);
    LOCAL_SHARD.with(|s| *s.borrow_mut() = None);
}
