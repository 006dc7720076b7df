//! The shard's background work: flushing frozen memtables into segments and compacting
//! segments. It runs in its own glommio task queue with fewer shares than the foreground, so
//! it cannot push request latency up; long loops yield.
//!
//! What to compact is decided by `crate::compaction::choose`; this module only does it.
//!
//! Durability order of a flush: segment written and fdatasync'ed → segment directory synced →
//! manifest record (segment added, flushed LSN advanced) synced → only then may the WAL recycle
//! what the segment now holds. A crash anywhere before the manifest commit leaves an orphan
//! file (removed at the next open) and the WAL still holding every record.

use std::rc::Rc;
use std::time::Duration;

use glommio::{Latency, Shares};
use mantis_table::{Codec, Entry, EntryKind, Segment, SegmentWriter, WriterOptions};

use super::read::{Merger, ScanRange};
use super::{LiveSegment, MemRef, Shard};
use crate::compaction::{self, CompactionPlan};
use crate::error::{EngineError, Result};
use crate::event::now_ms;
use crate::manifest::SegmentRef;

/// Foreground work runs with the default 1000 shares; maintenance gets a tenth of that.
const MAINTENANCE_SHARES: usize = 100;
/// How often the workers look for work when nobody woke them (expiry-driven compaction,
/// deleting segments that readers released).
const MAINTENANCE_TICK: Duration = Duration::from_millis(500);

pub(crate) fn start(shard: &Rc<Shard>) -> Result<()> {
    let tq = glommio::executor().create_task_queue(
        Shares::Static(MAINTENANCE_SHARES),
        Latency::NotImportant,
        &format!("maintenance-{}", shard.id),
    );
    let flusher = shard.clone();
    glommio::spawn_local_into(async move { flusher.flush_loop().await }, tq)
        .map_err(|e| EngineError::Startup {
            shard: shard.id,
            reason: format!("spawn flusher: {e}"),
        })?
        .detach();
    let compactor = shard.clone();
    glommio::spawn_local_into(async move { compactor.compact_loop().await }, tq)
        .map_err(|e| EngineError::Startup {
            shard: shard.id,
            reason: format!("spawn compactor: {e}"),
        })?
        .detach();
    Ok(())
}

impl Shard {
    async fn idle(&self) {
        let wake = self.maintenance_wake.wait();
        let tick = glommio::timer::sleep(MAINTENANCE_TICK);
        futures_lite::future::or(wake, tick).await;
    }

    async fn flush_loop(self: Rc<Self>) {
        while !self.closing.get() {
            if let Err(e) = self.flush_frozen().await {
                tracing::warn!(shard = self.id, error = %e, "flush failed; will retry");
                self.note_background_error(&e);
            }
            self.idle().await;
        }
    }

    async fn compact_loop(self: Rc<Self>) {
        while !self.closing.get() {
            if let Err(e) = self.compact(false).await {
                tracing::warn!(shard = self.id, error = %e, "compaction failed; will retry");
                self.note_background_error(&e);
            }
            self.bury_released().await;
            self.idle().await;
        }
    }

    fn note_background_error(&self, e: &EngineError) {
        if e.is_disk_full() {
            self.disk_full.set(true);
            self.changed.notify_all();
        }
        if let EngineError::Storage {
            source: mantis_storage::StorageError::SyncFailed { .. },
            ..
        } = e
        {
            self.read_only
                .borrow_mut()
                .get_or_insert_with(|| e.to_string());
            self.changed.notify_all();
        }
    }

    /// Freezes the active memtable and flushes every frozen one (explicit flush, shutdown).
    pub async fn flush_all(self: &Rc<Self>) -> Result<()> {
        {
            let mut st = self.state.borrow_mut();
            self.freeze_locked(&mut st);
        }
        self.flush_frozen().await
    }

    /// Flushes frozen memtables, oldest first, until none is left.
    async fn flush_frozen(self: &Rc<Self>) -> Result<()> {
        let _permit = self
            .manifest_lock
            .acquire_permit(1)
            .await
            .map_err(|e| EngineError::Invalid(format!("manifest lock: {e}")))?;
        loop {
            let oldest: Option<MemRef> = self.state.borrow().frozen.last().cloned();
            let Some(mem) = oldest else { return Ok(()) };
            self.flush_one(&mem).await?;
            // The retired memtable's allocations and the filter construction are free now.
            crate::heap::release_free_heap(self.id);
        }
    }

