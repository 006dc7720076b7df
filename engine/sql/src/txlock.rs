//! Row locks of SQL transactions: strict two-phase locking through each shard's lock manager
//! (`mantis-lock`). A row's lock lives on the shard that owns the row's key, so a session on
//! another shard sends the request there and waits for the answer. Locks are held until
//! COMMIT / ROLLBACK (or the end of an autocommit statement), which is what stops two
//! concurrent `UPDATE t SET v = v + 1` from losing an increment.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mantis_engine::EngineHandle;
use mantis_lock::{Acquire, LockConfig, LockError, LockManager, LockMode, ResourceId, TxnId};

use crate::error::{state, Result, SqlError};

/// The SQL namespace in the lock hierarchy (one database per appliance today).
const DATABASE_ID: u32 = 0;

/// Floor of the adaptive lock-wait timeout for SQL transactions. A transaction holds its locks
/// through its commit's fdatasync, so on a hot row (pgbench's one branch) eight clients queue
/// behind each other for tens of milliseconds, and a disk stall adds 100 ms more: the lock
/// manager's own floor (100 ms) timed such waits out. A timeout (55P03) is not retried by
/// clients such as pgbench, which retry deadlocks (40P01); deadlocks are found by detection
/// within `detect_interval_ms` regardless, so the timeout is only the backstop.
const SQL_LOCK_TIMEOUT_MIN_US: u64 = 2_000_000;

/// The lock configuration every shard's manager is built from, set once at start-up by
/// `configure` (mantisd's `[locks]`) before any shard takes a lock; `default_config` if never.
static CONFIGURED: std::sync::OnceLock<LockConfig> = std::sync::OnceLock::new();

/// The SQL layer's defaults: the lock manager's, with the SQL timeout floor.
pub fn default_config() -> LockConfig {
    LockConfig {
        timeout_min_us: SQL_LOCK_TIMEOUT_MIN_US,
        ..LockConfig::default()
    }
}

/// Sets the configuration of every shard's lock manager (SQL row locks and the RESP/HTTP
/// transaction locks share them). Call once, before the shards start: a manager already
/// built keeps its configuration. Returns false (and changes nothing) if already set.
pub fn configure(config: LockConfig) -> bool {
    CONFIGURED.set(config).is_ok()
}

/// The configuration shards use (the configured one, else `default_config`).
pub fn configured() -> LockConfig {
    CONFIGURED.get().cloned().unwrap_or_else(default_config)
}

thread_local! {
    static SHARD_LOCKS: RefCell<Option<LockManager>> = const { RefCell::new(None) };
    static TXN_COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// This shard's lock manager, created on first use together with its maintenance task
/// (deadlock detection and timeouts every `detect_interval_ms`). Must run on a shard executor.
pub fn shard_locks() -> LockManager {
    SHARD_LOCKS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(m) = slot.as_ref() {
            return m.clone();
        }
        let shard = EngineHandle::current_shard().unwrap_or(0) as u32;
        let m = LockManager::new(LockConfig {
            shard,
            ..configured()
        });
        let ticker = m.clone();
        let interval = Duration::from_millis(ticker.config().detect_interval_ms.max(1));
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(interval).await;
                ticker.tick(Instant::now());
            }
        })
        .detach();
        *slot = Some(m.clone());
        m
    })
}

fn to_sql(e: LockError) -> SqlError {
    SqlError::new(e.sqlstate(), e.to_string())
}

fn lost(shard: usize) -> SqlError {
    SqlError::new(
        state::INTERNAL_ERROR,
        format!("lock request to shard {shard} lost"),
    )
}

/// Locks `resource` and its ancestors on this shard; true when any of them had to wait.
async fn lock_here(
    txn: TxnId,
    start_seq: u64,
    resource: ResourceId,
    mode: LockMode,
) -> std::result::Result<bool, LockError> {
    let m = shard_locks();
    m.begin(txn, start_seq)?;
    let mut waited = false;
    let chain = resource
        .ancestors()
        .into_iter()
        .flatten()
        .map(|a| (a, mode.intention()));
    for (r, md) in chain.chain(std::iter::once((resource, mode))) {
        match m.try_lock(txn, r, md)? {
            Acquire::Granted => {}
            Acquire::Wait(w) => {
                waited = true;
                w.await?;
            }
        }
    }
    Ok(waited)
}

