//! The coordinator side: runs on the coordinator shard's executor and drives the participants
//! through the engine handle.
//!
//! Parallel commit (issue 9): the coordinator writes its Decision (flag "parallel", naming the
//! participants) at the same time as the participants write their Prepares; when it is a
//! participant itself, its Prepare and its Decision are queued in the same poll and ride one
//! sync. The transaction is committed iff the Decision AND every participant's Prepare are
//! durable; only then is anybody told (`commit_answering_early`). Before that, a failed vote
//! aborts: a participant that refused wrote no Prepare (recovery finds it missing and aborts);
//! one whose Prepare sync failed may have left it on disk, so the Decision is voided by a
//! synced flag-0 Decision before the client is told "aborted" (docs/concurrency.md).

use std::rc::Rc;

use futures::future::join_all;
use mantis_wal::WalError;

use super::participant::Vote;
use crate::engine::EngineHandle;
use crate::error::{EngineError, Result};
use crate::event::now_ms;
use crate::record::Mutation;
use crate::shard::Shard;

/// Where a test makes the coordinator stop, as if it crashed there (the participants are left
/// as they are). [`TpcStop::Never`] runs the whole protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpcStop {
    /// After the first `n` participants (in shard order) prepared; the Decision was never
    /// written (its write was lost in the crash).
    AfterPreparing(usize),
    /// The Decision is durable and only the first `n` participants (in shard order) prepared;
    /// the others' Prepares were lost in the crash.
    DecisionAfterPreparing(usize),
    /// After the Decision and every Prepare are durable; no participant told.
    AfterDecision,
    /// After the first `n` participants committed.
    AfterCommitting(usize),
    /// After every participant committed; no End.
    BeforeEnd,
    /// The whole protocol, End included (and awaited, unlike the normal path).
    Never,
}

