#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use mantis_lock::{
    Acquire, LockConfig, LockError, LockManager, LockMode, LockWait, ResourceId, TxnId,
};

pub fn mgr() -> LockManager {
    LockManager::new(LockConfig::default())
}

pub fn row(k: u64) -> ResourceId {
    ResourceId::Row {
        database: 1,
        table: 1,
        key_hash: k,
    }
}

pub fn t(n: u64) -> TxnId {
    TxnId(n)
}

/// Acquire and expect an immediate grant.
pub fn grant(m: &LockManager, txn: u64, r: ResourceId, mode: LockMode) {
    match m.try_lock(t(txn), r, mode) {
        Ok(Acquire::Granted) => {}
        Ok(Acquire::Wait(_)) => panic!("txn {txn} {mode} on {r} queued, expected grant"),
        Err(e) => panic!("txn {txn} {mode} on {r}: {e}"),
    }
}

/// Acquire and expect to queue.
pub fn queue(m: &LockManager, txn: u64, r: ResourceId, mode: LockMode) -> LockWait {
    match m.try_lock(t(txn), r, mode) {
        Ok(Acquire::Wait(w)) => w,
        Ok(Acquire::Granted) => panic!("txn {txn} {mode} on {r} granted, expected a wait"),
        Err(e) => panic!("txn {txn} {mode} on {r}: {e}"),
    }
}

/// Polls a wait once with a no-op waker.
pub fn poll(w: &mut LockWait) -> Poll<Result<(), LockError>> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    Pin::new(w).poll(&mut cx)
}

pub fn assert_pending(w: &mut LockWait) {
    assert!(
        poll(w).is_pending(),
        "wait resolved, expected still pending"
    );
}

pub fn assert_granted(w: &mut LockWait) {
    match poll(w) {
        Poll::Ready(Ok(())) => {}
        other => panic!("expected grant, got {other:?}"),
    }
}

pub fn assert_failed(w: &mut LockWait) -> LockError {
    match poll(w) {
        Poll::Ready(Err(e)) => e,
        other => panic!("expected failure, got {other:?}"),
    }
}