/// Locks a transaction remembers holding (shard, resource → strongest mode granted), so that
/// asking again for what it holds costs no message to the resource's shard. Past this many the
/// rest are simply not remembered: asking again then goes to the lock manager, which grants a
/// held mode at once, so the limit bounds memory and changes no answer.
const HELD_REMEMBERED_MAX: usize = 4096;

/// What a lock request on another shard sends back: whether the lock waited and, when a read
/// was asked for, the row's value read under the lock; or why either failed.
type LockedRead = std::result::Result<
    (
        bool,
        Option<std::result::Result<Option<Vec<u8>>, mantis_engine::EngineError>>,
    ),
    LockError,
>;

/// The locks of one session's current transaction, on whichever shards they live.
pub struct TxnLocks {
    handle: EngineHandle,
    txn: Cell<Option<(TxnId, u64)>>,
    shards: RefCell<BTreeSet<usize>>,
    /// WHY: pgbench's `SELECT abalance` re-reads a row its UPDATE locked X; under SERIALIZABLE
    /// that asks for S, which X covers. Cleared with the locks in `release_all`; a deadlock
    /// victim's locks go on the shards at once, but its statement fails and so does its
    /// transaction (`Session::fail_transaction` releases), so nothing trusts a stale entry.
    held: RefCell<HashMap<(usize, ResourceId), LockMode>>,
}

impl TxnLocks {
    pub fn new(handle: EngineHandle) -> Self {
        TxnLocks {
            handle,
            txn: Cell::new(None),
            shards: RefCell::new(BTreeSet::new()),
            held: RefCell::new(HashMap::new()),
        }
    }

    /// The transaction id, allocated on first lock: shard number in the top bits so ids are
    /// unique across shards; the start order is wall-clock nanoseconds so that "youngest"
    /// means the same thing on every shard.
    fn txn(&self) -> (TxnId, u64) {
        if let Some(t) = self.txn.get() {
            return t;
        }
        let shard = EngineHandle::current_shard().unwrap_or(0xffff) as u64;
        let n = TXN_COUNTER.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        let start_seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let t = (TxnId((shard << 48) | (n & 0xffff_ffff_ffff)), start_seq);
        self.txn.set(Some(t));
        t
    }

    /// Locks the row with KV key `key` of table `table` in `mode` (X for writes, S for
    /// serializable reads), with the intention mode on the table, on the shard that owns the
    /// key. The key need not exist: locking an absent key is what stops a concurrent INSERT of
    /// it. Returns true when it had to wait: the caller re-reads what it read before the lock.
    pub async fn lock_row(&self, table: u32, key: &[u8], mode: LockMode) -> Result<bool> {
        let resource = ResourceId::row(DATABASE_ID, table, key);
        self.lock_on(self.handle.shard_for(key), resource, mode)
            .await
    }

    /// Locks table `table` in `mode` on every shard, in shard order (two transactions locking
    /// tables this way cannot deadlock on the order). A table's rows live on all shards and
    /// every writer takes IX on the table on the row's shard, so an S here (a serializable
    /// scan) excludes every concurrent writer of the table: no phantoms.
    pub async fn lock_table(&self, table: u32, mode: LockMode) -> Result<bool> {
        let resource = ResourceId::Table {
            database: DATABASE_ID,
            table,
        };
        let mut waited = false;
        for shard in 0..self.handle.shard_count() {
            waited |= self.lock_on(shard, resource, mode).await?;
        }
        Ok(waited)
    }

    /// Whether the transaction already holds `resource` on `shard` in a mode covering `mode`.
    fn holds(&self, shard: usize, resource: ResourceId, mode: LockMode) -> bool {
        self.held
            .borrow()
            .get(&(shard, resource))
            .is_some_and(|held| held.covers(mode))
    }

    /// Remembers a granted lock (see `held`).
    fn note_held(&self, shard: usize, resource: ResourceId, mode: LockMode) {
        let mut held = self.held.borrow_mut();
        if let Some(m) = held.get_mut(&(shard, resource)) {
            *m = m.supremum(mode);
        } else if held.len() < HELD_REMEMBERED_MAX {
            held.insert((shard, resource), mode);
        }
    }

