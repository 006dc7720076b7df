//! The write path of a shard.
//!
//! 1. Validate (sizes, expiry) and refuse early when the shard is read-only or closing.
//! 2. Wait while the memtable budget is exhausted (backpressure) or a read-modify-write holds
//!    one of the keys.
//! 3. Hand the encoded batch to the WAL. Group commit shares one write + fdatasync among every
//!    writer that arrives meanwhile; the WAL calls our apply hook for each record *after* the
//!    sync and *in LSN order*, so the memtable only ever holds durable data and a later write
//!    always supersedes an earlier one.
//! 4. Answer the caller.
//!
//! The WAL part runs in a detached task: a caller that goes away (client disconnect) must not
//! cancel a commit other writers share.

use std::rc::Rc;

use mantis_table::EntryKind;
use mantis_wal::WalError;

use super::{live_value, Shard};
use crate::config::EXPIRES_AT_MS_MAX;
use crate::error::{EngineError, Result};
use crate::event::now_ms;
use crate::record::{self, Mutation, RECORD_KIND_TIMED_BATCH};

/// The value of a key as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueEntry {
    pub value: Vec<u8>,
    /// Absolute expiry in unix milliseconds.
    pub expires_at_ms: Option<u64>,
}

/// What a read-modify-write decides to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Keep,
    Put {
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    Delete,
}

pub(crate) fn mutation_to_entry(m: Mutation) -> (Vec<u8>, EntryKind) {
    match m {
        Mutation::Put {
            key,
            value,
            expires_at_ms,
        } => (
            key,
            EntryKind::Put {
                value,
                expires_at_ms,
            },
        ),
        Mutation::Delete { key } => (key, EntryKind::Delete),
    }
}

/// Releases a write's claim on its keys when the write ends, however it ends.
struct InflightGuard {
    shard: Rc<Shard>,
    keys: Vec<Vec<u8>>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut inflight = self.shard.inflight.borrow_mut();
        for k in &self.keys {
            if let Some(n) = inflight.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    inflight.remove(k);
                }
            }
        }
        drop(inflight);
        self.shard
            .inflight_total
            .set(self.shard.inflight_total.get() - 1);
        self.shard.changed.notify_all();
    }
}

/// Releases a read-modify-write's reservation of its key.
struct RmwGuard {
    shard: Rc<Shard>,
    key: Vec<u8>,
}

impl Drop for RmwGuard {
    fn drop(&mut self) {
        self.shard.rmw_keys.borrow_mut().remove(&self.key);
        self.shard.changed.notify_all();
    }
}

