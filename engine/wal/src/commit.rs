//! Group commit. One committer task per WAL takes everything pending as one batch, writes it
//! as one chunk and syncs once; records arriving meanwhile form the next batch. So there is
//! at most one write+sync in flight, which is what lets recovery treat only the last chunk
//! as possibly incomplete. LSNs are given when a batch is taken (in arrival order), so a
//! batch that fails consumes none and the log never has a gap.

use std::rc::{Rc, Weak};
use std::time::Instant;

use mantis_storage::OpenMode;

use crate::error::WalError;
use crate::frame::{chunk_len_bytes, encode_chunk_with};
use crate::segment::{prepare_fresh, segment_file_name, SegmentFile, Spare};
use crate::signal::{Latch, Signal};
use crate::wal::{Pending, Queue, Wal, Writer};

/// Why a batch failed, and whether the log's state on disk is now uncertain.
struct Failure {
    error: WalError,
    poison: bool,
}

impl Failure {
    fn storage(wal: &Wal, op: &'static str, e: mantis_storage::StorageError) -> Self {
        // ENOSPC writes fail whole (nothing reached the disk): the batch can be retried.
        // Anything else leaves the disk in an unknown state.
        let poison = !e.is_disk_full();
        Failure {
            error: WalError::storage(wal.shard, op, e),
            poison,
        }
    }
}

pub(crate) fn spawn_committer(wal: &Rc<Wal>) {
    let weak = Rc::downgrade(wal);
    let wake = wal.commit_wake.clone();
    let done = wal.committer_done.clone();
    glommio::spawn_local(committer_loop(weak, wake, done)).detach();
}

async fn committer_loop(weak: Weak<Wal>, wake: Rc<Signal>, done: Rc<Latch>) {
    loop {
        let Some(wal) = weak.upgrade() else { break };
        if wal.queue_is_empty() {
            if wal.closing.get() {
                break;
            }
            drop(wal);
            wake.wait().await;
            continue;
        }
        if !wal.sync_wanted() {
            // Only deferred records: they wait for company or for their deadline.
            drop(wal);
            wake.wait().await;
            continue;
        }
        wal.commit_batch().await;
        drop(wal);
        glommio::yield_if_needed().await;
    }
    done.set();
}

/// Moves blocked appenders into the pending batch, in order, while they fit.
fn admit(q: &mut Queue, pending_bytes_max: usize, checksum: mantis_integrity::Algorithm) {
    while let Some(front) = q.blocked.front() {
        let cost = front.cost_bytes(checksum);
        if !q.pending.is_empty() && q.pending_bytes + cost > pending_bytes_max {
            break;
        }
        let Some(p) = q.blocked.pop_front() else {
            break;
        };
        if Rc::strong_count(&p.slot) == 1 {
            q.urgent -= usize::from(!p.deferred);
            continue; // the appender is gone; it was never acknowledged
        }
        q.pending_bytes += cost;
        q.pending.push_back(p);
    }
}

impl Wal {
    pub(crate) fn queue_is_empty(&self) -> bool {
        let q = self.queue.borrow();
        q.pending.is_empty() && q.blocked.is_empty()
    }

    fn take_batch(&self) -> Vec<Pending> {
        let mut q = self.queue.borrow_mut();
        let max = self.cfg.pending_bytes_max;
        if q.pending.is_empty() {
            admit(&mut q, max, self.cfg.checksum);
        }
        let batch: Vec<Pending> = q.pending.drain(..).collect();
        q.pending_bytes = 0;
        let urgent_taken = batch.iter().filter(|p| !p.deferred).count();
        assert!(q.urgent >= urgent_taken, "urgent records miscounted");
        q.urgent -= urgent_taken;
        self.deferred_due.set(false);
        admit(&mut q, max, self.cfg.checksum);
        batch
    }

    pub(crate) fn set_poison(&self, cause: WalError) {
        let mut p = self.poison.borrow_mut();
        if p.is_none() {
            tracing::error!(shard = self.shard, error = %cause, "WAL poisoned");
            *p = Some(std::sync::Arc::new(cause));
        }
    }

    fn poisoned_error(&self) -> Option<WalError> {
        self.poison
            .borrow()
            .as_ref()
            .map(|cause| WalError::Poisoned {
                shard: self.shard,
                cause: cause.clone(),
            })
    }

