//! The global cut for multi-shard transactions (issue 10).
//!
//! A two-phase-commit transaction becomes visible shard by shard: after its Decision, each
//! participant applies its writes when its own Commit record is durable. A checkpoint cuts
//! each shard at its own flush, so a cut falling between two participants' Commits would hold
//! half the transaction. The barrier prevents that:
//!
//! 1. every shard's [`CutGate`] is closed: no coordinator may start a new Decision, and the
//!    close waits until the transactions it coordinates that already decided have every
//!    participant's Commit applied;
//! 2. then (and only then) every shard is cut;
//! 3. then every gate reopens.
//!
//! During step 2 no transaction is between its Decision and its last Commit, on any shard
//! (each transaction has one coordinator, and every coordinator's gate is closed). A decided
//! transaction is therefore applied on all its participants (in their memtables, which the
//! cut flushes) or an undecided one is on none (prepared writes are held outside the
//! memtable, and the checkpoint carries no WAL). Single-shard writes never pass the gate:
//! they are atomic on their shard already and keep running during the cut. A 2PC transaction
//! reaching its Decision during the cut waits for the cut (a flush and hard links per shard).
//!
//! Step 1 is bounded (`EngineConfig::checkpoint_barrier_timeout_ms`): a transaction whose
//! participant never answers its Commit would keep its coordinator's gate from closing; the
//! checkpoint then fails with [`EngineError::CheckpointBarrierTimeout`], every gate reopens,
//! and a later checkpoint succeeds once the transaction finishes.
//!
//! The whole sequence runs as one job on shard 0 (`run`), so a caller that gives up waiting
//! cannot leave the gates closed: jobs run to their end once started.

use std::cell::Cell;
use std::rc::Rc;

use futures::future::join_all;

use super::cut::cut_shard;
use super::meta::ShardCut;
use super::store::ShardPlan;
use crate::engine::EngineHandle;
use crate::error::{EngineError, Result};
use crate::event::Event;
use crate::shard::Shard;

/// Checkpoints holding one gate closed at once, at most (each HTTP request or schedule may
/// take one; more in flight means something is looping).
pub const GATE_CLOSERS_MAX: usize = 64;

/// One shard's gate, as a coordinator of two-phase commits.
#[derive(Default)]
pub(crate) struct CutGate {
    /// Cuts in progress that closed this gate.
    closers: Cell<usize>,
    /// Transactions this shard coordinates between their Decision and their last Commit.
    committing: Cell<usize>,
    changed: Event,
}

/// A coordinator's pass through the gate: held from before the Decision until every
/// participant's Commit returned (or the transaction gave up).
pub(crate) struct CommitPass {
    shard: Rc<Shard>,
}

impl Drop for CommitPass {
    fn drop(&mut self) {
        let gate = &self.shard.tpc.cut_gate;
        let n = gate.committing.get();
        assert!(
            n > 0,
            "shard {}: commit pass count underflow",
            self.shard.id
        );
        gate.committing.set(n - 1);
        gate.changed.notify_all();
    }
}

impl CutGate {
    /// Coordinator: waits while a cut is in progress, then lets the transaction decide.
    pub(crate) async fn enter(shard: &Rc<Shard>) -> CommitPass {
        let gate = &shard.tpc.cut_gate;
        while gate.closers.get() > 0 {
            gate.changed.wait().await;
        }
        gate.committing.set(gate.committing.get() + 1);
        CommitPass {
            shard: shard.clone(),
        }
    }

    /// Closes the gate, then waits until no transaction it let through is still committing.
    /// After `timeout_ms` it reopens its own closing and fails: a transaction whose
    /// participant never answers would otherwise hold this cut, and every Decision queued
    /// behind the closed gate, forever.
    async fn close(&self, shard: usize, timeout_ms: u64) -> Result<()> {
        let n = self.closers.get();
        assert!(n < GATE_CLOSERS_MAX, "{n} checkpoints cutting at once");
        self.closers.set(n + 1);
        let started = std::time::Instant::now();
        let deadline = started + std::time::Duration::from_millis(timeout_ms);
        while self.committing.get() > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                self.open();
                return Err(EngineError::CheckpointBarrierTimeout {
                    shard,
                    committing: self.committing.get(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            let changed = self.changed.wait();
            let timer = glommio::timer::sleep(deadline - now);
            futures::pin_mut!(changed, timer);
            futures::future::select(changed, timer).await;
        }
        Ok(())
    }

    fn open(&self) {
        let n = self.closers.get();
        assert!(n > 0, "cut gate opened more often than closed");
        self.closers.set(n - 1);
        self.changed.notify_all();
    }
}

/// Closes every gate, cuts every shard, reopens every gate. Returns the cuts in shard order.
pub(crate) async fn run(handle: EngineHandle, plans: Vec<ShardPlan>) -> Result<Vec<ShardCut>> {
    assert_eq!(plans.len(), handle.shard_count(), "one plan per shard");
    let closes = (0..handle.shard_count()).map(|i| {
        handle.call_on(i, |s| async move {
            let timeout_ms = s.cfg.checkpoint_barrier_timeout_ms;
            s.tpc.cut_gate.close(s.id, timeout_ms).await
        })
    });
    let mut failure: Option<EngineError> = None;
    let mut closed = Vec::with_capacity(handle.shard_count());
    for r in join_all(closes).await {
        // A gate that timed out reopened itself: only the ones closed stay to reopen.
        match r.and_then(|closing| closing) {
            Ok(()) => closed.push(true),
            Err(e) => {
                closed.push(false);
                failure.get_or_insert(e);
            }
        }
    }
    let mut cuts = Vec::with_capacity(plans.len());
    if failure.is_none() {
        let calls = plans
            .into_iter()
            .enumerate()
            .map(|(i, plan)| handle.call_on(i, move |s| async move { cut_shard(&s, plan).await }));
        for r in join_all(calls).await {
            match r.and_then(|cut| cut) {
                Ok(cut) => cuts.push(cut),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    }
    // Reopen exactly the gates this cut closed.
    let opens = closed
        .iter()
        .enumerate()
        .filter(|(_, &was_closed)| was_closed)
        .map(|(i, _)| handle.call_on(i, |s| async move { s.tpc.cut_gate.open() }));
    for r in join_all(opens).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "cut gate not reopened (engine shutting down)");
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(cuts),
    }
}
