//! Per-shard state of key-value transactions (RESP MULTI/EXEC, `POST /api/v1/txn`): how many
//! transactions hold locks here, the plain writes running without a lock, and the versions of
//! watched keys. One instance per shard executor (thread-local): single-threaded, no atomics.
//!
//! Why plain writes need this at all: they take no lock while no transaction is active on
//! their shard (an uncontended lock would cost nothing, but a lock held across the fdatasync
//! would serialise writers of one hot key that otherwise share one group commit). A plain
//! write that started unlocked must not land between a transaction's read/watch check and its
//! write, so a transaction entering a shard first marks it active (new plain writes then lock)
//! and then waits for the unlocked ones in flight to finish (at most one fdatasync).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use futures::channel::oneshot;

/// Keys watched at once on one shard (distinct keys; every watcher of a key shares its entry).
pub const WATCHED_KEYS_MAX: usize = 1_000_000;
/// Transactions waiting for the drain of unlocked plain writes on one shard.
pub const DRAIN_WAITERS_MAX: usize = 100_000;
/// Transactions active on one shard at once (each is one client's EXEC or HTTP request).
pub const ACTIVE_TXNS_MAX: usize = 1_000_000;

#[derive(Default)]
struct State {
    /// Transactions holding (or acquiring) locks on this shard. A set, not a count, so that
    /// a release that arrives for a transaction that never entered (its lock message failed)
    /// cannot unbalance it.
    active_txns: RefCell<HashSet<u64>>,
    /// Plain writes that started while no transaction was active and have not finished.
    unlocked_inflight: Cell<u32>,
    drain_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Watched key → (watchers, modification count since the entry was created).
    watched: RefCell<HashMap<Vec<u8>, Watched>>,
}

#[derive(Clone, Copy)]
struct Watched {
    watchers: u32,
    version: u64,
}

thread_local! {
    static STATE: State = State::default();
}

/// Whether the calling shard has an active transaction (plain writes must lock then).
pub fn txn_active() -> bool {
    STATE.with(|s| !s.active_txns.borrow().is_empty())
}

/// Marks transaction `txn` active here. Pair with [`txn_leave`].
pub fn txn_enter(txn: u64) {
    STATE.with(|s| {
        let mut active = s.active_txns.borrow_mut();
        assert!(
            active.len() < ACTIVE_TXNS_MAX,
            "active transactions unbounded"
        );
        active.insert(txn);
    });
}

/// Ends `txn` here (idempotent).
pub fn txn_leave(txn: u64) {
    STATE.with(|s| {
        s.active_txns.borrow_mut().remove(&txn);
    });
}

/// A plain write running without a lock; dropping it ends it (and may end a drain).
pub struct UnlockedWrite(());

impl UnlockedWrite {
    /// `Some` when no transaction is active here: the write may run unlocked.
    pub fn try_begin() -> Option<UnlockedWrite> {
        STATE.with(|s| {
            if !s.active_txns.borrow().is_empty() {
                return None;
            }
            s.unlocked_inflight.set(s.unlocked_inflight.get() + 1);
            Some(UnlockedWrite(()))
        })
    }
}

impl Drop for UnlockedWrite {
    fn drop(&mut self) {
        let waiters = STATE.with(|s| {
            let n = s.unlocked_inflight.get();
            assert!(n > 0, "unlocked write count underflow");
            s.unlocked_inflight.set(n - 1);
            if n == 1 {
                std::mem::take(&mut *s.drain_waiters.borrow_mut())
            } else {
                Vec::new()
            }
        });
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// Waits until no unlocked plain write is in flight here. Call after [`txn_enter`]: from then
/// on new plain writes lock, so the count only falls and the wait is at most one write long.
pub async fn drain_unlocked() {
    loop {
        let rx = STATE.with(|s| {
            if s.unlocked_inflight.get() == 0 {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            let mut waiters = s.drain_waiters.borrow_mut();
            assert!(waiters.len() < DRAIN_WAITERS_MAX, "drain waiters unbounded");
            waiters.push(tx);
            Some(rx)
        });
        let Some(rx) = rx else { return };
        let _ = rx.await;
    }
}

/// Starts watching `key` here; returns its current version. `None` when the table is full.
pub fn watch(key: &[u8]) -> Option<u64> {
    STATE.with(|s| {
        let mut watched = s.watched.borrow_mut();
        if let Some(w) = watched.get_mut(key) {
            w.watchers += 1;
            return Some(w.version);
        }
        if watched.len() >= WATCHED_KEYS_MAX {
            return None;
        }
        watched.insert(
            key.to_vec(),
            Watched {
                watchers: 1,
                version: 0,
            },
        );
        Some(0)
    })
}

/// Ends one watcher of `key` (EXEC, DISCARD, UNWATCH, disconnect).
pub fn unwatch(key: &[u8]) {
    STATE.with(|s| {
        let mut watched = s.watched.borrow_mut();
        let Some(w) = watched.get_mut(key) else {
            return;
        };
        w.watchers -= 1;
        if w.watchers == 0 {
            watched.remove(key);
        }
    });
}

/// The version of a watched key now (`None`: nobody watches it, which a watcher never sees).
pub fn version(key: &[u8]) -> Option<u64> {
    STATE.with(|s| s.watched.borrow().get(key).map(|w| w.version))
}

/// Records a modification of `key` (any writer, even of the same value). Costs one empty-map
/// check when nothing is watched.
pub fn touch(key: &[u8]) {
    STATE.with(|s| {
        let mut watched = s.watched.borrow_mut();
        if watched.is_empty() {
            return;
        }
        if let Some(w) = watched.get_mut(key) {
            w.version += 1;
        }
    });
}

/// Watched keys on this shard now (for tests and INFO).
pub fn watched_keys() -> usize {
    STATE.with(|s| s.watched.borrow().len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn watch_versions_count_touches_and_entries_go_with_the_last_watcher() {
        assert_eq!(watch(b"k"), Some(0));
        touch(b"k");
        touch(b"other");
        assert_eq!(version(b"k"), Some(1));
        assert_eq!(watch(b"k"), Some(1), "second watcher shares the entry");
        unwatch(b"k");
        assert_eq!(version(b"k"), Some(1));
        unwatch(b"k");
        assert_eq!(version(b"k"), None);
        assert_eq!(watched_keys(), 0);
    }

    #[test]
    fn unlocked_writes_only_without_active_txn() {
        let w = UnlockedWrite::try_begin();
        assert!(w.is_some());
        txn_enter(7);
        assert!(UnlockedWrite::try_begin().is_none());
        assert!(txn_active());
        drop(w);
        txn_leave(7);
        txn_leave(7);
        assert!(!txn_active());
    }
}
