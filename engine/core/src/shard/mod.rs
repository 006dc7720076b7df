//! One shard: the data of every key that hashes to it, owned by one executor thread.
//!
//! Everything here is single-threaded: `Rc`, `Cell`, `RefCell`, no locks. The parts:
//! - `mod.rs`: the state, opening (recovery) and statistics;
//! - `write.rs`: the write path (validation, WAL group commit, in-order apply to the memtable);
//! - `read.rs`: point reads and merged range scans over memtables and segments;
//! - `maintenance.rs`: the background flusher and compactor.

mod maintenance;
mod read;
pub mod write;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_storage::format::{SEGMENT_DIR, SEGMENT_FILE_SUFFIX, WAL_DIR};
use mantis_storage::Storage;
use mantis_table::{BlockCache, EntryKind, Segment};
use mantis_wal::{Wal, WalConfig, WalRecord};

use crate::config::EngineConfig;
use crate::error::{EngineError, Result};
use crate::event::Event;
use crate::manifest::{Manifest, ManifestState, SegmentRef};
use crate::memtable::Memtable;
use crate::record;

pub use read::ScanRange;
pub use read::ScanVisitor;

/// A memtable shared between the shard state and readers that are mid-scan. The active one is
/// mutated; once frozen it never changes again.
pub(crate) type MemRef = Rc<RefCell<Memtable>>;

/// A live segment with the manifest's record of it.
pub(crate) struct LiveSegment {
    pub r: SegmentRef,
    pub seg: Rc<Segment>,
}

pub(crate) struct State {
    pub active: MemRef,
    /// Frozen memtables waiting for their flush, newest first.
    pub frozen: Vec<MemRef>,
    /// Newest first.
    pub segments: Vec<Rc<LiveSegment>>,
    pub manifest: ManifestState,
    /// Segments replaced by a compaction, deleted once no reader holds them.
    pub graveyard: Vec<Rc<LiveSegment>>,
}

/// Monotonic counters, exported through [`ShardStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub flushes: Cell<u64>,
    pub compactions: Cell<u64>,
    pub compaction_bytes_written: Cell<u64>,
    pub writes: Cell<u64>,
    pub reads: Cell<u64>,
    pub write_errors: Cell<u64>,
    pub disk_full_errors: Cell<u64>,
    pub corruption_errors: Cell<u64>,
    pub torn_tail_bytes: Cell<u64>,
    pub recovered_records: Cell<u64>,
}

/// A snapshot of one shard's state and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: usize,
    pub live_keys_estimate: u64,
    pub memtable_bytes: u64,
    pub memtables_frozen: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub wal_records: u64,
    pub wal_bytes_written: u64,
    pub wal_syncs: u64,
    pub wal_sync_latency_us_max: u64,
    pub flushes: u64,
    pub compactions: u64,
    pub compaction_bytes_written: u64,
    pub writes: u64,
    pub reads: u64,
    pub write_errors: u64,
    pub disk_full_errors: u64,
    pub corruption_errors: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub torn_tail_bytes: u64,
    pub recovered_records: u64,
    pub last_lsn: u64,
    pub flushed_lsn: u64,
    pub read_only: bool,
    pub disk_full: bool,
    /// Integrity: scrubber progress, corruption events (any → health degraded).
    pub scrub: crate::scrub::ScrubStats,
    pub corruption_events: u64,
    /// `corruption_events` by component, indexed by `scrub::Site::index`.
    pub corruption_events_by_site: [u64; crate::scrub::Site::COUNT],
    pub last_corruption: Option<crate::scrub::CorruptionEvent>,
    /// Bytes by codec, cold fraction, recompression work.
    pub compression: crate::cold::CompressionStats,
    /// Issue 9: two-phase commit as a participant.
    pub twopc: crate::twopc::TpcStats,
}

