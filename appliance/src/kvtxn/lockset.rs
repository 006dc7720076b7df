//! Taking a transaction's X locks on every shard it touches, in one global order, reading its
//! keys and checking its watches under those locks; and releasing them.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use mantis_engine::{EngineHandle, ValueEntry};
use mantis_lock::{LockMode, ResourceId, TxnId};
use mantis_sql::txlock::shard_locks;

use super::shard_state;
use super::{TxnError, KV_LOCK_DATABASE, KV_LOCK_TABLE};
use crate::server::now_ms;

/// Distinct keys one transaction may lock (its commands' keys plus its watched keys).
pub const TXN_KEYS_MAX: usize = 100_000;

/// Bit 47 marks key-value transaction ids, so they never equal a SQL transaction's id (SQL
/// uses the shard in the top 16 bits and a counter below 2^47 in practice).
const KV_TXN_BIT: u64 = 1 << 47;

thread_local! {
    static TXN_COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// A new global transaction id and its start order (wall-clock ns: "youngest" means the same
/// on every shard, as for SQL transactions).
pub fn new_txn() -> (TxnId, u64) {
    let shard = EngineHandle::current_shard().unwrap_or(0xffff) as u64;
    let n = TXN_COUNTER.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    let start_seq = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (
        TxnId((shard << 48) | KV_TXN_BIT | (n & (KV_TXN_BIT - 1))),
        start_seq,
    )
}

/// The lock resource of a key-value key.
pub fn key_resource(key: &[u8]) -> ResourceId {
    ResourceId::row(KV_LOCK_DATABASE, KV_LOCK_TABLE, key)
}

/// A key watched since WATCH: its version then, and whether it was live then (a live key that
/// expired since counts as modified, as in Redis).
#[derive(Debug, Clone)]
pub struct WatchCheck {
    pub key: Vec<u8>,
    pub version: u64,
    pub live_at_watch: bool,
}

/// What locking found: every key's entry (live or not, as stored) and whether a watch failed.
pub struct Locked {
    pub held: Held,
    pub entries: HashMap<Vec<u8>, Option<ValueEntry>>,
    pub watch_failed: bool,
}

/// Locks a transaction holds; release with [`Held::release`] after its write.
pub struct Held {
    engine: EngineHandle,
    txn: TxnId,
    /// Every shard a lock request was sent to (released even if the request failed).
    shards: Vec<usize>,
    released: bool,
}

/// Locks `keys` and the watched keys in X mode, shard by shard in ascending order and by key
/// hash within a shard (one global order, so two transactions cannot deadlock each other),
/// then reads them and checks the watches. On error every lock taken is released.
pub async fn lock_and_read(
    engine: &EngineHandle,
    keys: Vec<Vec<u8>>,
    watches: Vec<WatchCheck>,
) -> Result<Locked, TxnError> {
    let (txn, start_seq) = new_txn();
    let mut per_shard: BTreeMap<usize, (Vec<Vec<u8>>, Vec<WatchCheck>)> = BTreeMap::new();
    for key in keys
        .into_iter()
        .chain(watches.iter().map(|w| w.key.clone()))
    {
        per_shard
            .entry(engine.shard_for(&key))
            .or_default()
            .0
            .push(key);
    }
    for w in watches {
        per_shard
            .entry(engine.shard_for(&w.key))
            .or_default()
            .1
            .push(w);
    }
    let mut key_count = 0;
    for (keys, _) in per_shard.values_mut() {
        keys.sort_by(|a, b| (key_resource(a), a).cmp(&(key_resource(b), b)));
        keys.dedup();
        key_count += keys.len();
    }
    if key_count > TXN_KEYS_MAX {
        return Err(TxnError::TooManyKeys {
            keys: key_count,
            keys_max: TXN_KEYS_MAX,
        });
    }
    let mut held = Held {
        engine: engine.clone(),
        txn,
        shards: Vec::with_capacity(per_shard.len()),
        released: false,
    };
    let mut entries = HashMap::with_capacity(key_count);
    let mut watch_failed = false;
    for (shard, (keys, checks)) in per_shard {
        held.shards.push(shard);
        let handle = engine.clone();
        let answer = engine
            .run_on(shard, move || {
                lock_here(handle, shard, txn, start_seq, keys, checks)
            })
            .await;
        let (read, failed) = match answer.map_err(TxnError::from).and_then(|r| r) {
            Ok(r) => r,
            Err(e) => {
                held.release(Vec::new()).await;
                return Err(e);
            }
        };
        watch_failed |= failed;
        entries.extend(read);
    }
    Ok(Locked {
        held,
        entries,
        watch_failed,
    })
}

type ShardRead = (Vec<(Vec<u8>, Option<ValueEntry>)>, bool);

/// On the owning shard: mark the transaction active, wait out unlocked plain writes, lock,
/// read, check watches.
async fn lock_here(
    engine: EngineHandle,
    shard: usize,
    txn: TxnId,
    start_seq: u64,
    keys: Vec<Vec<u8>>,
    checks: Vec<WatchCheck>,
) -> Result<ShardRead, TxnError> {
    shard_state::txn_enter(txn.0);
    shard_state::drain_unlocked().await;
    let locks = shard_locks();
    locks.begin(txn, start_seq)?;
    for key in &keys {
        locks
            .lock_hierarchical(txn, key_resource(key), LockMode::X)
            .await?;
    }
    locks.add_work(txn, keys.len() as u64);
    let mut read = Vec::with_capacity(keys.len());
    for key in keys {
        // On the owning shard: served in place, no message.
        let entry = engine.get_entry(&key).await?;
        read.push((key, entry));
    }
    let now = now_ms();
    let mut failed = false;
    for check in &checks {
        let version = shard_state::version(&check.key);
        let live_now = read
            .iter()
            .find(|(k, _)| *k == check.key)
            .and_then(|(_, e)| e.as_ref())
            .is_some_and(|e| crate::resp::strings::live(e, now));
        if version != Some(check.version) || (check.live_at_watch && !live_now) {
            failed = true;
        }
    }
    assert!(
        shard < engine.shard_count(),
        "lock request sent to shard {shard} of {}",
        engine.shard_count()
    );
    Ok((read, failed))
}

impl Held {
    pub fn txn(&self) -> TxnId {
        self.txn
    }

    /// Records the modification of `modified` (for watchers) and releases every lock, on
    /// every shard, after the transaction's write returned.
    pub async fn release(&mut self, modified: Vec<Vec<u8>>) {
        if self.released {
            return;
        }
        self.released = true;
        let mut touched: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        for key in modified {
            touched
                .entry(self.engine.shard_for(&key))
                .or_default()
                .push(key);
        }
        let txn = self.txn;
        let calls = self.shards.iter().map(|&shard| {
            let keys = touched.remove(&shard).unwrap_or_default();
            self.engine.run_on(shard, move || async move {
                release_here(txn, &keys);
            })
        });
        // A failed message means the shard is stopping: its lock table goes with it.
        let _ = futures::future::join_all(calls.collect::<Vec<_>>()).await;
    }
}

fn release_here(txn: TxnId, modified: &[Vec<u8>]) {
    // Watchers learn of the write before anyone can lock the keys again.
    for key in modified {
        shard_state::touch(key);
    }
    shard_locks().end_txn(txn);
    shard_state::txn_leave(txn.0);
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Only when the transaction's future was dropped mid-way (shutdown): best effort.
        let txn = self.txn;
        for &shard in &self.shards {
            if EngineHandle::current_shard() == Some(shard) {
                release_here(txn, &[]);
                continue;
            }
            let _ = self.engine.spawn_on(shard, move || async move {
                release_here(txn, &[]);
            });
        }
    }
}
