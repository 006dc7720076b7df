//! [`Wal`]: one shard's write-ahead log. State lives in `Cell`/`RefCell` (single-threaded);
//! two background tasks do the I/O: the committer (group commit, `commit.rs`) and the
//! preparer (next segment, recycling, `prepare.rs`). They hold only a `Weak` to the WAL, so
//! dropping the last `Rc<Wal>` stops them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mantis_storage::{File, OpenMode, Storage, BLOCK_SIZE};

use crate::config::WalConfig;
use crate::error::WalError;
use crate::frame::{record_encoded_len, WalRecord, RECORD_PAYLOAD_MAX_BYTES};
use crate::recovery::{recover_log, RecoveryReport};
use crate::segment::{prepare_fresh, segment_file_name, SegmentFile, Spare};
use crate::signal::{Latch, Signal, Slot};
use crate::stats::WalStats;

/// A record waiting for its group commit.
pub(crate) struct Pending {
    pub kind: u8,
    pub payload: Vec<u8>,
    pub slot: Rc<Slot>,
    /// Called with the record's LSN after the sync that covers it, before any waiter wakes,
    /// in LSN order across the whole log (see [`Wal::append_with`]).
    pub on_durable: Option<DurableHook>,
    /// Rides along with the next sync instead of asking for one (see
    /// [`Wal::append_deferred_with`]).
    pub deferred: bool,
}

/// A hook run once a record is durable: how the engine applies records in LSN order.
pub type DurableHook = Box<dyn FnOnce(u64)>;

impl Pending {
    pub fn cost_bytes(&self, checksum: mantis_integrity::Algorithm) -> usize {
        record_encoded_len(checksum, self.payload.len())
    }
}

/// Records not yet taken by the committer. `pending` is the next batch, bounded by
/// `pending_bytes_max`; `blocked` holds the appenders beyond the bound, in arrival order
/// (their payloads are the callers' own buffers, held here instead of in their futures).
#[derive(Default)]
pub(crate) struct Queue {
    pub pending: VecDeque<Pending>,
    pub pending_bytes: usize,
    pub blocked: VecDeque<Pending>,
    /// Records in `pending` and `blocked` that are not deferred: the committer syncs as soon
    /// as there is one.
    pub urgent: usize,
}

/// The segment being appended to.
pub(crate) struct Writer {
    pub file: Rc<dyn File>,
    pub segment: SegmentFile,
    /// Next write offset: always block-aligned, never behind a durable chunk.
    pub pos: u64,
}

