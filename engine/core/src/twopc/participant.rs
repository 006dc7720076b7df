//! The participant side: Prepare, Commit and Abort on one shard.
//!
//! A prepared transaction's writes stay out of the memtable (invisible) until its `Commit`
//! record is durable; they are applied in that record's durable hook, at its LSN, so that the
//! memtable keeps seeing LSNs in order. The committed Prepare stays pinned until the
//! coordinator's End is durable (pins.rs, parallel commit).

use std::rc::Rc;

use super::record::TxnRecord;
use super::{Prepared, PREPARED_TXNS_MAX};
use crate::error::{EngineError, Result};
use crate::record::Mutation;
use crate::shard::Shard;

/// A participant's answer to Prepare.
pub(crate) enum Vote {
    /// The Prepare record is durable.
    Prepared,
    /// Certainly not in the log: refused before the record was queued, or the WAL refused the
    /// record (poisoned, closed, too large, disk full). Recovery can never commit the txn.
    Refused(EngineError),
    /// The Prepare's write or sync failed: the record may or may not be on disk.
    Unknown(EngineError),
}

impl Shard {
    /// Prepares `writes` of `txn`: a synced `Prepare` record, the writes held invisible and
    /// their keys guarded from read-modify-writes. Anything but `Vote::Prepared` means this
    /// shard votes abort.
    pub(crate) async fn tpc_prepare(
        self: &Rc<Self>,
        txn: u64,
        coordinator: usize,
        writes: Vec<Mutation>,
    ) -> Vote {
        match self.tpc_prepare_begin(txn, coordinator, writes).await {
            Ok(payload) => self.tpc_prepare_log(txn, payload).await,
            Err(e) => Vote::Refused(e),
        }
    }

    /// The part of a Prepare before its record: validates, waits out read-modify-writes on
    /// the keys, registers the txn as prepared (writes held, keys guarded) and returns the
    /// record's payload. An error writes nothing: a certain abort vote.
    pub(crate) async fn tpc_prepare_begin(
        self: &Rc<Self>,
        txn: u64,
        coordinator: usize,
        writes: Vec<Mutation>,
    ) -> Result<Vec<u8>> {
        for m in &writes {
            self.validate(m)?;
        }
        assert!(!writes.is_empty(), "txn {txn:#x}: empty prepare");
        self.check_writable()?;
        // A read-modify-write in progress read the old value: let it finish first.
        while writes
            .iter()
            .any(|m| self.rmw_keys.borrow().contains(m.key()))
        {
            self.changed.wait().await;
            self.check_writable()?;
        }
        if self.tpc.prepared.borrow().len() >= PREPARED_TXNS_MAX
            || self.tpc.pins.awaiting_end_len() >= super::pins::ENDS_AWAITED_MAX
        {
            return Err(EngineError::Invalid(format!(
                "shard {}: {PREPARED_TXNS_MAX} transactions already prepared (or awaiting \
                 their End); txn {txn:#x} aborts",
                self.id
            )));
        }
        let rec = TxnRecord::Prepare {
            txn,
            coordinator: coordinator as u32,
            writes,
        };
        let payload = rec.encode();
        let TxnRecord::Prepare { writes, .. } = rec else {
            unreachable!("built as a Prepare above")
        };
        self.tpc.hold_keys(&writes);
        let old = self.tpc.prepared.borrow_mut().insert(
            txn,
            Prepared {
                coordinator: coordinator as u32,
                prepare_lsn: 0,
                writes,
            },
        );
        assert!(
            old.is_none(),
            "txn {txn:#x} prepared twice on shard {}",
            self.id
        );
        Ok(payload)
    }

