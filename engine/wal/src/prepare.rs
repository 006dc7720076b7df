//! The preparer task: keeps the next segment ready (so a roll-over is a rename, not 64 MiB
//! of zero-filling in the commit path) and recycles segments whose records are flushed.
//! Failures here never touch the live log: they are logged and counted, and the committer
//! retries the preparation itself at the next roll.

use std::rc::{Rc, Weak};

use crate::segment::{prepare_fresh, temp_file_name, SegmentFile};
use crate::signal::{Latch, Signal};
use crate::wal::Wal;

pub(crate) fn spawn_preparer(wal: &Rc<Wal>) {
    let weak = Rc::downgrade(wal);
    let wake = wal.prepare_wake.clone();
    let done = wal.preparer_done.clone();
    glommio::spawn_local(preparer_loop(weak, wake, done)).detach();
}

async fn preparer_loop(weak: Weak<Wal>, wake: Rc<Signal>, done: Rc<Latch>) {
    loop {
        wake.wait().await;
        let Some(wal) = weak.upgrade() else { break };
        if wal.closing.get() {
            break;
        }
        // When the committer prepares a segment itself it wakes us after its roll.
        if !wal.preparing.get() {
            wal.preparing.set(true);
            wal.recycle_flushed().await;
            wal.prepare_next().await;
            wal.preparing.set(false);
            wal.prepare_idle.notify();
        }
    }
    done.set();
}

impl Wal {
    /// Recycles (or removes) the oldest segments while all their records are flushed.
    async fn recycle_flushed(&self) {
        while let Some(seg) = self.recyclable() {
            if self.closing.get() {
                return;
            }
            let keep = seg.size_bytes == self.cfg.segment_size_bytes
                && self.spares.borrow().len() < self.cfg.spare_segments_max;
            let r = if keep {
                self.recycle_one(&seg).await
            } else {
                self.remove_one(&seg).await
            };
            if let Err(e) = r {
                self.stats.borrow_mut().segment_prepare_failures += 1;
                tracing::warn!(shard = self.shard, file = %seg.path.display(), error = %e, "recycling a WAL segment failed");
                return;
            }
        }
    }

    fn forget_oldest(&self, seg: &SegmentFile) {
        let mut live = self.live.borrow_mut();
        assert_eq!(
            live.front(),
            Some(seg),
            "only the oldest segment leaves the log"
        );
        assert!(live.len() >= 2, "the writer's segment stays");
        live.pop_front();
    }

    async fn remove_one(&self, seg: &SegmentFile) -> Result<(), mantis_storage::StorageError> {
        self.storage.remove(&seg.path).await?;
        self.forget_oldest(seg);
        self.stats.borrow_mut().segments_removed += 1;
        self.storage.sync_dir(&self.dir).await
    }

    async fn recycle_one(&self, seg: &SegmentFile) -> Result<(), mantis_storage::StorageError> {
        let seq = self.take_seq();
        let tmp = self.dir.join(temp_file_name(seq));
        // Out of the log first (durably), then zeroed: a crash can never leave a zeroed
        // file under a live name, which would read as records missing from the log.
        self.storage.rename(&seg.path, &tmp).await?;
        self.forget_oldest(seg);
        let zeroed = async {
            self.storage.sync_dir(&self.dir).await?;
            crate::segment::zero_into_spare(&*self.storage, &self.dir, &tmp, seq, seg.size_bytes)
                .await
        }
        .await;
        match zeroed {
            Ok(spare) => {
                self.spares.borrow_mut().push(spare);
                self.stats.borrow_mut().segments_recycled += 1;
                Ok(())
            }
            Err(e) => {
                let _ = self.storage.remove(&tmp).await;
                Err(e)
            }
        }
    }

    /// Makes sure one spare is ready for the next roll.
    async fn prepare_next(&self) {
        if !self.spares.borrow().is_empty() || self.closing.get() {
            return;
        }
        let seq = self.take_seq();
        match prepare_fresh(&*self.storage, &self.dir, seq, self.cfg.segment_size_bytes).await {
            Ok(spare) => {
                self.spares.borrow_mut().push(spare);
                self.stats.borrow_mut().segments_prepared += 1;
            }
            Err(e) => {
                self.stats.borrow_mut().segment_prepare_failures += 1;
                tracing::warn!(shard = self.shard, error = %e, "preparing the next WAL segment failed; will retry at the next roll");
            }
        }
    }
}