pub struct Wal {
    pub(crate) shard: usize,
    pub(crate) dir: PathBuf,
    pub(crate) storage: Rc<dyn Storage>,
    pub(crate) cfg: WalConfig,
    pub(crate) writer: RefCell<Writer>,
    /// Live segments in LSN order; the last one is the writer's.
    pub(crate) live: RefCell<VecDeque<SegmentFile>>,
    pub(crate) spares: RefCell<Vec<Spare>>,
    pub(crate) next_seq: Cell<u64>,
    pub(crate) next_lsn: Cell<u64>,
    pub(crate) durable_lsn: Cell<u64>,
    pub(crate) flushed_lsn: Cell<u64>,
    pub(crate) queue: RefCell<Queue>,
    pub(crate) poison: RefCell<Option<Arc<WalError>>>,
    pub(crate) closing: Cell<bool>,
    /// A segment is being prepared or recycled (by either task): at most one at a time.
    pub(crate) preparing: Cell<bool>,
    pub(crate) stats: RefCell<WalStats>,
    pub(crate) commit_wake: Rc<Signal>,
    pub(crate) prepare_wake: Rc<Signal>,
    pub(crate) prepare_idle: Rc<Signal>,
    pub(crate) committer_done: Rc<Latch>,
    pub(crate) preparer_done: Rc<Latch>,
    /// Issue 10: when archiving, segments holding unarchived records are not recycled.
    pub(crate) archive_gate: RefCell<Option<Arc<crate::ArchiveGate>>>,
    /// A deferred record waited its longest: the committer syncs even if nothing is urgent.
    pub(crate) deferred_due: Cell<bool>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` (a shard's `wal/` directory), recovers it, and
    /// hands every valid record with LSN > `replay_from_lsn` to `replay`, in LSN order.
    ///
    /// A torn tail is truncated and counted; damage in the middle fails with
    /// [`WalError::Corrupt`] unless `cfg.repair` is set. Records handed to `replay` before
    /// an error are valid, but the caller should discard them when `open` fails.
    /// Must run on a glommio executor (it spawns the WAL's two background tasks there).
    pub async fn open(
        storage: Rc<dyn Storage>,
        dir: PathBuf,
        shard: usize,
        cfg: WalConfig,
        replay_from_lsn: u64,
        mut replay: impl FnMut(WalRecord) -> Result<(), WalError>,
    ) -> Result<(Rc<Wal>, RecoveryReport), WalError> {
        cfg.validate()?;
        let rec = recover_log(
            &*storage,
            &dir,
            shard,
            cfg.repair,
            Some(replay_from_lsn),
            &mut replay,
        )
        .await?;
        let mut report = rec.report;
        let next_seq = Cell::new(rec.next_seq);
        let spares = keep_spares(&*storage, &dir, shard, &cfg, &rec.spares).await?;
        let next_lsn = rec.last_lsn + 1;
        let mut segments = rec.segments;
        let (writer, spares) = match segments.last() {
            Some(seg) => {
                let file = storage
                    .open(&seg.path, OpenMode::ReadWrite)
                    .await
                    .map_err(|e| WalError::storage(shard, "open segment", e))?;
                let mut segment = seg.clone();
                segment.size_bytes -= segment.size_bytes % BLOCK_SIZE as u64;
                let pos = rec.end_off.min(segment.size_bytes);
                (Writer { file, segment, pos }, spares)
            }
            None => {
                let (w, spares) =
                    first_segment(&*storage, &dir, shard, &cfg, spares, &next_seq, next_lsn)
                        .await?;
                segments.push(w.segment.clone());
                (w, spares)
            }
        };
        report.segments = segments.len();
        let stats = WalStats {
            torn_tails_truncated: u64::from(report.torn_tail_bytes > 0),
            torn_tail_bytes: report.torn_tail_bytes,
            ..WalStats::default()
        };
        let wal = Rc::new(Wal {
            shard,
            dir,
            storage,
            cfg,
            writer: RefCell::new(writer),
            live: RefCell::new(segments.into()),
            spares: RefCell::new(spares),
            next_seq,
            next_lsn: Cell::new(next_lsn),
            durable_lsn: Cell::new(rec.last_lsn),
            flushed_lsn: Cell::new(replay_from_lsn.min(rec.last_lsn)),
            queue: RefCell::new(Queue::default()),
            poison: RefCell::new(None),
            closing: Cell::new(false),
            preparing: Cell::new(false),
            stats: RefCell::new(stats),
            commit_wake: Rc::new(Signal::default()),
            prepare_wake: Rc::new(Signal::default()),
            prepare_idle: Rc::new(Signal::default()),
            committer_done: Rc::new(Latch::default()),
            preparer_done: Rc::new(Latch::default()),
            archive_gate: RefCell::new(None),
            deferred_due: Cell::new(false),
        });
        crate::commit::spawn_committer(&wal);
        crate::prepare::spawn_preparer(&wal);
        // Prepare the next segment (and recycle what replay_from_lsn already covers).
        wal.prepare_wake.notify();
        tracing::info!(shard, last_lsn = rec.last_lsn, ?report, "WAL opened");
        Ok((wal, report))
    }

    /// Appends one record; resolves with its LSN once an fdatasync covering it succeeded.
    /// Many concurrent appends share one write and one sync. If the future is dropped
    /// before it resolves, the record may or may not be in the log.
    pub async fn append(&self, kind: u8, payload: Vec<u8>) -> Result<u64, WalError> {
        self.append_inner(kind, payload, None).await
    }

    /// Like [`Wal::append`], and once the record is durable — after the fdatasync, before any
    /// appender is woken — calls `on_durable(lsn)`. Hooks run in LSN order, synchronously in
    /// the committer, so a caller that applies records in them sees them in log order even
    /// though the appenders wake in any order. A record that fails never runs its hook. The
    /// hook runs even if the appender's future was dropped (the record is in the log).
    pub async fn append_with(
        &self,
        kind: u8,
        payload: Vec<u8>,
        on_durable: DurableHook,
    ) -> Result<u64, WalError> {
        self.append_inner(kind, payload, Some(on_durable)).await
    }

    /// Like [`Wal::append_with`], but the record does not ask for a sync of its own: it goes
    /// out with the next batch some other append asks for, or after `delay_max` at the latest.
    /// WHY: records nobody waits on (two-phase commit's participant Commit and End records,
    /// whose writes are readable already) would otherwise take the one write+sync in flight
    /// just before the next transaction's Prepare, which then waits for a whole extra sync.
    pub async fn append_deferred_with(
        &self,
        kind: u8,
        payload: Vec<u8>,
        on_durable: DurableHook,
        delay_max: Duration,
    ) -> Result<u64, WalError> {
        let slot = self.enqueue_checked(kind, payload, Some(on_durable), true)?;
        let early = futures_lite::future::or(async { Some(slot.wait().await) }, async {
            glommio::timer::sleep(delay_max).await;
            None
        })
        .await;
        if let Some(r) = early {
            return r;
        }
        self.deferred_due.set(true);
        self.commit_wake.notify();
        slot.wait().await
    }

    async fn append_inner(
        &self,
        kind: u8,
        payload: Vec<u8>,
        on_durable: Option<DurableHook>,
    ) -> Result<u64, WalError> {
        let slot = self.enqueue_checked(kind, payload, on_durable, false)?;
        self.commit_wake.notify();
        slot.wait().await
    }

    /// Queues one record for the committer, or refuses it (poisoned, closing, too large).
    fn enqueue_checked(
        &self,
        kind: u8,
        payload: Vec<u8>,
        on_durable: Option<DurableHook>,
        deferred: bool,
    ) -> Result<Rc<Slot>, WalError> {
        if let Err(e) = self.check_accepting() {
            self.stats.borrow_mut().appends_failed += 1;
            return Err(e);
        }
        if payload.len() > RECORD_PAYLOAD_MAX_BYTES {
            self.stats.borrow_mut().appends_failed += 1;
            return Err(WalError::RecordTooLarge {
                shard: self.shard,
                len_bytes: payload.len(),
                max_bytes: RECORD_PAYLOAD_MAX_BYTES,
            });
        }
        let slot = Rc::new(Slot::default());
        self.enqueue(Pending {
            kind,
            payload,
            slot: slot.clone(),
            on_durable,
            deferred,
        });
        Ok(slot)
    }

    /// Whether the committer should write and sync what is queued now.
    pub(crate) fn sync_wanted(&self) -> bool {
        self.queue.borrow().urgent > 0 || self.deferred_due.get() || self.closing.get()
    }

    fn check_accepting(&self) -> Result<(), WalError> {
        if let Some(cause) = self.poison.borrow().as_ref() {
            return Err(WalError::Poisoned {
                shard: self.shard,
                cause: cause.clone(),
            });
        }
        if self.closing.get() {
            return Err(WalError::Closed { shard: self.shard });
        }
        Ok(())
    }

    fn enqueue(&self, p: Pending) {
        let mut q = self.queue.borrow_mut();
        let cost = p.cost_bytes(self.cfg.checksum);
        q.urgent += usize::from(!p.deferred);
        // Arrival order is kept: nobody overtakes a blocked appender.
        let fits = q.pending.is_empty() || q.pending_bytes + cost <= self.cfg.pending_bytes_max;
        if q.blocked.is_empty() && fits {
            q.pending_bytes += cost;
            q.pending.push_back(p);
        } else {
            q.blocked.push_back(p);
        }
    }

    /// Tells the WAL that every record with LSN <= `lsn` is persisted elsewhere: whole
    /// segments below it are recycled in the background. Call only once that persistence
    /// is durable (the log forgets these records).
    pub fn mark_flushed(&self, lsn: u64) {
        let lsn = lsn.min(self.durable_lsn.get());
        if lsn <= self.flushed_lsn.get() {
            // Issue 10: segments held for the archiver may have become free since.
            if self.recyclable().is_some() {
                self.prepare_wake.notify();
            }
            return;
        }
        self.flushed_lsn.set(lsn);
        if self.recyclable().is_some() {
            self.prepare_wake.notify();
        }
    }

    /// The oldest live segment, if all its records are flushed (never the writer's).
    pub(crate) fn recyclable(&self) -> Option<SegmentFile> {
        let live = self.live.borrow();
        let (first, second) = (live.front()?, live.get(1)?);
        let mut free_lsn = self.flushed_lsn.get();
        if let Some(gate) = self.archive_gate.borrow().as_ref() {
            free_lsn = free_lsn.min(gate.archived_lsn());
        }
        (second.first_lsn - 1 <= free_lsn).then(|| first.clone())
    }

    /// Issue 10: from now on, keeps every segment holding a record above
    /// `gate.archived_lsn()` and publishes the durable LSN to the gate.
    pub fn set_archive_gate(&self, gate: Arc<crate::ArchiveGate>) {
        gate.set_durable(self.durable_lsn.get());
        *self.archive_gate.borrow_mut() = Some(gate);
    }

    /// Issue 10: the live segment files, oldest first (what the archiver may read).
    pub fn live_segments(&self) -> Vec<(u64, PathBuf)> {
        self.live
            .borrow()
            .iter()
            .map(|s| (s.first_lsn, s.path.clone()))
            .collect()
    }

    /// The last LSN known durable (0 when the log never held a record).
    pub fn last_durable_lsn(&self) -> u64 {
        self.durable_lsn.get()
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> WalStats {
        let mut s = self.stats.borrow().clone();
        let w = self.writer.borrow();
        s.current_segment_first_lsn = w.segment.first_lsn;
        s.current_segment_offset_bytes = w.pos;
        s.live_segments = self.live.borrow().len();
        s.spare_segments = self.spares.borrow().len();
        s.last_durable_lsn = self.durable_lsn.get();
        s.flushed_lsn = self.flushed_lsn.get();
        s.pending_bytes = self.queue.borrow().pending_bytes;
        s.poisoned = self.poison.borrow().is_some();
        s
    }

    /// The failure that poisoned the WAL, if one did.
    pub fn poisoned(&self) -> Option<WalError> {
        self.poison.borrow().as_ref().map(|c| (**c).clone())
    }

    /// Stops taking appends, waits for the commits already queued to finish and for the
    /// background tasks to stop. Fails with [`WalError::Poisoned`] if the WAL is poisoned.
    pub async fn close(&self) -> Result<(), WalError> {
        self.closing.set(true);
        self.commit_wake.notify();
        self.prepare_wake.notify();
        self.committer_done.wait().await;
        self.preparer_done.wait().await;
        if let Some(cause) = self.poison.borrow().as_ref() {
            return Err(WalError::Poisoned {
                shard: self.shard,
                cause: cause.clone(),
            });
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // The tasks hold only a Weak: wake them so they notice and exit.
        self.closing.set(true);
        self.commit_wake.notify();
        self.prepare_wake.notify();
    }
}

/// Keeps the spares that fit this configuration, removes the others.
async fn keep_spares(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
    cfg: &WalConfig,
    paths: &[PathBuf],
) -> Result<Vec<Spare>, WalError> {
    let io = |op| move |e| WalError::storage(shard, op, e);
    let keep_max = cfg.spare_segments_max.max(1);
    let mut kept = Vec::new();
    let mut removed = false;
    for path in paths {
        let file = storage
            .open(path, OpenMode::Read)
            .await
            .map_err(io("open spare"))?;
        let size_bytes = file.size().await.map_err(io("stat spare"))?;
        let _ = file.close().await;
        if size_bytes == cfg.segment_size_bytes && kept.len() < keep_max {
            kept.push(Spare {
                path: path.clone(),
                size_bytes,
            });
        } else {
            storage.remove(path).await.map_err(io("remove spare"))?;
            removed = true;
        }
    }
    if removed {
        storage
            .sync_dir(dir)
            .await
            .map_err(io("sync WAL directory"))?;
    }
    Ok(kept)
}

/// Creates the first segment of a new log, starting at `first_lsn`.
async fn first_segment(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
    cfg: &WalConfig,
    mut spares: Vec<Spare>,
    next_seq: &Cell<u64>,
    first_lsn: u64,
) -> Result<(Writer, Vec<Spare>), WalError> {
    let io = |op| move |e| WalError::storage(shard, op, e);
    let spare = match spares.pop() {
        Some(s) => s,
        None => {
            let seq = next_seq.get();
            next_seq.set(seq + 1);
            prepare_fresh(storage, dir, seq, cfg.segment_size_bytes)
                .await
                .map_err(io("prepare segment"))?
        }
    };
    let path = dir.join(segment_file_name(first_lsn));
    storage
        .rename(&spare.path, &path)
        .await
        .map_err(io("rename segment"))?;
    storage
        .sync_dir(dir)
        .await
        .map_err(io("sync WAL directory"))?;
    let file = storage
        .open(&path, OpenMode::ReadWrite)
        .await
        .map_err(io("open segment"))?;
    let segment = SegmentFile {
        first_lsn,
        path,
        size_bytes: spare.size_bytes,
    };
    Ok((
        Writer {
            file,
            segment,
            pos: 0,
        },
        spares,
    ))
}