    /// Appends the Prepare record of `txn` (registered by `tpc_prepare_begin`) and waits for
    /// its sync. The record is queued at the first poll: a coordinator polls this together
    /// with its own Decision so that both ride one sync.
    pub(crate) async fn tpc_prepare_log(self: &Rc<Self>, txn: u64, payload: Vec<u8>) -> Vote {
        let hook_shard = self.clone();
        let res = self
            .wal
            .append_with(
                super::record::RECORD_KIND_TXN_PREPARE,
                payload,
                Box::new(move |lsn| {
                    if let Some(p) = hook_shard.tpc.prepared.borrow_mut().get_mut(&txn) {
                        p.prepare_lsn = lsn;
                    }
                    hook_shard.tpc.pins.hold(lsn);
                }),
            )
            .await;
        match res {
            Ok(_) => {
                self.tpc.prepares.set(self.tpc.prepares.get() + 1);
                Vote::Prepared
            }
            Err(e) => {
                // Not durable (or not known to be): forget it here. If the record did reach
                // the disk, recovery must not commit the txn: the coordinator sees an
                // `Unknown` vote and voids its Decision (coordinator.rs).
                self.tpc_forget(txn);
                let certain = super::wal_refused(&e);
                let err = self.wal_error(e);
                if certain {
                    Vote::Refused(err)
                } else {
                    Vote::Unknown(err)
                }
            }
        }
    }

    /// Commits prepared `txn`: its writes become readable at once (the Decision is durable),
    /// `visible` is told so, then a synced `Commit` record; the writes reach the memtable at
    /// its LSN. The Prepare stays pinned until a flush covers the Commit.
    pub(crate) async fn tpc_commit(
        self: &Rc<Self>,
        txn: u64,
        committed_at_ms: u64,
        visible: Option<futures::channel::oneshot::Sender<()>>,
    ) -> Result<()> {
        self.tpc
            .pass_hold(super::TpcHoldPoint::BeforeCommit, txn)
            .await;
        {
            let prepared = self.tpc.prepared.borrow();
            let Some(p) = prepared.get(&txn) else {
                return Err(EngineError::Invalid(format!(
                    "shard {}: commit of txn {txn:#x}, which is not prepared here",
                    self.id
                )));
            };
            self.tpc.decided.install(txn, &p.writes);
        }
        let payload = TxnRecord::Commit {
            txn,
            committed_at_ms,
        }
        .encode();
        let hook_shard = self.clone();
        let hook: mantis_wal::DurableHook =
            Box::new(move |lsn| hook_shard.tpc_apply_commit(txn, lsn));
        let kind = super::record::RECORD_KIND_TXN_COMMIT;
        // Nobody waits on the record once its writes are readable: it rides with the next sync.
        let append = match visible {
            Some(_) => futures::future::Either::Left(self.wal.append_deferred_with(
                kind,
                payload,
                hook,
                super::DEFERRED_RECORD_DELAY_MAX,
            )),
            None => futures::future::Either::Right(self.wal.append_with(kind, payload, hook)),
        };
        // WHY no await between telling and the append's first poll (which enqueues the
        // record): a write that read these values must be logged after this Commit.
        if let Some(tx) = visible {
            let _ = tx.send(());
        }
        let res = append.await;
        res.map(|_| ()).map_err(|e| self.wal_error(e))
    }

    /// The Commit record of `txn` is durable at `lsn`: apply the writes there.
    fn tpc_apply_commit(&self, txn: u64, lsn: u64) {
        let Some(p) = self.tpc.prepared.borrow_mut().remove(&txn) else {
            return;
        };
        assert!(
            p.prepare_lsn > 0 && p.prepare_lsn < lsn,
            "shard {}: txn {txn:#x} commits at LSN {lsn} before its prepare {}",
            self.id,
            p.prepare_lsn
        );
        self.tpc.release_keys(&p.writes);
        self.tpc.decided.remove(txn, &p.writes);
        self.tpc.pins.until_end(txn, p.prepare_lsn, lsn);
        self.apply(lsn, p.writes);
        self.tpc.commits.set(self.tpc.commits.get() + 1);
        self.changed.notify_all();
    }