/// The coordinator's Decision append, as it ended.
enum Decided {
    /// Durable at this LSN, with the commit time it carries.
    Durable(u64, u64),
    /// Not written: nobody asked for it (a certain abort) or the WAL refused it.
    NotWritten(Option<WalError>),
    /// Its write or sync failed: it may be on disk.
    Unknown(WalError),
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
    let participants: Vec<usize> = parts.iter().map(|(s, _)| *s).collect();
    let prepare_count = match stop {
        Some(TpcStop::AfterPreparing(n) | TpcStop::DecisionAfterPreparing(n)) => n.min(parts.len()),
        _ => parts.len(),
    };
    let decide = !matches!(stop, Some(TpcStop::AfterPreparing(_)));
    let (votes, decided, pass) =
        prepare_and_decide(&handle, &coord, txn, parts, prepare_count, decide).await;
    if matches!(
        stop,
        Some(
            TpcStop::AfterPreparing(_)
                | TpcStop::DecisionAfterPreparing(_)
                | TpcStop::AfterDecision
        )
    ) {
        return Ok(());
    }
    let (decision_lsn, committed_at_ms) = match settle(&handle, &coord, txn, votes, decided).await {
        Ok(decided) => decided,
        Err(e) => {
            drop(pass);
            return Err(e);
        }
    };
    if stop.is_none() {
        commit_answering_early(
            &handle,
            &coord,
            txn,
            committed_at_ms,
            decision_lsn,
            participants,
            pass,
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
    drop(pass);
    match stop {
        Some(TpcStop::Never) if all_committed => {
            coord.tpc_end(txn, decision_lsn, false).await?;
            end_durable_on(&handle, txn, &participants).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The parallel phase: the first `prepare_count` participants prepare while the coordinator
/// writes its Decision (if `decide`). Returns the votes (shard order), how the Decision
/// ended, and the cut-gate pass taken before the Decision (issue 10: from the Decision to the
/// last Commit a checkpoint may not cut; the Prepares before it need no pass, they are
/// invisible).
async fn prepare_and_decide(
    handle: &EngineHandle,
    coord: &Rc<Shard>,
    txn: u64,
    parts: Vec<(usize, Vec<Mutation>)>,
    prepare_count: usize,
    decide: bool,
) -> (
    Vec<(usize, Vote)>,
    Decided,
    Option<crate::checkpoint::barrier::CommitPass>,
) {
    let coordinator = coord.id;
    let ids: Vec<u32> = parts.iter().map(|&(s, _)| s as u32).collect();
    let mut local = None;
    let mut remote = Vec::with_capacity(parts.len());
    for (shard, writes) in parts.into_iter().take(prepare_count) {
        if shard == coordinator {
            local = Some(writes);
        } else {
            remote.push((shard, writes));
        }
    }
    let remote_votes = join_all(remote.into_iter().map(|(shard, writes)| {
        let h = handle.clone();
        async move {
            let r = h
                .call_on(shard, move |s| async move {
                    s.tpc_prepare(txn, coordinator, writes).await
                })
                .await;
            // A lost answer (the shard shut down) may hide a durable Prepare: unknown.
            (shard, r.unwrap_or_else(Vote::Unknown))
        }
    }));
    let own = async {
        let begun = match local {
            Some(writes) => Some(coord.tpc_prepare_begin(txn, coordinator, writes).await),
            None => None,
        };
        if let Some(Err(e)) = begun {
            // Refused here: certainly aborted, no Decision needed.
            return (Some(Vote::Refused(e)), Decided::NotWritten(None), None);
        }
        if !decide {
            let vote = match begun {
                Some(Ok(payload)) => Some(coord.tpc_prepare_log(txn, payload).await),
                _ => None,
            };
            return (vote, Decided::NotWritten(None), None);
        }
        coord
            .tpc
            .pass_hold(super::TpcHoldPoint::BeforeDecision, txn)
            .await;
        let pass = crate::checkpoint::barrier::CutGate::enter(coord).await;
        let at_ms = now_ms();
        let decision = coord.tpc_decide(txn, ids, at_ms);
        // WHY one join: both records are queued at their first poll, before this task
        // yields to the WAL committer, so they share one write and one fdatasync.
        let (vote, decided) = match begun {
            Some(Ok(payload)) => {
                let (v, d) = futures::join!(coord.tpc_prepare_log(txn, payload), decision);
                (Some(v), d)
            }
            _ => (None, decision.await),
        };
        let decided = match decided {
            Ok(lsn) => Decided::Durable(lsn, at_ms),
            Err(e) if super::wal_refused(&e) => Decided::NotWritten(Some(e)),
            Err(e) => Decided::Unknown(e),
        };
        (vote, decided, Some(pass))
    };
    let (mut votes, (own_vote, decided, pass)) = futures::join!(remote_votes, own);
    if let Some(v) = own_vote {
        votes.push((coordinator, v));
    }
    votes.sort_by_key(|(s, _)| *s);
    (votes, decided, pass)
}

/// Decides from the votes and the Decision's fate: Ok((Decision LSN, committed_at_ms)) when
/// committed (every Prepare and the Decision durable); otherwise aborts what can be aborted
/// and returns the error the client gets.
async fn settle(
    handle: &EngineHandle,
    coord: &Rc<Shard>,
    txn: u64,
    votes: Vec<(usize, Vote)>,
    decided: Decided,
) -> Result<(u64, u64)> {
    let mut prepared = Vec::with_capacity(votes.len());
    let mut refused = None;
    let mut unknown = None;
    for (shard, vote) in votes {
        match vote {
            Vote::Prepared => prepared.push(shard),
            Vote::Refused(e) => {
                tracing::info!(txn, shard, error = %e, "participant refused to prepare: transaction aborts");
                refused.get_or_insert(e);
            }
            Vote::Unknown(e) => {
                tracing::warn!(txn, shard, error = %e, "participant's Prepare failed: it may be on disk");
                unknown.get_or_insert(e);
            }
        }
    }
    if let Some(e) = refused {
        // A Prepare that will never exist: recovery aborts whatever else it finds.
        abort_all(handle, txn, &prepared).await;
        if let Decided::Durable(lsn, _) = decided {
            close_aborted_decision(coord, txn, lsn);
        }
        return Err(e);
    }
    match (decided, unknown) {
        (Decided::Durable(lsn, at_ms), None) => Ok((lsn, at_ms)),
        (Decided::NotWritten(e), unknown) => {
            abort_all(handle, txn, &prepared).await;
            match (unknown, e) {
                (Some(u), _) => Err(u),
                (None, Some(e)) => Err(coord.wal_error(e)),
                (None, None) => Err(EngineError::Invalid(format!(
                    "txn {txn:#x}: no Decision and no failed vote"
                ))),
            }
        }
        (Decided::Durable(lsn, _), Some(u)) => {
            coord
                .tpc
                .pass_hold(super::TpcHoldPoint::BeforeVoid, txn)
                .await;
            void_or_in_doubt(handle, coord, txn, lsn, &prepared, u).await
        }
        (Decided::Unknown(e), _) => Err(in_doubt(coord, txn, "Decision sync failed", e)),
    }
}

/// A participant's Prepare may be on disk although its sync failed, while the Decision is
/// durable: recovery would commit if it found every Prepare. Void the Decision (synced) and
/// abort; if the void's own sync fails the outcome is in doubt and the restart decides.
async fn void_or_in_doubt(
    handle: &EngineHandle,
    coord: &Rc<Shard>,
    txn: u64,
    lsn: u64,
    prepared: &[usize],
    u: EngineError,
) -> Result<(u64, u64)> {
    match coord.tpc_void(txn, lsn).await {
        Ok(_) => {
            abort_all(handle, txn, prepared).await;
            Err(u)
        }
        Err(e) => Err(in_doubt(coord, txn, "void of the Decision failed", e)),
    }
}

/// A durable Decision of a txn certainly aborted (a participant refused): an End, riding the
/// next sync, releases its pin. Losing it is harmless: recovery finds a Prepare missing.
fn close_aborted_decision(coord: &Rc<Shard>, txn: u64, decision_lsn: u64) {
    let shard = coord.clone();
    glommio::spawn_local(async move {
        if let Err(e) = shard.tpc_end(txn, decision_lsn, true).await {
            tracing::warn!(txn, error = %e, "End of an aborted Decision not written");
        }
    })
    .detach();
}

/// The outcome is unknown: the Decision may be durable and every Prepare too. The prepared
/// participants stay prepared (in doubt, writes invisible) and the restart decides from what
/// the logs really hold; aborting them now could contradict that. The client gets the error.
fn in_doubt(coord: &Rc<Shard>, txn: u64, what: &str, e: WalError) -> EngineError {
    let err = coord.wal_error(e);
    tracing::error!(txn, error = %err, "{what}: transaction in doubt until restart");
    err
}

/// Tells the participants that the End of `txn` is durable: their committed Prepares may
/// go once a flush covers the Commit (pins.rs).
async fn end_durable_on(handle: &EngineHandle, txn: u64, participants: &[usize]) {
    let calls = participants
        .iter()
        .map(|&shard| handle.call_on(shard, move |s| async move { s.tpc.pins.end_durable(txn) }));
    for r in join_all(calls).await {
        if let Err(e) = r {
            tracing::warn!(txn, error = %e, "participant not told the End is durable");
        }
    }
}

/// The decided txn's Commit phase when nobody stops it: returns once every participant's
/// Commit is under way where later requests cannot overtake it (the coordinator's own writes
/// readable, a remote participant's Commit message queued), and leaves the Commit records and
/// the End to a task of its own.
/// WHY: the caller (a SQL COMMIT) releases its row locks when `write_batch` returns; the
/// Commit records' fdatasync need not be inside that hold (twopc/visible.rs). Nor need the
/// round trip to a remote participant: the releases (and any later read) are queued on that
/// shard behind the Commit message, whose first step makes the writes readable.
async fn commit_answering_early(
    handle: &EngineHandle,
    coord: &Rc<Shard>,
    txn: u64,
    committed_at_ms: u64,
    decision_lsn: u64,
    participants: Vec<usize>,
    pass: Option<crate::checkpoint::barrier::CommitPass>,
) {
    let mut own_visible = None;
    let mut remote_visible = Vec::with_capacity(participants.len());
    let mut commits: Vec<CommitFuture> = Vec::with_capacity(participants.len());
    for &shard in &participants {
        // The participant tells `visible` when its writes are readable; the client's answer
        // waits only for the coordinator's own (it costs no message).
        let (tx, rx) = futures::channel::oneshot::channel();
        if shard == coord.id {
            own_visible = Some(rx);
            commits.push(Box::pin(commit_on(
                handle.clone(),
                shard,
                txn,
                committed_at_ms,
                Some(tx),
            )));
            continue;
        }
        remote_visible.push(rx);
        let queued = handle
            .enqueue_on(shard, move |s| async move {
                s.tpc_commit(txn, committed_at_ms, Some(tx)).await
            })
            .await;
        commits.push(Box::pin(async move {
            let r = match queued {
                Ok(answer) => answer.await.unwrap_or(Err(EngineError::ShuttingDown)),
                Err(e) => Err(e),
            };
            (shard, r)
        }));
    }
    // WHY the cut-gate pass outlives the answer: a checkpoint may cut only once every
    // participant has the writes at least in its decided overlay (the cut then waits for them
    // to reach the memtable). A cut job queued on a participant behind its Commit would be
    // safe anyway, but the barrier cuts shard 0 in place, which nothing orders after a Commit
    // message still in shard 0's queue: so the pass goes when every participant said so.
    glommio::spawn_local(async move {
        for rx in remote_visible {
            let _ = rx.await; // a participant that failed is logged by the Commit's task
        }
        drop(pass);
    })
    .detach();
    let end_shard = coord.clone();
    let end_handle = handle.clone();
    let told = participants.clone();
    glommio::spawn_local(async move {
        if !all_committed(txn, join_all(commits).await) {
            return;
        }
        // End needs no wait: losing it only makes recovery re-drive a finished decision.
        if let Err(e) = end_shard.tpc_end(txn, decision_lsn, true).await {
            tracing::warn!(txn, error = %e, "End record not written");
            return;
        }
        end_durable_on(&end_handle, txn, &told).await;
    })
    .detach();
    if let Some(rx) = own_visible {
        if rx.await.is_err() {
            // Committed all the same (the Decision is durable): recovery applies it here.
            tracing::error!(
                txn,
                shard = coord.id,
                "coordinator could not make a decided commit readable"
            );
        }
    }
}

/// One participant's Commit, answering (shard, result).
type CommitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = (usize, Result<()>)>>>;

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
