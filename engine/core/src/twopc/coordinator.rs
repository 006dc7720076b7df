//! The coordinator side: runs on the coordinator shard's executor and drives the participants
//! through the engine handle.
//!
//! Commit point: the synced Decision in the coordinator's WAL. Before it, any failure aborts
//! (presumed abort: no abort decision is written); after it, the transaction is committed
//! whatever happens to the participants' Commit records (recovery re-drives the Decision).

use std::rc::Rc;

use futures::future::join_all;
use mantis_wal::WalError;

use crate::engine::EngineHandle;
use crate::error::{EngineError, Result};
use crate::event::now_ms;
use crate::record::Mutation;
use crate::shard::Shard;

/// Where a test makes the coordinator stop, as if it crashed there (the participants are left
/// as they are). [`TpcStop::Never`] runs the whole protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpcStop {
    /// After the first `n` participants (in shard order) prepared; no decision.
    AfterPreparing(usize),
    /// After the Decision is durable; no participant told.
    AfterDecision,
    /// After the first `n` participants committed.
    AfterCommitting(usize),
    /// After every participant committed; no End.
    BeforeEnd,
    /// The whole protocol, End included (and awaited, unlike the normal path).
    Never,
}

/// Runs a transaction over `parts` (shard, writes), each shard once, at least two.
pub(crate) async fn coordinate(
    handle: EngineHandle,
    coord: Rc<Shard>,
    parts: Vec<(usize, Vec<Mutation>)>,
    stop: Option<TpcStop>,
) -> Result<()> {
    assert!(parts.len() >= 2, "two-phase commit of a single-shard batch");
    assert!(parts.len() <= super::record::PARTICIPANTS_MAX);
    let txn = coord.tpc.next_txn(coord.id);
    let coordinator = coord.id;
    let participants: Vec<usize> = parts.iter().map(|(s, _)| *s).collect();
    let prepare_count = match stop {
        Some(TpcStop::AfterPreparing(n)) => n.min(parts.len()),
        _ => parts.len(),
    };
    let prepares = parts
        .into_iter()
        .take(prepare_count)
        .map(|(shard, writes)| {
            let h = handle.clone();
            async move {
                let r = h
                    .call_on(shard, move |s| async move {
                        s.tpc_prepare(txn, coordinator, writes).await
                    })
                    .await;
                (shard, r.and_then(|r| r))
            }
        });
    let votes = join_all(prepares).await;
    if matches!(stop, Some(TpcStop::AfterPreparing(_))) {
        return Ok(());
    }
    let prepared: Vec<usize> = votes
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(s, _)| *s)
        .collect();
    if let Some((shard, Err(e))) = votes.into_iter().find(|(_, r)| r.is_err()) {
        tracing::info!(txn, shard, error = %e, "participant cannot prepare: transaction aborts");
        abort_all(&handle, txn, &prepared).await;
        return Err(e);
    }
    coord
        .tpc
        .pass_hold(super::TpcHoldPoint::BeforeDecision, txn)
        .await;
    // Issue 10: from the Decision to the last Commit, the transaction is visible on some
    // participants and not others; a checkpoint must not cut inside that window (the pass
    // holds its cut back, and a cut in progress holds this Decision back).
    let _pass = crate::checkpoint::barrier::CutGate::enter(&coord).await;
    let committed_at_ms = now_ms();
    let ids: Vec<u32> = participants.iter().map(|&s| s as u32).collect();
    let decision_lsn = match coord.tpc_decide(txn, ids, committed_at_ms).await {
        Ok(lsn) => lsn,
        Err(e) => return Err(decision_failed(&handle, &coord, txn, &prepared, e).await),
    };
    if stop == Some(TpcStop::AfterDecision) {
        return Ok(());
    }
    if stop.is_none() {
        commit_answering_early(
            &handle,
            &coord,
            txn,
            committed_at_ms,
            decision_lsn,
            participants,
        )
        .await;
        return Ok(());
    }
    let commit_count = match stop {
        Some(TpcStop::AfterCommitting(n)) => n.min(participants.len()),
        _ => participants.len(),
    };
    let commits = participants
        .iter()
        .take(commit_count)
        .map(|&shard| commit_on(handle.clone(), shard, txn, committed_at_ms, None));
    let all_committed = all_committed(txn, join_all(commits).await);
    match stop {
        Some(TpcStop::Never) if all_committed => coord.tpc_end(txn, decision_lsn, false).await,
        _ => Ok(()),
    }
}