pub(crate) struct Shard {
    pub id: usize,
    pub dir: PathBuf,
    pub storage: Rc<dyn Storage>,
    pub cfg: EngineConfig,
    pub wal: Rc<Wal>,
    pub cache: Rc<BlockCache>,
    pub manifest: Manifest,
    pub state: RefCell<State>,
    pub counters: Counters,
    /// Set for good after an fdatasync failure (fsyncgate: never retry and trust).
    pub read_only: RefCell<Option<String>>,
    /// The last flush or compaction failed for lack of space.
    pub disk_full: Cell<bool>,
    /// Keys whose read-modify-write is in progress: plain writes to them wait.
    pub rmw_keys: RefCell<HashSet<Vec<u8>>>,
    /// Writes accepted but not yet applied (or failed), per key.
    pub inflight: RefCell<HashMap<Vec<u8>, usize>>,
    pub inflight_total: Cell<usize>,
    /// Notified when a write finishes, a memtable is flushed, or the shard starts closing.
    pub changed: Event,
    /// Wakes the maintenance workers.
    pub maintenance_wake: Event,
    /// Serializes manifest edits between the flusher and the compactor.
    pub manifest_lock: glommio::sync::Semaphore,
    /// One compaction at a time: the background compactor and an explicit request would
    /// otherwise pick overlapping runs.
    pub compaction_lock: glommio::sync::Semaphore,
    pub closing: Cell<bool>,
    pub integrity: crate::scrub::scrubber::ShardIntegrity,
    pub cold: crate::cold::ShardCold,
    /// Issue 9: two-phase-commit state (prepared txns, WAL pins, txn ids).
    pub tpc: crate::twopc::ShardTpc,
}

impl Shard {
    pub fn seg_dir(&self) -> PathBuf {
        self.dir.join(SEGMENT_DIR)
    }

    pub fn segment_path(&self, id: u64) -> PathBuf {
        segment_path(&self.dir, id)
    }

    /// Opens (recovers) shard `id` in `dir`: manifest, then segments, then WAL replay past the
    /// last flushed LSN.
    pub async fn open(
        id: usize,
        dir: PathBuf,
        storage: Rc<dyn Storage>,
        cfg: EngineConfig,
    ) -> Result<Rc<Shard>> {
        let st = |e| EngineError::storage(id, e);
        storage.create_dir_all(&dir).await.map_err(st)?;
        storage
            .create_dir_all(&dir.join(SEGMENT_DIR))
            .await
            .map_err(st)?;
        storage
            .create_dir_all(&dir.join(WAL_DIR))
            .await
            .map_err(st)?;

        let (manifest, mstate) = Manifest::open(storage.clone(), &dir, id).await?;
        let cache = Rc::new(BlockCache::new(cfg.block_cache_bytes, cfg.cache_policy));
        let segments = open_segments(id, &dir, &storage, &cache, &mstate).await?;

        let mut active = Memtable::new();
        let frozen: Vec<MemRef> = Vec::new();
        let mut replay_error: Option<EngineError> = None;
        let mut txn_replay = crate::twopc::recovery::TxnReplay::default();
        let wal_cfg = WalConfig {
            segment_size_bytes: cfg.wal_segment_bytes,
            repair: cfg.repair_wal,
            checksum: cfg.wal_checksum,
            ..WalConfig::default()
        };
        let (wal, report) = Wal::open(
            storage.clone(),
            dir.join(WAL_DIR),
            id,
            wal_cfg,
            mstate.flushed_lsn,
            |rec: WalRecord| {
                if let Err(e) = replay_record(id, &mut active, &mut txn_replay, &rec) {
                    replay_error.get_or_insert(EngineError::Invalid(format!(
                        "shard {id}: WAL record at LSN {}: {e}",
                        rec.lsn
                    )));
                }
                Ok(())
            },
        )
        .await
        .map_err(|e| EngineError::Wal {
            shard: id,
            source: e,
        })?;
        if let Some(e) = replay_error {
            return Err(e);
        }
        remove_orphan_segments(id, &dir, &storage, &mstate).await?;
        tracing::info!(
            shard = id,
            segments = segments.len(),
            flushed_lsn = mstate.flushed_lsn,
            replayed = report.records_replayed,
            torn_tail_bytes = report.torn_tail_bytes,
            "shard recovered"
        );
        let counters = Counters::default();
        counters.torn_tail_bytes.set(report.torn_tail_bytes);
        counters.recovered_records.set(report.records_replayed);
        let shard = Rc::new(Shard {
            id,
            dir,
            storage,
            cfg,
            wal,
            cache,
            manifest,
            state: RefCell::new(State {
                active: Rc::new(RefCell::new(active)),
                frozen,
                segments,
                manifest: mstate,
                graveyard: Vec::new(),
            }),
            counters,
            read_only: RefCell::new(None),
            disk_full: Cell::new(false),
            rmw_keys: RefCell::new(HashSet::new()),
            inflight: RefCell::new(HashMap::new()),
            inflight_total: Cell::new(0),
            changed: Event::default(),
            maintenance_wake: Event::default(),
            manifest_lock: glommio::sync::Semaphore::new(1),
            compaction_lock: glommio::sync::Semaphore::new(1),
            closing: Cell::new(false),
            integrity: Default::default(),
            cold: Default::default(),
            tpc: Default::default(),
        });
        txn_replay.finish(&shard.tpc);
        shard.maybe_freeze();
        maintenance::start(&shard)?;
        crate::scrub::scrubber::start(&shard)?;
        crate::cold::start(&shard)?;
        Ok(shard)
    }