    /// Writes one frozen memtable as a segment and commits it. Caller holds the manifest lock.
    async fn flush_one(self: &Rc<Self>, mem: &MemRef) -> Result<()> {
        let id = self.reserve_segment_id();
        let path = self.segment_path(id);
        let lsn_max = mem.borrow().lsn_max();
        let opts = self.writer_options(self.cfg.compression);
        let mut writer = SegmentWriter::create(&self.storage, &path, opts)
            .await
            .map_err(|e| EngineError::table(self.id, e))?;
        // The frozen memtable is never mutated again, so iterating it across awaits is sound;
        // entries are cloned one at a time to keep memory flat.
        let mut cursor: Option<Vec<u8>> = None;
        let mut pacer = mantis_storage::rt::BackgroundPacer::new();
        loop {
            let next: Option<Entry> = {
                let m = mem.borrow();
                let start = match &cursor {
                    Some(k) => std::ops::Bound::Excluded(k.as_slice()),
                    None => std::ops::Bound::Unbounded,
                };
                m.next_in_range(start, std::ops::Bound::Unbounded)
                    .map(|(k, v)| Entry {
                        key: k.to_vec(),
                        lsn: v.lsn,
                        kind: v.kind.clone(),
                    })
            };
            let Some(e) = next else { break };
            writer
                .add(&e)
                .await
                .map_err(|e| EngineError::table(self.id, e))?;
            cursor = Some(e.key);
            pacer.step().await;
        }
        let live = self.seal_segment(writer, id, lsn_max).await?;
        let r = live.r.clone();
        let mut next_state = self.state.borrow().manifest.clone();
        next_state.next_segment_id = next_state.next_segment_id.max(id + 1);
        // Issue 9: not past a WAL record a two-phase-commit resolution still needs.
        next_state.flushed_lsn = next_state.flushed_lsn.max(self.tpc.pins.flush_cap(lsn_max));
        let flushed_lsn = next_state.flushed_lsn;
        next_state.segments.insert(0, r.clone());
        self.manifest
            .commit(&next_state)
            .await
            .map_err(|e| self.manifest_failure(e))?;
        {
            let mut st = self.state.borrow_mut();
            install_manifest(&mut st.manifest, next_state);
            st.segments.insert(0, live);
            // The flushed memtable is the oldest frozen one (only this task removes them).
            let popped = st.frozen.pop();
            assert!(
                popped.is_some_and(|p| Rc::ptr_eq(&p, mem)),
                "flushed memtable was not the oldest frozen one"
            );
        }
        self.tpc.pins.flushed(lsn_max);
        self.wal.mark_flushed(flushed_lsn);
        self.counters.flushes.set(self.counters.flushes.get() + 1);
        self.disk_full.set(false);
        self.changed.notify_all();
        self.maintenance_wake.notify_all();
        Ok(())
    }

    /// Finishes a segment file and makes it readable: the writer syncs the file, then the
    /// directory is synced so the name is durable too, before any manifest record names it.
    async fn seal_segment(
        &self,
        writer: SegmentWriter,
        id: u64,
        lsn_max: u64,
    ) -> Result<Rc<LiveSegment>> {
        let meta = writer
            .finish()
            .await
            .map_err(|e| EngineError::table(self.id, e))?;
        self.storage
            .sync_dir(&self.seg_dir())
            .await
            .map_err(|e| EngineError::storage(self.id, e))?;
        let path = self.segment_path(id);
        let seg = Segment::open(&self.storage, &path, id, self.cache.clone())
            .await
            .map_err(|e| EngineError::table(self.id, e))?;
        Ok(Rc::new(LiveSegment {
            r: SegmentRef {
                id,
                size_bytes: meta.file_size_bytes,
                entries: meta.properties.entry_count,
                lsn_max,
            },
            seg,
        }))
    }