    /// Fails everything queued (after poisoning).
    fn fail_queued(&self, error: &WalError) {
        let drained: Vec<Pending> = {
            let mut q = self.queue.borrow_mut();
            q.pending_bytes = 0;
            q.urgent = 0;
            let mut all: Vec<Pending> = q.pending.drain(..).collect();
            all.extend(q.blocked.drain(..));
            all
        };
        self.stats.borrow_mut().appends_failed += drained.len() as u64;
        for p in drained {
            p.slot.complete(Err(error.clone()));
        }
    }

    pub(crate) async fn commit_batch(&self) {
        let mut batch = self.take_batch();
        if batch.is_empty() {
            return;
        }
        if let Some(err) = self.poisoned_error() {
            self.stats.borrow_mut().appends_failed += batch.len() as u64;
            for p in batch {
                p.slot.complete(Err(err.clone()));
            }
            self.fail_queued(&err);
            return;
        }
        let first_lsn = self.next_lsn.get();
        match self.write_batch(&mut batch, first_lsn).await {
            Ok(()) => {
                let last_lsn = first_lsn + batch.len() as u64 - 1;
                assert_eq!(first_lsn, self.durable_lsn.get() + 1, "LSNs have no gaps");
                self.next_lsn.set(last_lsn + 1);
                self.durable_lsn.set(last_lsn);
                if let Some(gate) = self.archive_gate.borrow().as_ref() {
                    gate.set_durable(last_lsn);
                }
                for (i, p) in batch.into_iter().enumerate() {
                    let lsn = first_lsn + i as u64;
                    // The engine's apply hook: in LSN order, before any appender wakes.
                    if let Some(hook) = p.on_durable {
                        hook(lsn);
                    }
                    p.slot.complete(Ok(lsn));
                }
            }
            Err(Failure { error, poison }) => {
                {
                    let mut s = self.stats.borrow_mut();
                    s.appends_failed += batch.len() as u64;
                    s.disk_full_failures += u64::from(error.is_disk_full());
                }
                if poison {
                    self.set_poison(error.clone());
                }
                for p in batch {
                    p.slot.complete(Err(error.clone()));
                }
                if let Some(err) = self.poisoned_error() {
                    self.fail_queued(&err);
                }
            }
        }
    }

    /// Writes `batch` as one chunk (rolling to a new segment if it does not fit) and syncs.
    async fn write_batch(&self, batch: &mut [Pending], first_lsn: u64) -> Result<(), Failure> {
        let payload_len: usize = batch.iter().map(|p| p.cost_bytes(self.cfg.checksum)).sum();
        let chunk_len = chunk_len_bytes(payload_len) as u64;
        let fits = {
            let w = self.writer.borrow();
            w.pos + chunk_len <= w.segment.size_bytes
        };
        if !fits {
            self.roll(first_lsn, chunk_len).await?;
        }
        let (file, segment_first_lsn, pos, path) = {
            let w = self.writer.borrow();
            (
                w.file.clone(),
                w.segment.first_lsn,
                w.pos,
                w.segment.path.clone(),
            )
        };
        assert!(pos.is_multiple_of(mantis_storage::BLOCK_SIZE as u64));
        let chunk = {
            let records: Vec<(u8, &[u8])> = batch
                .iter()
                .map(|p| (p.kind, p.payload.as_slice()))
                .collect();
            encode_chunk_with(self.cfg.checksum, segment_first_lsn, first_lsn, &records)
        };
        assert_eq!(chunk.len() as u64, chunk_len);
        // The chunk holds the only copy we need: give the payload memory back now.
        let payload_bytes: u64 = batch.iter().map(|p| p.payload.len() as u64).sum();
        for p in batch.iter_mut() {
            p.payload = Vec::new();
        }
        file.write_at(pos, &chunk)
            .await
            .map_err(|e| Failure::storage(self, "write chunk", e))?;
        drop(chunk);
        let started = Instant::now();
        let synced = file.sync().await;
        let latency_us = started.elapsed().as_micros() as u64;
        {
            let mut s = self.stats.borrow_mut();
            s.syncs += 1;
            s.sync_latency_last_us = latency_us;
            s.sync_latency_max_us = s.sync_latency_max_us.max(latency_us);
            s.sync_latency_total_us += latency_us;
            s.sync_failures += u64::from(synced.is_err());
        }
        if let Err(e) = synced {
            // Never retried: after a failed fdatasync the kernel may have dropped the data
            // and a second sync can succeed without it (fsyncgate).
            return Err(Failure {
                error: WalError::SyncFailed {
                    shard: self.shard,
                    file: path,
                    first_lsn,
                    last_lsn: first_lsn + batch.len() as u64 - 1,
                    source: std::sync::Arc::new(e),
                },
                poison: true,
            });
        }
        self.writer.borrow_mut().pos = pos + chunk_len;
        let mut s = self.stats.borrow_mut();
        s.commits += 1;
        s.records_appended += batch.len() as u64;
        s.payload_bytes_appended += payload_bytes;
        s.bytes_written += chunk_len;
        Ok(())
    }