impl Shard {
    pub(crate) fn validate(&self, m: &Mutation) -> Result<()> {
        let key = m.key();
        if key.is_empty() {
            return Err(EngineError::EmptyKey);
        }
        if key.len() > self.cfg.key_bytes_max {
            return Err(EngineError::KeyTooLarge {
                len: key.len(),
                max: self.cfg.key_bytes_max,
            });
        }
        if let Mutation::Put {
            value,
            expires_at_ms,
            ..
        } = m
        {
            if value.len() > self.cfg.value_bytes_max {
                return Err(EngineError::ValueTooLarge {
                    len: value.len(),
                    max: self.cfg.value_bytes_max,
                });
            }
            if let Some(t) = expires_at_ms {
                if *t > EXPIRES_AT_MS_MAX {
                    return Err(EngineError::TtlOverflow {
                        reason: format!("expiry {t} ms is after 9999-12-31"),
                    });
                }
            }
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if let Some(cause) = self.read_only.borrow().as_ref() {
            return Err(EngineError::ReadOnly {
                shard: self.id,
                cause: cause.clone(),
            });
        }
        if self.closing.get() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(())
    }

    fn memtable_bytes(&self) -> usize {
        let st = self.state.borrow();
        let active = st.active.borrow().size_bytes();
        active
            + st.frozen
                .iter()
                .map(|m| m.borrow().size_bytes())
                .sum::<usize>()
    }

    /// Writes a batch atomically and durably. Returns once it is synced and visible.
    pub async fn write(self: &Rc<Self>, batch: Vec<Mutation>) -> Result<()> {
        self.write_inner(batch, None).await
    }

    async fn write_inner(
        self: &Rc<Self>,
        batch: Vec<Mutation>,
        rmw_key: Option<&[u8]>,
    ) -> Result<()> {
        for m in &batch {
            self.validate(m)?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        // Wait while a read-modify-write (other than our own) holds one of our keys.
        while batch
            .iter()
            .any(|m| Some(m.key()) != rmw_key && self.rmw_keys.borrow().contains(m.key()))
        {
            self.changed.wait().await;
            self.check_writable()?;
        }
        let keys: Vec<Vec<u8>> = batch.iter().map(|m| m.key().to_vec()).collect();
        {
            let mut inflight = self.inflight.borrow_mut();
            for k in &keys {
                *inflight.entry(k.clone()).or_insert(0) += 1;
            }
        }
        self.inflight_total.set(self.inflight_total.get() + 1);
        let guard = InflightGuard {
            shard: self.clone(),
            keys,
        };
        // Backpressure: the memtables hold at most their budget; wait for a flush.
        while self.memtable_bytes() >= self.cfg.memtable_bytes_max {
            if self.disk_full.get() {
                self.counters
                    .disk_full_errors
                    .set(self.counters.disk_full_errors.get() + 1);
                return Err(EngineError::DiskFull { shard: self.id });
            }
            self.maintenance_wake.notify_all();
            self.changed.wait().await;
            self.check_writable()?;
        }
        // Issue 10: stamped with its commit time, for point-in-time recovery.
        let payload = record::encode_timed(crate::event::now_ms(), &batch);
        let shard = self.clone();
        let commit = glommio::spawn_local(async move {
            let apply_shard = shard.clone();
            let res = shard
                .wal
                .append_with(
                    RECORD_KIND_TIMED_BATCH,
                    payload,
                    Box::new(move |lsn| apply_shard.apply(lsn, batch)),
                )
                .await;
            drop(guard);
            res
        })
        .detach();
        let res = commit.await.ok_or(EngineError::ShuttingDown)?;
        self.counters.writes.set(self.counters.writes.get() + 1);
        res.map(|_lsn| ()).map_err(|e| self.wal_error(e))
    }

    pub(crate) fn wal_error(&self, e: WalError) -> EngineError {
        self.counters
            .write_errors
            .set(self.counters.write_errors.get() + 1);
        if e.is_disk_full() {
            self.counters
                .disk_full_errors
                .set(self.counters.disk_full_errors.get() + 1);
            return EngineError::DiskFull { shard: self.id };
        }
        // The batch whose sync failed gets `SyncFailed`, later ones `Poisoned`: both mean
        // the WAL can no longer be trusted.
        if e.is_poisoned() || self.wal.poisoned().is_some() {
            let cause = e.to_string();
            self.read_only.borrow_mut().get_or_insert_with(|| {
                tracing::error!(shard = self.id, error = %cause, "WAL sync failed: shard is now read-only");
                cause.clone()
            });
            return EngineError::ReadOnly {
                shard: self.id,
                cause,
            };
        }
        EngineError::Wal {
            shard: self.id,
            source: e,
        }
    }

    /// Called by the WAL, in LSN order, once the record is durable.
    pub(crate) fn apply(&self, lsn: u64, batch: Vec<Mutation>) {
        {
            let st = self.state.borrow();
            let mut active = st.active.borrow_mut();
            for m in batch {
                let (key, kind) = mutation_to_entry(m);
                active.insert(key, lsn, kind);
            }
        }
        self.maybe_freeze();
    }

    /// Freezes the active memtable once it holds half the budget, so that writers can go on
    /// into a fresh one while the frozen one is flushed.
    pub(crate) fn maybe_freeze(&self) {
        let mut st = self.state.borrow_mut();
        if st.active.borrow().size_bytes() < self.cfg.memtable_bytes_max / 2 {
            return;
        }
        self.freeze_locked(&mut st);
    }

    pub(crate) fn freeze_locked(&self, st: &mut super::State) {
        if st.active.borrow().is_empty() {
            return;
        }
        let full = std::mem::replace(
            &mut st.active,
            Rc::new(std::cell::RefCell::new(crate::memtable::Memtable::new())),
        );
        st.frozen.insert(0, full);
        self.maintenance_wake.notify_all();
    }

    /// Reserves `key` for a read-modify-write: waits until no write or other read-modify-write
    /// of it is in flight; plain writes to it wait while the guard lives.
    async fn reserve_rmw(self: &Rc<Self>, key: &[u8]) -> Result<RmwGuard> {
        if key.is_empty() {
            return Err(EngineError::EmptyKey);
        }
        loop {
            self.check_writable()?;
            // Issue 9: a prepared transaction's write to the key is in flight too.
            let busy = self.rmw_keys.borrow().contains(key)
                || self.inflight.borrow().contains_key(key)
                || self.tpc.is_prepared_key(key);
            if !busy {
                break;
            }
            self.changed.wait().await;
        }
        self.rmw_keys.borrow_mut().insert(key.to_vec());
        Ok(RmwGuard {
            shard: self.clone(),
            key: key.to_vec(),
        })
    }

    /// Atomic read-modify-write of one key: waits for the key's in-flight writes, reads,
    /// decides, and writes, while plain writes to the key wait.
    pub async fn update<R>(
        self: &Rc<Self>,
        key: Vec<u8>,
        f: impl FnOnce(Option<ValueEntry>) -> Result<(WriteOp, R)>,
    ) -> Result<R> {
        let _reservation = self.reserve_rmw(&key).await?;
        let current = self.get_entry(&key).await?;
        let (op, result) = f(current)?;
        let m = match op {
            WriteOp::Keep => return Ok(result),
            WriteOp::Put {
                value,
                expires_at_ms,
            } => Mutation::Put {
                key: key.clone(),
                value,
                expires_at_ms,
            },
            WriteOp::Delete => Mutation::Delete { key: key.clone() },
        };
        self.write_inner(vec![m], Some(&key)).await?;
        Ok(result)
    }

    /// Atomic read-modify-write of several keys of this shard, guarded by one: reserves
    /// `key` (as [`Shard::update`] does), reads it and `read_keys`, lets `f` decide a whole
    /// batch, and writes that batch atomically. Why: a document and its index entries must
    /// change together, and the index set read in `read_keys` must not change under `f`
    /// (issue 11). Every key of the batch must belong to this shard by the caller's placement.
    pub async fn update_batch<R>(
        self: &Rc<Self>,
        key: Vec<u8>,
        read_keys: Vec<Vec<u8>>,
        f: impl FnOnce(Option<ValueEntry>, Vec<Option<ValueEntry>>) -> Result<(Vec<Mutation>, R)>,
    ) -> Result<R> {
        let _reservation = self.reserve_rmw(&key).await?;
        let current = self.get_entry(&key).await?;
        let mut reads = Vec::with_capacity(read_keys.len());
        for k in &read_keys {
            reads.push(self.get_entry(k).await?);
        }
        let (batch, result) = f(current, reads)?;
        self.write_inner(batch, Some(&key)).await?;
        Ok(result)
    }

    /// Deletes a key; true if it held a live value.
    pub async fn delete(self: &Rc<Self>, key: Vec<u8>) -> Result<bool> {
        self.update(key, |cur| {
            Ok(if cur.is_some() {
                (WriteOp::Delete, true)
            } else {
                (WriteOp::Keep, false)
            })
        })
        .await
    }

    /// The live value of a key, or None.
    pub async fn get_entry(self: &Rc<Self>, key: &[u8]) -> Result<Option<ValueEntry>> {
        self.counters.reads.set(self.counters.reads.get() + 1);
        let now = now_ms();
        let found = self.lookup(key).await?;
        Ok(found.and_then(|kind| {
            live_value(&kind, now).map(|(v, e)| ValueEntry {
                value: v.clone(),
                expires_at_ms: e,
            })
        }))
    }
}

/// Converts a relative TTL to an absolute expiry, rejecting what cannot be represented.
pub fn expiry_from_ttl(ttl: Option<std::time::Duration>) -> Result<Option<u64>> {
    let Some(ttl) = ttl else { return Ok(None) };
    let ms = u64::try_from(ttl.as_millis()).map_err(|_| EngineError::TtlOverflow {
        reason: "TTL does not fit in 64-bit milliseconds".into(),
    })?;
    if ms == 0 {
        return Err(EngineError::TtlOverflow {
            reason: "TTL must be positive".into(),
        });
    }
    let at = now_ms()
        .checked_add(ms)
        .filter(|&t| t <= EXPIRES_AT_MS_MAX)
        .ok_or_else(|| EngineError::TtlOverflow {
            reason: format!("TTL of {ms} ms ends after 9999-12-31"),
        })?;
    Ok(Some(at))
}