    pub fn stats(&self) -> ShardStats {
        let st = self.state.borrow();
        let wal = self.wal.stats();
        let cache = self.cache.stats();
        let memtable_bytes = st.active.borrow().size_bytes() as u64
            + st.frozen
                .iter()
                .map(|m| m.borrow().size_bytes() as u64)
                .sum::<u64>();
        let mem_keys = st.active.borrow().len() as u64
            + st.frozen
                .iter()
                .map(|m| m.borrow().len() as u64)
                .sum::<u64>();
        let c = &self.counters;
        ShardStats {
            shard: self.id,
            live_keys_estimate: mem_keys + st.segments.iter().map(|s| s.r.entries).sum::<u64>(),
            memtable_bytes,
            memtables_frozen: st.frozen.len() as u64,
            segments: st.segments.len() as u64,
            segment_bytes: st.segments.iter().map(|s| s.r.size_bytes).sum(),
            wal_records: wal.records_appended,
            wal_bytes_written: wal.bytes_written,
            wal_syncs: wal.syncs,
            wal_sync_latency_us_max: wal.sync_latency_max_us,
            flushes: c.flushes.get(),
            compactions: c.compactions.get(),
            compaction_bytes_written: c.compaction_bytes_written.get(),
            writes: c.writes.get(),
            reads: c.reads.get(),
            write_errors: c.write_errors.get(),
            disk_full_errors: c.disk_full_errors.get(),
            corruption_errors: c.corruption_errors.get(),
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_bytes: cache.used_bytes as u64,
            torn_tail_bytes: c.torn_tail_bytes.get(),
            recovered_records: c.recovered_records.get(),
            last_lsn: self.wal.last_durable_lsn(),
            flushed_lsn: st.manifest.flushed_lsn,
            read_only: self.read_only.borrow().is_some(),
            disk_full: self.disk_full.get(),
            scrub: self.integrity.stats.borrow().clone(),
            corruption_events: self.integrity.corruption_events.get(),
            corruption_events_by_site: *self.integrity.events_by_site.borrow(),
            last_corruption: self.integrity.last_event.borrow().clone(),
            compression: crate::cold::stats(self),
            twopc: self.tpc.stats(),
        }
    }