    /// Locks `resource` (and its ancestors in intention mode) on `shard`'s lock manager.
    async fn lock_on(&self, shard: usize, resource: ResourceId, mode: LockMode) -> Result<bool> {
        if self.holds(shard, resource, mode) {
            return Ok(false);
        }
        let waited = if EngineHandle::current_shard() == Some(shard) {
            let (txn, start_seq) = self.txn();
            self.shards.borrow_mut().insert(shard);
            lock_here(txn, start_seq, resource, mode)
                .await
                .map_err(to_sql)?
        } else {
            self.lock_there(shard, resource, mode, None).await?.0
        };
        self.note_held(shard, resource, mode);
        Ok(waited)
    }

    /// Sends the lock request to `shard` (and, with `read`, a read of that key under the
    /// granted lock, in the same message) and waits for the answer.
    async fn lock_there(
        &self,
        shard: usize,
        resource: ResourceId,
        mode: LockMode,
        read: Option<Vec<u8>>,
    ) -> Result<(
        bool,
        Option<std::result::Result<Option<Vec<u8>>, mantis_engine::EngineError>>,
    )> {
        let (txn, start_seq) = self.txn();
        self.shards.borrow_mut().insert(shard);
        let (tx, rx) = futures::channel::oneshot::channel::<LockedRead>();
        let handle = self.handle.clone();
        self.handle
            .spawn_on(shard, move || async move {
                let r = match lock_here(txn, start_seq, resource, mode).await {
                    Ok(waited) => match read {
                        Some(key) => Ok((waited, Some(handle.get(&key).await))),
                        None => Ok((waited, None)),
                    },
                    Err(e) => Err(e),
                };
                let _ = tx.send(r);
            })
            .map_err(|e| SqlError::storage("lock", e))?;
        rx.await.map_err(|_| lost(shard))?.map_err(to_sql)
    }

    /// Locks the row with KV key `key` of table `table` in `mode`, as `lock_row`, and reads
    /// the row's committed value under that lock, in one message to the row's shard.
    /// WHY: locking then reading cost two round trips to a remote row's shard, both inside
    /// the lock hold of a hot row (pgbench's branch). The value is read after the grant, so
    /// no writer can change it before this transaction ends: no re-read is needed.
    pub async fn lock_row_get(
        &self,
        table: u32,
        key: &[u8],
        mode: LockMode,
    ) -> Result<Option<Vec<u8>>> {
        let resource = ResourceId::row(DATABASE_ID, table, key);
        let shard = self.handle.shard_for(key);
        let read_err = |e| SqlError::storage("get", e);
        if self.holds(shard, resource, mode) || EngineHandle::current_shard() == Some(shard) {
            self.lock_on(shard, resource, mode).await?;
            return self.handle.get(key).await.map_err(read_err);
        }
        let (_, value) = self
            .lock_there(shard, resource, mode, Some(key.to_vec()))
            .await?;
        self.note_held(shard, resource, mode);
        match value {
            Some(v) => v.map_err(read_err),
            None => Err(SqlError::internal(
                "lock and read answered without the read",
            )),
        }
    }

    /// Releases every lock of the transaction (COMMIT, ROLLBACK, end of an autocommit
    /// statement). Sent to every shard the transaction locked on; fire and forget, because a
    /// shard handles its messages in order, so a later request of the session comes after.
    pub fn release_all(&self) {
        let Some((txn, _)) = self.txn.take() else {
            return;
        };
        self.held.borrow_mut().clear();
        let shards = std::mem::take(&mut *self.shards.borrow_mut());
        for shard in shards {
            if EngineHandle::current_shard() == Some(shard) {
                shard_locks().end_txn(txn);
                continue;
            }
            // A failed send means the shard is shutting down: its lock table goes with it.
            let _ = self.handle.spawn_on(shard, move || async move {
                shard_locks().end_txn(txn);
            });
        }
    }
}

impl Drop for TxnLocks {
    fn drop(&mut self) {
        // A client that disconnects mid-transaction must not leave its locks behind.
        self.release_all();
    }
}

