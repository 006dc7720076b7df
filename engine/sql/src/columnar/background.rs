//! Automatic merges run in the background: the INSERT that crosses `DELTA_ROWS_MERGE`
//! returns as soon as its rows are durable in the delta, and the merge runs as a task of
//! the shard's own (or shard 0's, for a statement from outside the shards) *columnar
//! merge* task queue, which has a tenth of the shares of foreground work, so a merge
//! cannot push the latency of the statements running next to it up. Overlapping merges of
//! one table are excluded by the merge guard (a second one does nothing).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use glommio::{Latency, Shares, TaskQueueHandle};
use mantis_columnar::CHUNK_ROWS_MAX;
use mantis_engine::EngineHandle;

use super::merge::merge_on;
use crate::catalog::TableDef;
use crate::error::{Result, SqlError};

/// Foreground tasks run with glommio's default 1000 shares; merges get a tenth.
const MERGE_SHARES: usize = 100;

static STARTED: AtomicU64 = AtomicU64::new(0);
static FINISHED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static LAST_ERROR: Mutex<Option<String>> = Mutex::new(None);

thread_local!(static QUEUE: Cell<Option<TaskQueueHandle>> = const { Cell::new(None) });

/// Background merges so far in this process: started, finished (including failed), failed,
/// and the last failure's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCounts {
    pub started: u64,
    pub finished: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

pub fn background_merges() -> MergeCounts {
    MergeCounts {
        started: STARTED.load(Ordering::SeqCst),
        finished: FINISHED.load(Ordering::SeqCst),
        failed: FAILED.load(Ordering::SeqCst),
        last_error: LAST_ERROR.lock().ok().and_then(|e| e.clone()),
    }
}

/// This executor's merge queue, created on first use.
fn queue() -> TaskQueueHandle {
    QUEUE.with(|q| match q.get() {
        Some(h) => h,
        None => {
            let h = glommio::executor().create_task_queue(
                Shares::Static(MERGE_SHARES),
                Latency::NotImportant,
                "columnar-merge",
            );
            q.set(Some(h));
            h
        }
    })
}

fn record(r: Result<()>) {
    if let Err(e) = r {
        FAILED.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut last) = LAST_ERROR.lock() {
            *last = Some(e.to_string());
        }
    }
    FINISHED.fetch_add(1, Ordering::SeqCst);
}

fn record_failure(message: String) {
    record(Err(SqlError::internal(message)));
}

/// Starts a merge of `t`'s delta in the background and returns at once.
pub fn spawn_merge(handle: &EngineHandle, t: &TableDef) -> Result<()> {
    let shard = EngineHandle::current_shard().unwrap_or(0);
    let (h, t) = (handle.clone(), t.clone());
    STARTED.fetch_add(1, Ordering::SeqCst);
    let spawned = handle.spawn_on(shard, move || async move {
        let merge = async move { record(merge_on(&h, &t, CHUNK_ROWS_MAX).await.map(|_| ())) };
        if let Err(e) = glommio::spawn_local_into(merge, queue()).map(|task| task.detach()) {
            record_failure(format!("spawn columnar merge: {e}"));
        }
    });
    spawned.map_err(|e| {
        let err = SqlError::storage("columnar merge", e);
        record_failure(err.to_string());
        err
    })
}