    /// Aborts prepared `txn`: its writes are dropped now; an `Abort` record tells recovery
    /// so without asking the coordinator (presumed abort gives the same answer).
    pub(crate) async fn tpc_abort(self: &Rc<Self>, txn: u64) -> Result<()> {
        let Some(prepare_lsn) = self.tpc.prepared.borrow().get(&txn).map(|p| p.prepare_lsn) else {
            return Ok(());
        };
        self.tpc_forget(txn);
        let payload = TxnRecord::Abort { txn }.encode();
        let hook_shard = self.clone();
        let res = self
            .wal
            .append_with(
                super::record::RECORD_KIND_TXN_ABORT,
                payload,
                Box::new(move |_lsn| hook_shard.tpc.pins.release(prepare_lsn)),
            )
            .await;
        res.map(|_| ()).map_err(|e| self.wal_error(e))
    }

    /// Drops a prepared txn from memory (its writes and key guards).
    fn tpc_forget(&self, txn: u64) {
        if let Some(p) = self.tpc.prepared.borrow_mut().remove(&txn) {
            self.tpc.release_keys(&p.writes);
            self.tpc.aborts.set(self.tpc.aborts.get() + 1);
        }
        self.changed.notify_all();
    }

    /// As coordinator: appends the synced Decision; returns its LSN. The Decision stays
    /// pinned until the End record is durable.
    pub(crate) async fn tpc_decide(
        self: &Rc<Self>,
        txn: u64,
        participants: Vec<u32>,
        committed_at_ms: u64,
    ) -> std::result::Result<u64, mantis_wal::WalError> {
        let payload = TxnRecord::Decision {
            txn,
            commit: true,
            parallel: true,
            committed_at_ms,
            participants,
        }
        .encode();
        let hook_shard = self.clone();
        self.wal
            .append_with(
                super::record::RECORD_KIND_TXN_DECISION,
                payload,
                Box::new(move |lsn| hook_shard.tpc.pins.hold(lsn)),
            )
            .await
    }

    /// As coordinator: voids the parallel Decision of `txn` at `decision_lsn` by a synced
    /// Decision with flag 0 (recovery then aborts the txn whatever Prepares it finds), and
    /// unpins the Decision once that is durable.
    pub(crate) async fn tpc_void(
        self: &Rc<Self>,
        txn: u64,
        decision_lsn: u64,
    ) -> std::result::Result<u64, mantis_wal::WalError> {
        let payload = TxnRecord::Decision {
            txn,
            commit: false,
            parallel: false,
            committed_at_ms: 0,
            participants: Vec::new(),
        }
        .encode();
        let hook_shard = self.clone();
        self.wal
            .append_with(
                super::record::RECORD_KIND_TXN_DECISION,
                payload,
                Box::new(move |_lsn| hook_shard.tpc.pins.release(decision_lsn)),
            )
            .await
    }

    /// As coordinator: appends End (every participant committed) and unpins the Decision at
    /// `decision_lsn` (0: none pinned, as after recovery) once End is durable.
    /// `deferred`: the record rides with the next sync (nobody waits on it).
    pub(crate) async fn tpc_end(
        self: &Rc<Self>,
        txn: u64,
        decision_lsn: u64,
        deferred: bool,
    ) -> Result<()> {
        let payload = TxnRecord::End { txn }.encode();
        let hook_shard = self.clone();
        let hook: mantis_wal::DurableHook = Box::new(move |_lsn| {
            if decision_lsn > 0 {
                hook_shard.tpc.pins.release(decision_lsn);
            }
        });
        let kind = super::record::RECORD_KIND_TXN_END;
        let res = if deferred {
            let delay = super::DEFERRED_RECORD_DELAY_MAX;
            self.wal
                .append_deferred_with(kind, payload, hook, delay)
                .await
        } else {
            self.wal.append_with(kind, payload, hook).await
        };
        res.map(|_| ()).map_err(|e| self.wal_error(e))
    }
}
