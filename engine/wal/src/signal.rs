//! Tiny single-threaded wake-up primitives for tasks of one shard (no atomics, no locks:
//! everything here lives on one executor thread).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};

use crate::error::WalError;

/// Wakes one waiting task. A `notify` with nobody waiting is remembered, so a wake-up can
/// never be lost between a check and the wait; `wait` consumes it (auto-reset).
#[derive(Default)]
pub(crate) struct Signal {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// Set once, awaited by any number of tasks (task exit, for `close`).
#[derive(Default)]
pub(crate) struct Latch {
    set: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Latch {
    pub fn set(&self) {
        self.set.set(true);
        for w in self.wakers.take() {
            w.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.set.get() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// The outcome of one appended record: its LSN once durable, or why it failed.
#[derive(Default)]
pub(crate) struct Slot {
    result: RefCell<Option<Result<u64, WalError>>>,
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    pub fn complete(&self, result: Result<u64, WalError>) {
        let mut r = self.result.borrow_mut();
        assert!(r.is_none(), "a record completes once");
        *r = Some(result);
        drop(r);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = Result<u64, WalError>> + '_ {
        poll_fn(move |cx| match self.result.borrow_mut().take() {
            Some(r) => Poll::Ready(r),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::rc::Rc;

    #[test]
    fn signal_remembers_an_early_notify() {
        let s = Signal::default();
        s.notify();
        futures_lite::future::block_on(s.wait());
        // Consumed: a second wait would block.
        let waited = futures_lite::future::block_on(futures_lite::future::poll_once(s.wait()));
        assert!(waited.is_none());
    }

    #[test]
    fn slot_and_latch_deliver() {
        let slot = Rc::new(Slot::default());
        let latch = Rc::new(Latch::default());
        let (s2, l2) = (slot.clone(), latch.clone());
        let r = futures_lite::future::block_on(async move {
            let w = futures_lite::future::zip(s2.wait(), l2.wait());
            slot.complete(Ok(42));
            latch.set();
            w.await
        });
        assert_eq!(r.0.unwrap(), 42);
    }
}