/// Runs `f` on every shard's lock manager and collects the answers, in shard order.
async fn on_every_shard<R, F>(handle: &EngineHandle, f: F) -> Result<Vec<R>>
where
    R: Send + 'static,
    F: Fn(&LockManager) -> R + Send + Sync + Clone + 'static,
{
    let mut answers = Vec::with_capacity(handle.shard_count());
    for shard in 0..handle.shard_count() {
        let (tx, rx) = futures::channel::oneshot::channel();
        let f = f.clone();
        handle
            .spawn_on(shard, move || async move {
                let _ = tx.send(f(&shard_locks()));
            })
            .map_err(|e| SqlError::storage("lock stats", e))?;
        let answer = rx.await.map_err(|_| {
            SqlError::new(
                state::INTERNAL_ERROR,
                format!("shard {shard} did not answer"),
            )
        })?;
        answers.push(answer);
    }
    Ok(answers)
}

/// Every shard's lock statistics (for `GET /api/v1/locks` and `/metrics`).
pub async fn lock_stats(handle: &EngineHandle) -> Result<Vec<mantis_lock::LockStats>> {
    on_every_shard(handle, |m| m.stats()).await
}

/// One resource's holders, queue and history on every shard.
pub async fn resource_views(
    handle: &EngineHandle,
    resource: ResourceId,
) -> Result<Vec<mantis_lock::ResourceView>> {
    on_every_shard(handle, move |m| m.resource_view(resource)).await
}

thread_local! {
    static DETECT_GRAPH: std::cell::RefCell<mantis_lock::WaitForGraph> =
        std::cell::RefCell::new(mantis_lock::WaitForGraph::new());
}

/// A global deadlock pass: gathers every shard's wait-for edges, merges them, picks victims
/// by shard 0's configured strategy and aborts them on every shard. Shard-local cycles are
/// also found by each shard's own tick; this finds the cycles that span shards.
pub async fn detect_global(handle: &EngineHandle) -> Result<mantis_lock::Resolution> {
    let parts = on_every_shard(handle, |m| (m.wait_graph(), m.config())).await?;
    let config = parts
        .first()
        .map(|(_, cfg)| cfg.clone())
        .unwrap_or_default();
    let parts: Vec<mantis_lock::ShardWaitGraph> = parts.into_iter().map(|(p, _)| p).collect();
    // The pass's graph is kept per thread between passes: its buffers keep their capacity,
    // so a pass over a big graph allocates nothing (no await while it is borrowed).
    let resolution = DETECT_GRAPH.with(|graph| {
        let mut graph = graph.borrow_mut();
        graph.rebuild(&parts);
        graph.resolve(
            config.algorithm,
            config.adaptive_small_edges_max,
            config.victim,
            &config.cost_weights,
        )
    });
    if !resolution.victims.is_empty() {
        abort_everywhere(handle, resolution.victims.clone()).await?;
    }
    Ok(resolution)
}

/// Aborts `victims` in two steps. First, on every shard, each victim that still waits there
/// has that wait failed (40P01): its session will roll back and never commit. Only those
/// doomed victims then lose their locks on the other shards too, so their partners in the
/// cycle go on at once. A victim that no longer waits anywhere (the graph was gathered shard
/// by shard, so it can be stale) keeps its locks: releasing them under a running transaction
/// let two writers hold one row (see `LockManager::abort_victim`).
async fn abort_everywhere(handle: &EngineHandle, victims: Vec<mantis_lock::Victim>) -> Result<()> {
    let hits = {
        let victims = victims.clone();
        on_every_shard(handle, move |m| {
            victims
                .iter()
                .map(|v| m.abort_victim(v))
                .collect::<Vec<bool>>()
        })
        .await?
    };
    let doomed: Vec<mantis_lock::Victim> = victims
        .iter()
        .enumerate()
        .filter(|(i, _)| hits.iter().any(|shard_hits| shard_hits[*i]))
        .map(|(_, v)| *v)
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    on_every_shard(handle, move |m| {
        for v in &doomed {
            m.release_victim(v);
        }
    })
    .await?;
    Ok(())
}