    /// Takes the next segment id. The flusher and the compactor run side by side, so the id is
    /// taken from the in-memory state at once; the manifest records the advance with the
    /// commit that adds the file (an id reserved by a crashed flush is simply never used).
    fn reserve_segment_id(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        let id = st.manifest.next_segment_id;
        st.manifest.next_segment_id += 1;
        id
    }

    /// A failed manifest commit after a sync failure makes the shard read-only, like the WAL.
    fn manifest_failure(&self, e: EngineError) -> EngineError {
        self.note_background_error(&e);
        e
    }

    /// Writes with the hot codec follow the per-keyspace table; a cold rewrite (any other
    /// codec) applies its codec to every block.
    fn writer_options(&self, codec: Codec) -> WriterOptions {
        let keyspace_codecs = if codec == self.cfg.compression {
            self.cfg.keyspace_codecs.clone()
        } else {
            Vec::new()
        };
        WriterOptions {
            codec,
            keyspace_codecs,
            checksum: self.cfg.block_checksum,
            ..WriterOptions::default()
        }
    }

    /// Merges every segment into one (explicit request).
    pub async fn compact_all(self: &Rc<Self>) -> Result<()> {
        self.compact(true).await
    }

    /// Chooses (all segments when `full`, else what the strategy picks) and merges one run.
    async fn compact(self: &Rc<Self>, full: bool) -> Result<()> {
        // The choice is made under the lock: a plan made before another compaction finished
        // could name a run that no longer reaches the oldest segment, and then drop
        // tombstones that still hide older values.
        let _permit = self
            .compaction_lock
            .acquire_permit(1)
            .await
            .map_err(|e| EngineError::Invalid(format!("compaction lock: {e}")))?;
        let plan = {
            let st = self.state.borrow();
            let refs: Vec<SegmentRef> = st.segments.iter().map(|s| s.r.clone()).collect();
            if full {
                compaction::choose_full(&refs)
            } else {
                compaction::choose(&refs, self.cfg.segments_max)
            }
        };
        let Some(plan) = plan else { return Ok(()) };
        // Compaction writes the hot codec: data merged because it is being written is hot.
        self.merge(plan, self.cfg.compression).await
    }

