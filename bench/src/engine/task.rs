//! Running benchmark code on a shard's own executor and getting the answer back.
//!
//! Why on the shard: a figure taken on the owning shard is engine time; one taken from another
//! thread adds two cross-thread hops (and glommio's wake-up latency) to every operation.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use mantis_engine::{EngineError, EngineHandle};

use crate::engine::keys;
use crate::error::BenchError;

/// Maps an engine error to a [`BenchError`] naming the benchmark phase.
pub fn engine_err(phase: &'static str) -> impl FnOnce(EngineError) -> BenchError {
    move |e| BenchError::Engine {
        phase,
        cause: e.to_string(),
    }
}

/// Set by the panic hook. Why: when a shard's executor thread panics, glommio does not drop the
/// tasks it holds, so the result channel of a task on that shard never disconnects and a plain
/// `recv` would wait forever.
static PANICKED: AtomicBool = AtomicBool::new(false);
/// How often a waiting thread looks at [`PANICKED`].
const PANIC_POLL: Duration = Duration::from_millis(100);

/// Records any panic (on any thread) before the default hook prints it.
pub fn install_panic_watch() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default_hook(info);
    }));
}

/// A task started on a shard; its result arrives on the channel.
pub struct ShardTask<T> {
    phase: &'static str,
    rx: Receiver<Result<T, BenchError>>,
}

/// Starts `f` on `shard`'s executor.
pub fn start_on<T, F, Fut>(
    h: &EngineHandle,
    shard: usize,
    phase: &'static str,
    f: F,
) -> Result<ShardTask<T>, BenchError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, BenchError>> + 'static,
{
    // Capacity one: the task sends exactly one result and must never block its executor.
    let (tx, rx) = sync_channel(1);
    h.spawn_on(shard, move || async move {
        let _ = tx.send(f().await);
    })
    .map_err(engine_err(phase))?;
    Ok(ShardTask { phase, rx })
}

impl<T> ShardTask<T> {
    /// Blocks this (non-executor) thread until the task answers, or a thread panics.
    pub fn wait(self) -> Result<T, BenchError> {
        loop {
            if let Some(r) = self.wait_timeout(PANIC_POLL)? {
                return Ok(r);
            }
        }
    }

    /// Waits at most `timeout`; `Ok(None)` when the task is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<T>, BenchError> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => r.map(Some),
            Err(RecvTimeoutError::Timeout) if PANICKED.load(Ordering::SeqCst) => {
                Err(self.lost("a thread panicked (see above)"))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.lost("the shard task ended without an answer (shard stopped?)"))
            }
        }
    }

    fn lost(&self, cause: &str) -> BenchError {
        BenchError::Engine {
            phase: self.phase,
            cause: cause.to_string(),
        }
    }
}

/// Starts one task per shard and waits for all of them, in shard order.
pub fn on_every_shard<T, F, Fut>(
    h: &EngineHandle,
    phase: &'static str,
    f: F,
) -> Result<Vec<T>, BenchError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<T, BenchError>> + 'static,
{
    let tasks = (0..h.shard_count())
        .map(|shard| {
            let f = f.clone();
            start_on(h, shard, phase, move || f(shard))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tasks.into_iter().map(ShardTask::wait).collect()
}

/// The first index at or after `i`, stepping by `step`, whose key lives on `shard`.
pub fn owned_index(h: &EngineHandle, prefix: &[u8; 4], shard: usize, i: u64, step: u64) -> u64 {
    assert!(step > 0 && shard < h.shard_count());
    let mut i = i;
    while h.shard_for(&keys::key(prefix, i)) != shard {
        i += step;
    }
    i
}

/// Runs an engine call on shard 0's executor and waits for it (with the panic watch), for
/// the whole-engine calls (stats, flush, compact) the main thread needs.
pub fn call<T, F, Fut>(h: &EngineHandle, phase: &'static str, f: F) -> Result<T, BenchError>
where
    T: Send + 'static,
    F: FnOnce(EngineHandle) -> Fut + Send + 'static,
    Fut: Future<Output = mantis_engine::Result<T>> + 'static,
{
    let hc = h.clone();
    start_on(h, 0, phase, move || async move {
        f(hc).await.map_err(engine_err(phase))
    })?
    .wait()
}