    /// Makes a prepared segment the writer's, named after the first LSN it will hold.
    async fn roll(&self, first_lsn: u64, chunk_len: u64) -> Result<(), Failure> {
        let min_size = chunk_len.max(self.cfg.segment_size_bytes);
        let spare = self.acquire_spare(min_size).await.map_err(|e| Failure {
            // Preparing a spare touches nothing live: never a reason to poison.
            poison: false,
            ..Failure::storage(self, "prepare segment", e)
        })?;
        let path = self.dir.join(segment_file_name(first_lsn));
        // The writer's segment has this very name only while it is still empty (a record
        // too big for it arrived first): the rename then replaces it, which loses nothing.
        let replaces_writer = {
            let w = self.writer.borrow();
            assert!(w.segment.first_lsn != first_lsn || w.pos == 0);
            w.segment.first_lsn == first_lsn
        };
        if let Err(e) = self.storage.rename(&spare.path, &path).await {
            if e.is_disk_full() {
                self.spares.borrow_mut().push(spare);
            }
            return Err(Failure::storage(self, "rename segment", e));
        }
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|e| Failure {
                poison: true,
                ..Failure::storage(self, "sync WAL directory", e)
            })?;
        let file = self
            .storage
            .open(&path, OpenMode::ReadWrite)
            .await
            .map_err(|e| Failure {
                poison: true,
                ..Failure::storage(self, "open segment", e)
            })?;
        let segment = SegmentFile {
            first_lsn,
            path,
            size_bytes: spare.size_bytes,
        };
        let old = std::mem::replace(
            &mut *self.writer.borrow_mut(),
            Writer {
                file,
                segment: segment.clone(),
                pos: 0,
            },
        );
        {
            let mut live = self.live.borrow_mut();
            if replaces_writer {
                live.pop_back();
            }
            live.push_back(segment);
        }
        if let Err(e) = old.file.close().await {
            tracing::warn!(shard = self.shard, error = %e, "closing the previous WAL segment failed");
        }
        self.stats.borrow_mut().segments_rolled += 1;
        tracing::debug!(shard = self.shard, first_lsn, "WAL rolled to a new segment");
        self.prepare_wake.notify();
        Ok(())
    }

    /// A spare of at least `min_size` bytes: a ready one, the one being prepared, or a new one
    /// prepared right here (the background preparer failed or fell behind).
    async fn acquire_spare(&self, min_size: u64) -> Result<Spare, mantis_storage::StorageError> {
        loop {
            if let Some(s) = self.take_spare(min_size) {
                return Ok(s);
            }
            if self.preparing.get() {
                self.prepare_idle.wait().await;
                continue;
            }
            self.preparing.set(true);
            let seq = self.take_seq();
            let r = prepare_fresh(&*self.storage, &self.dir, seq, min_size).await;
            self.preparing.set(false);
            self.prepare_idle.notify();
            let mut s = self.stats.borrow_mut();
            match &r {
                Ok(_) => s.segments_prepared += 1,
                Err(e) => {
                    s.segment_prepare_failures += 1;
                    tracing::warn!(shard = self.shard, error = %e, "preparing a WAL segment failed");
                }
            }
            return r;
        }
    }

    /// Takes the smallest spare of at least `min_size` bytes.
    fn take_spare(&self, min_size: u64) -> Option<Spare> {
        let mut spares = self.spares.borrow_mut();
        let i = spares
            .iter()
            .enumerate()
            .filter(|(_, s)| s.size_bytes >= min_size)
            .min_by_key(|(_, s)| s.size_bytes)?
            .0;
        Some(spares.swap_remove(i))
    }

    pub(crate) fn take_seq(&self) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        seq
    }
}