/// The decided txn's Commit phase when nobody stops it: returns once every participant made
/// the writes readable, and leaves the Commit records and the End to a task of its own.
/// WHY: the caller (a SQL COMMIT) releases its row locks when `write_batch` returns; the
/// Commit records' fdatasync need not be inside that hold (twopc/visible.rs).
async fn commit_answering_early(
    handle: &EngineHandle,
    coord: &Rc<Shard>,
    txn: u64,
    committed_at_ms: u64,
    decision_lsn: u64,
    participants: Vec<usize>,
) {
    let mut visibles = Vec::with_capacity(participants.len());
    let commits: Vec<_> = participants
        .iter()
        .map(|&shard| {
            let (tx, rx) = futures::channel::oneshot::channel();
            visibles.push((shard, rx));
            commit_on(handle.clone(), shard, txn, committed_at_ms, Some(tx))
        })
        .collect();
    let end_shard = coord.clone();
    glommio::spawn_local(async move {
        if !all_committed(txn, join_all(commits).await) {
            return;
        }
        // End needs no wait: losing it only makes recovery re-drive a finished decision.
        if let Err(e) = end_shard.tpc_end(txn, decision_lsn, true).await {
            tracing::warn!(txn, error = %e, "End record not written");
        }
    })
    .detach();
    for (shard, rx) in visibles {
        if rx.await.is_err() {
            // Committed all the same (the Decision is durable): recovery applies it there.
            tracing::error!(
                txn,
                shard,
                "participant could not make a decided commit readable"
            );
        }
    }
}

/// Tells `shard` to commit `txn`; `visible` is told once its writes are readable.
async fn commit_on(
    handle: EngineHandle,
    shard: usize,
    txn: u64,
    committed_at_ms: u64,
    visible: Option<futures::channel::oneshot::Sender<()>>,
) -> (usize, Result<()>) {
    let r = handle
        .call_on(shard, move |s| async move {
            s.tpc_commit(txn, committed_at_ms, visible).await
        })
        .await;
    (shard, r.and_then(|r| r))
}

/// Whether every participant recorded its Commit; logs the ones that did not.
fn all_committed(txn: u64, results: Vec<(usize, Result<()>)>) -> bool {
    let mut all = true;
    for (shard, r) in results {
        if let Err(e) = r {
            // Committed all the same (the Decision is durable); this shard applies it when it
            // restarts, by re-drive from the Decision, which stays pinned (no End).
            tracing::error!(txn, shard, error = %e, "participant failed to record a decided commit");
            all = false;
        }
    }
    all
}

async fn abort_all(handle: &EngineHandle, txn: u64, prepared: &[usize]) {
    let aborts = prepared.iter().map(|&shard| {
        let h = handle.clone();
        async move {
            let r = h
                .call_on(shard, move |s| async move { s.tpc_abort(txn).await })
                .await;
            if let Err(e) = r.and_then(|r| r) {
                // The Prepare stays; recovery finds no decision and aborts it.
                tracing::warn!(txn, shard, error = %e, "Abort record not written");
            }
        }
    });
    join_all(aborts).await;
}

/// The Decision could not be made durable. If it certainly is not in the log (the WAL refused
/// it or the disk was full), the transaction aborts now. Otherwise (a failed sync) it may be on disk:
/// the participants stay prepared (in doubt) and the restart resolves them from what the
/// coordinator's log really holds; aborting them now could contradict that.
async fn decision_failed(
    handle: &EngineHandle,
    coord: &Rc<Shard>,
    txn: u64,
    prepared: &[usize],
    e: WalError,
) -> EngineError {
    // Refused before anything was written, or ENOSPC (nothing written, the log did not
    // advance): certainly not in the log. Anything else may have reached the disk.
    let not_written = matches!(
        e,
        WalError::DiskFull { .. }
            | WalError::Poisoned { .. }
            | WalError::Closed { .. }
            | WalError::RecordTooLarge { .. }
    );
    let in_doubt = !not_written;
    let err = coord.wal_error(e);
    if in_doubt {
        tracing::error!(txn, error = %err, "decision in doubt: participants stay prepared until restart");
    } else {
        abort_all(handle, txn, prepared).await;
    }
    err
}
