//! Issue 10, for tests: a fault point that holds one two-phase-commit transaction at a chosen
//! step until the test releases it, so a checkpoint can be cut while a batch is prepared but
//! undecided, or while a participant does not answer its Commit.
//!
//! A hold is armed on one shard ([`crate::EngineHandle::arm_tpc_hold`]) and taken by the
//! first transaction passing its point there. Dropping the [`TpcHoldControl`] releases it:
//! a failed test never leaves a transaction (and the cut gate) held for good.

use futures::channel::oneshot;

/// Where an armed shard holds the next transaction passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpcHoldPoint {
    /// As coordinator: no Decision yet (outside the cut gate). Under parallel commit the
    /// coordinator's own part is registered as prepared (its record not yet written) and the
    /// other participants' Prepares run concurrently: a test waits for them by polling.
    BeforeDecision,
    /// As participant: told to commit a decided transaction, it does not answer (the
    /// coordinator holds its cut-gate pass meanwhile).
    BeforeCommit,
    /// As coordinator: its Decision is durable but a participant's Prepare sync failed (it
    /// may be on disk), and it is about to void the Decision (issue 9, parallel commit).
    BeforeVoid,
}

/// The shard's side of an armed hold.
pub(crate) struct ArmedHold {
    point: TpcHoldPoint,
    reached: oneshot::Sender<u64>,
    release: oneshot::Receiver<()>,
}

/// The test's side: learn when the transaction is held, then release it.
pub struct TpcHoldControl {
    reached: oneshot::Receiver<u64>,
    release: oneshot::Sender<()>,
}

impl TpcHoldControl {
    /// Resolves once a transaction is held at the point, with its txn id; None if the
    /// engine dropped the hold unused (shut down).
    pub async fn reached(&mut self) -> Option<u64> {
        (&mut self.reached).await.ok()
    }

    /// Lets the held transaction go on.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

pub(crate) fn arm(point: TpcHoldPoint) -> (ArmedHold, TpcHoldControl) {
    let (reached_tx, reached_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel();
    (
        ArmedHold {
            point,
            reached: reached_tx,
            release: release_rx,
        },
        TpcHoldControl {
            reached: reached_rx,
            release: release_tx,
        },
    )
}

impl super::ShardTpc {
    /// Holds `txn` here if this shard is armed for `point`; otherwise returns at once.
    pub(crate) async fn pass_hold(&self, point: TpcHoldPoint, txn: u64) {
        let armed = {
            let mut hold = self.hold.borrow_mut();
            match hold.as_ref() {
                Some(h) if h.point == point => hold.take(),
                _ => None,
            }
        };
        let Some(armed) = armed else { return };
        tracing::warn!(txn, ?point, "test hold: two-phase commit held");
        let _ = armed.reached.send(txn);
        // Released or the control dropped: either way the transaction goes on.
        let _ = armed.release.await;
    }
}