    /// Stops the shard: refuses new writes, waits for the accepted ones, flushes every
    /// memtable and closes the WAL.
    pub async fn shutdown(self: &Rc<Self>) -> Result<()> {
        self.closing.set(true);
        self.changed.notify_all();
        while self.inflight_total.get() > 0 {
            self.changed.wait().await;
        }
        let flushed = if self.read_only.borrow().is_none() {
            self.flush_all().await
        } else {
            Ok(())
        };
        self.maintenance_wake.notify_all();
        let closed = self.wal.close().await.map_err(|e| EngineError::Wal {
            shard: self.id,
            source: e,
        });
        flushed.and(closed)
    }
}

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(SEGMENT_DIR)
        .join(format!("{id:016}{SEGMENT_FILE_SUFFIX}"))
}

fn replay_record(
    id: usize,
    active: &mut Memtable,
    txns: &mut crate::twopc::recovery::TxnReplay,
    rec: &WalRecord,
) -> std::result::Result<(), String> {
    if crate::twopc::record::is_txn_kind(rec.kind) {
        return txns.replay(id, active, rec);
    }
    let batch = match record::decode_batch_kind(rec.kind, &rec.payload) {
        Some(decoded) => decoded.map_err(|e| e.to_string())?,
        None => return Err(format!("unknown record kind {}", rec.kind)),
    };
    for m in batch {
        let (key, kind) = write::mutation_to_entry(m);
        active.insert(key, rec.lsn, kind);
    }
    Ok(())
}

/// Opens the segments the manifest lists. A missing or unreadable one fails the open.
async fn open_segments(
    id: usize,
    dir: &Path,
    storage: &Rc<dyn Storage>,
    cache: &Rc<BlockCache>,
    mstate: &ManifestState,
) -> Result<Vec<Rc<LiveSegment>>> {
    let mut out = Vec::with_capacity(mstate.segments.len());
    for r in &mstate.segments {
        let path = segment_path(dir, r.id);
        let seg = Segment::open(storage, &path, r.id, cache.clone())
            .await
            .map_err(|e| EngineError::table(id, e))?;
        out.push(Rc::new(LiveSegment { r: r.clone(), seg }));
    }
    Ok(out)
}

/// Removes segment files the manifest does not list: leftovers of a flush or compaction that
/// crashed before its manifest commit, or of a compaction whose deletions did not finish.
///
/// Runs only after the manifest's segments opened and the WAL replayed without a gap: if the
/// manifest state were older than the truth (a damaged record), the WAL check refuses the
/// start, and the files this would delete may be the only copy of committed data. Deleting
/// first (as the first version did) turned a refused start into lost data.
async fn remove_orphan_segments(
    id: usize,
    dir: &Path,
    storage: &Rc<dyn Storage>,
    mstate: &ManifestState,
) -> Result<()> {
    let seg_dir = dir.join(SEGMENT_DIR);
    let live: HashSet<PathBuf> = mstate
        .segments
        .iter()
        .map(|s| segment_path(dir, s.id))
        .collect();
    let names = storage
        .list(&seg_dir)
        .await
        .map_err(|e| EngineError::storage(id, e))?;
    for name in names {
        let path = seg_dir.join(&name);
        if !live.contains(&path) {
            tracing::info!(shard = id, file = %path.display(), "removing file not in the manifest");
            storage
                .remove(&path)
                .await
                .map_err(|e| EngineError::storage(id, e))?;
        }
    }
    Ok(())
}

/// Whether a stored entry is visible at `now_ms`.
pub(crate) fn live_value(kind: &EntryKind, now_ms: u64) -> Option<(&Vec<u8>, Option<u64>)> {
    match kind {
        EntryKind::Put {
            value,
            expires_at_ms,
        } => match expires_at_ms {
            Some(t) if *t <= now_ms => None,
            _ => Some((value, *expires_at_ms)),
        },
        EntryKind::Delete => None,
    }
}