    /// Merges `plan`'s run into one segment written with `codec` (cold recompression uses
    /// it with a run of one).
    pub(crate) async fn merge(self: &Rc<Self>, plan: CompactionPlan, codec: Codec) -> Result<()> {
        let inputs: Vec<Rc<LiveSegment>> = {
            let st = self.state.borrow();
            st.segments[plan.start..plan.start + plan.count].to_vec()
        };
        let id = self.reserve_segment_id();
        let path = self.segment_path(id);
        let mut merger = Merger::over_segments(self.id, &inputs, &ScanRange::all());
        let mut writer: Option<SegmentWriter> = None;
        let now = now_ms();
        let lsn_max = inputs.iter().map(|s| s.r.lsn_max).max().unwrap_or(0);
        let mut pacer = mantis_storage::rt::BackgroundPacer::new();
        while let Some(entry) = merger.next().await? {
            let kind = match entry.kind {
                EntryKind::Delete if plan.drop_tombstones => continue,
                EntryKind::Put {
                    expires_at_ms: Some(t),
                    ..
                } if t <= now => {
                    if plan.drop_tombstones {
                        continue;
                    }
                    EntryKind::Delete
                }
                k => k,
            };
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(
                    SegmentWriter::create(&self.storage, &path, self.writer_options(codec))
                        .await
                        .map_err(|e| EngineError::table(self.id, e))?,
                ),
            };
            w.add(&Entry {
                key: entry.key,
                lsn: entry.lsn,
                kind,
            })
            .await
            .map_err(|e| EngineError::table(self.id, e))?;
            // Issue 7: a step of at most rt::BACKGROUND_STEP_MAX, then the foreground goes.
            pacer.step().await;
        }
        let output = match writer {
            Some(w) => {
                let live = self.seal_segment(w, id, lsn_max).await?;
                self.counters
                    .compaction_bytes_written
                    .set(self.counters.compaction_bytes_written.get() + live.r.size_bytes);
                Some(live)
            }
            None => None,
        };
        let committed = self.commit_compaction(&inputs, output).await;
        // The inputs' indexes and filters go with the last reference (readers may still hold
        // some; bury_released deletes their files later).
        drop(inputs);
        committed?;
        crate::heap::release_free_heap(self.id);
        Ok(())
    }

    /// Replaces the input run by the output in the manifest and in memory. Flushes may have
    /// added newer segments in front meanwhile; the run itself is still contiguous because
    /// only this task removes segments.
    async fn commit_compaction(
        self: &Rc<Self>,
        inputs: &[Rc<LiveSegment>],
        output: Option<Rc<LiveSegment>>,
    ) -> Result<()> {
        let _permit = self
            .manifest_lock
            .acquire_permit(1)
            .await
            .map_err(|e| EngineError::Invalid(format!("manifest lock: {e}")))?;
        let (next_state, start) = {
            let st = self.state.borrow();
            let start = st
                .segments
                .iter()
                .position(|s| s.r.id == inputs[0].r.id)
                .ok_or_else(|| EngineError::Invalid("compaction input vanished".into()))?;
            for (i, input) in inputs.iter().enumerate() {
                assert_eq!(
                    st.segments[start + i].r.id,
                    input.r.id,
                    "compaction run is not contiguous"
                );
            }
            let mut next = st.manifest.clone();
            let replacement: Vec<SegmentRef> = output.iter().map(|o| o.r.clone()).collect();
            next.segments
                .splice(start..start + inputs.len(), replacement);
            next.next_segment_id = next.next_segment_id.max(st.manifest.next_segment_id);
            (next, start)
        };
        self.manifest
            .commit(&next_state)
            .await
            .map_err(|e| self.manifest_failure(e))?;
        let mut st = self.state.borrow_mut();
        install_manifest(&mut st.manifest, next_state);
        let removed: Vec<Rc<LiveSegment>> = st
            .segments
            .splice(start..start + inputs.len(), output)
            .collect();
        st.graveyard.extend(removed);
        drop(st);
        self.counters
            .compactions
            .set(self.counters.compactions.get() + 1);
        self.disk_full.set(false);
        self.changed.notify_all();
        Ok(())
    }

    /// Deletes replaced segment files once no reader holds them any more.
    async fn bury_released(self: &Rc<Self>) {
        let released: Vec<Rc<LiveSegment>> = {
            let mut st = self.state.borrow_mut();
            let (free, held): (Vec<_>, Vec<_>) = st
                .graveyard
                .drain(..)
                .partition(|s| Rc::strong_count(s) == 1 && Rc::strong_count(&s.seg) == 1);
            st.graveyard = held;
            free
        };
        for s in released {
            self.cache.remove_segment(s.r.id);
            let path = self.segment_path(s.r.id);
            if let Err(e) = self.storage.remove(&path).await {
                tracing::warn!(shard = self.id, file = %path.display(), error = %e, "could not remove compacted segment");
            }
        }
    }
}

/// Installs a committed manifest state in memory without moving `next_segment_id` back.
///
/// Story (2026-11-28, issue-7 bench): "flush failed; open failed … seg/…05.seg: File exists".
/// A flush cloned the state, and while its manifest commit was in flight the compactor
/// reserved the next segment id in memory; installing the flush's clone then set the counter
/// back, and the next reservation handed out the id the compactor was still writing. The
/// durable counter may lag (a reserved id that never reached a commit is never referenced),
/// but the in-memory one must never go back.
fn install_manifest(
    current: &mut crate::manifest::ManifestState,
    mut next: crate::manifest::ManifestState,
) {
    next.next_segment_id = next.next_segment_id.max(current.next_segment_id);
    *current = next;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_a_committed_state_never_moves_the_segment_counter_back() {
        let mut current = crate::manifest::ManifestState {
            next_segment_id: 7,
            ..Default::default()
        };
        let committed = crate::manifest::ManifestState {
            next_segment_id: 5,
            flushed_lsn: 40,
            ..Default::default()
        };
        install_manifest(&mut current, committed);
        assert_eq!((current.next_segment_id, current.flushed_lsn), (7, 40));
    }
}
