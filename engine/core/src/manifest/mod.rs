//! The manifest: the single source of truth for which segment files are live and how far the
//! WAL has been flushed into them.
//!
//! It is a log of *full-state* records (the state is a few dozen segment references, so a full
//! snapshot per edit is cheap and makes recovery trivial: the valid record with the highest
//! sequence number wins). Each record starts on a fresh 4 KiB block, so appending never
//! rewrites a block that holds an acknowledged record (a torn rewrite could destroy it).
//! When a file grows past `MANIFEST_FILE_BYTES_MAX` the state is written to a new generation
//! file, synced, the directory synced, and only then the old file removed; at open the highest
//! generation holding a valid record wins, so a crash at any point leaves a usable manifest.
//! Layout: docs/formats.md, "Manifest".

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_storage::format::{MANIFEST_FORMAT_VERSION, MANIFEST_PREFIX, MANIFEST_RECORD_MAGIC};
use mantis_storage::{align_up, File, OpenMode, Storage, BLOCK_SIZE};

use crate::error::{EngineError, Result};

/// Start a new manifest generation past this size.
pub const MANIFEST_FILE_BYTES_MAX: u64 = 4 << 20;
/// A state larger than this is a bug (millions of segments), not something to allocate for.
pub(crate) const MANIFEST_RECORD_BYTES_MAX: usize = 16 << 20;
pub(crate) const HEADER_BYTES: usize = 32;

/// A live segment file, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    pub id: u64,
    pub size_bytes: u64,
    pub entries: u64,
    pub lsn_max: u64,
}

/// The state the manifest persists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// Every WAL record with an LSN ≤ this is in the segments.
    pub flushed_lsn: u64,
    pub next_segment_id: u64,
    /// Newest first: a key found in an earlier segment shadows the same key in a later one.
    pub segments: Vec<SegmentRef>,
}

impl ManifestState {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.segments.len() * 32);
        out.extend_from_slice(&self.flushed_lsn.to_le_bytes());
        out.extend_from_slice(&self.next_segment_id.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            for v in [s.id, s.size_bytes, s.entries, s.lsn_max] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Option<Self> {
        let u64_at = |at: usize| -> Option<u64> {
            let b = buf.get(at..at + 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Some(u64::from_le_bytes(a))
        };
        let flushed_lsn = u64_at(0)?;
        let next_segment_id = u64_at(8)?;
        let count = u32::from_le_bytes(buf.get(16..20)?.try_into().ok()?) as usize;
        if buf.len() != 20 + count * 32 {
            return None;
        }
        let segments = (0..count)
            .map(|i| {
                let at = 20 + i * 32;
                Some(SegmentRef {
                    id: u64_at(at)?,
                    size_bytes: u64_at(at + 8)?,
                    entries: u64_at(at + 16)?,
                    lsn_max: u64_at(at + 24)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ManifestState {
            flushed_lsn,
            next_segment_id,
            segments,
        })
    }
}

/// Encodes one record: header (magic, version, payload length, payload CRC, sequence, header
/// CRC) and payload, padded to whole blocks.
pub(crate) fn encode_record(seq: u64, state: &ManifestState) -> Vec<u8> {
    let payload = state.encode();
    let mut out = Vec::with_capacity(align_up(HEADER_BYTES + payload.len()));
    out.extend_from_slice(&MANIFEST_RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let header_crc = crc32fast::hash(&out[..24]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_BYTES);
    out.extend_from_slice(&payload);
    out.resize(align_up(out.len()), 0);
    out
}

/// A parsed record header, or why there is none at this offset.
pub(crate) struct Header {
    pub payload_len: usize,
    pub payload_crc: u32,
    pub seq: u64,
}

pub(crate) fn parse_header(b: &[u8]) -> Option<Header> {
    let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if b.len() < HEADER_BYTES || u32_at(0) != MANIFEST_RECORD_MAGIC {
        return None;
    }
    if crc32fast::hash(&b[..24]) != u32_at(24) {
        return None;
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != MANIFEST_FORMAT_VERSION {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[16..24]);
    Some(Header {
        payload_len: u32_at(8) as usize,
        payload_crc: u32_at(12),
        seq: u64::from_le_bytes(seq),
    })
}

/// What one manifest file holds: the valid record with the highest sequence number, and
/// whether damage was found *before* it.
pub(crate) struct FileScan {
    /// (sequence, state, offset just past the record).
    pub best: Option<(u64, ManifestState, u64)>,
    /// Offset of the first block that is neither a valid record nor part of one, when it lies
    /// before `best`: mid-log damage (bit rot), not a torn tail.
    pub damaged_at: Option<u64>,
}

/// Reads the record at `offset`, if a valid one starts there: (header, state, record length).
async fn read_record(
    shard: usize,
    file: &Rc<dyn File>,
    offset: u64,
    size: u64,
) -> Result<Option<(Header, ManifestState, u64)>> {
    let head = file
        .read_at(offset, BLOCK_SIZE)
        .await
        .map_err(|e| EngineError::storage(shard, e))?;
    let Some(h) = parse_header(&head) else {
        return Ok(None);
    };
    if h.payload_len > MANIFEST_RECORD_BYTES_MAX
        || offset + (HEADER_BYTES + h.payload_len) as u64 > size
    {
        return Ok(None);
    }
    let body = if HEADER_BYTES + h.payload_len <= BLOCK_SIZE {
        head[HEADER_BYTES..HEADER_BYTES + h.payload_len].to_vec()
    } else {
        file.read_at(offset + HEADER_BYTES as u64, h.payload_len)
            .await
            .map_err(|e| EngineError::storage(shard, e))?
    };
    if crc32fast::hash(&body) != h.payload_crc {
        return Ok(None);
    }
    let Some(state) = ManifestState::decode(&body) else {
        return Ok(None);
    };
    let record_len = align_up(HEADER_BYTES + h.payload_len) as u64;
    Ok(Some((h, state, record_len)))
}

/// Scans every block of one manifest file for valid records; the highest sequence wins.
///
/// Why every block and not just the chain of records from offset 0: the first version stopped
/// at the first bad record and used the state before it. A bit flipped in a record in the
/// middle of the log then silently resurrected an old state, and the segment files written
/// since were deleted at open as "not in the manifest" — committed data lost without an error.
/// Each record is a full state, so a damaged record is harmless once a later valid one exists;
/// what matters is to find that later one. A torn tail (a crash during the last append) is
/// damage *after* the best record and needs nothing.
pub(crate) async fn scan_file(shard: usize, file: &Rc<dyn File>) -> Result<FileScan> {
    let size = file
        .size()
        .await
        .map_err(|e| EngineError::storage(shard, e))?;
    let mut offset = 0u64;
    let mut first_bad: Option<u64> = None;
    let mut best: Option<(u64, ManifestState, u64)> = None;
    let mut best_offset = 0u64;
    while offset + BLOCK_SIZE as u64 <= size {
        match read_record(shard, file, offset, size).await? {
            Some((h, state, record_len)) => {
                if best.as_ref().is_none_or(|(seq, _, _)| h.seq > *seq) {
                    best_offset = offset;
                    best = Some((h.seq, state, offset + record_len));
                }
                offset += record_len;
            }
            None => {
                first_bad.get_or_insert(offset);
                offset += BLOCK_SIZE as u64;
            }
        }
    }
    let damaged_at = first_bad.filter(|&at| best.is_some() && at < best_offset);
    Ok(FileScan { best, damaged_at })
}

fn file_name(generation: u64) -> String {
    format!("{MANIFEST_PREFIX}{generation:010}")
}

/// The open manifest of one shard. Commits are serialized by the caller (only the shard's
/// maintenance worker commits).
pub struct Manifest {
    shard: usize,
    storage: Rc<dyn Storage>,
    dir: PathBuf,
    file: RefCell<Rc<dyn File>>,
    generation: Cell<u64>,
    offset: Cell<u64>,
    seq: Cell<u64>,
}

impl Manifest {
    /// Opens the manifest in `dir`, or creates an empty one.
    pub async fn open(
        storage: Rc<dyn Storage>,
        dir: &Path,
        shard: usize,
    ) -> Result<(Manifest, ManifestState)> {
        let names = storage
            .list(dir)
            .await
            .map_err(|e| EngineError::storage(shard, e))?;
        let mut generations: Vec<u64> = names
            .iter()
            .filter_map(|n| n.strip_prefix(MANIFEST_PREFIX)?.parse().ok())
            .collect();
        generations.sort_unstable();
        // Newest generation with a valid record wins; older ones are leftovers of a rotation.
        for &generation in generations.iter().rev() {
            let path = dir.join(file_name(generation));
            let file = storage
                .open(&path, OpenMode::ReadWrite)
                .await
                .map_err(|e| EngineError::storage(shard, e))?;
            let scan = scan_file(shard, &file).await?;
            if let Some((seq, state, end)) = scan.best {
                let m = Manifest {
                    shard,
                    storage: storage.clone(),
                    dir: dir.to_path_buf(),
                    file: RefCell::new(file),
                    generation: Cell::new(generation),
                    offset: Cell::new(end),
                    seq: Cell::new(seq),
                };
                if let Some(at) = scan.damaged_at {
                    // Appending after a damaged log would keep the damage forever and make
                    // the next scan depend on it: rewrite the winning state into a fresh
                    // generation (synced before the damaged file goes).
                    tracing::error!(shard, file = %path.display(), offset = at, seq,
                        "damaged manifest record before the newest valid one: rewriting the manifest");
                    m.rotate(seq + 1, &state).await?;
                }
                m.remove_older_generations(&generations).await?;
                return Ok((m, state));
            }
            tracing::warn!(shard, file = %path.display(), "manifest generation without a valid record: ignored");
        }
        if !generations.is_empty() {
            return Err(EngineError::Manifest {
                shard,
                file: dir.display().to_string(),
                reason: "no manifest file holds a valid record".into(),
            });
        }
        let state = ManifestState {
            flushed_lsn: 0,
            next_segment_id: 1,
            segments: Vec::new(),
        };
        let m = Self::create_generation(storage, dir, shard, 1, 1, &state).await?;
        Ok((m, state))
    }

    async fn create_generation(
        storage: Rc<dyn Storage>,
        dir: &Path,
        shard: usize,
        generation: u64,
        seq: u64,
        state: &ManifestState,
    ) -> Result<Manifest> {
        let path = dir.join(file_name(generation));
        let file = storage
            .open(&path, OpenMode::Create)
            .await
            .map_err(|e| EngineError::storage(shard, e))?;
        file.truncate(0)
            .await
            .map_err(|e| EngineError::storage(shard, e))?;
        let record = encode_record(seq, state);
        file.write_at(0, &record)
            .await
            .map_err(|e| EngineError::storage(shard, e))?;
        file.sync()
            .await
            .map_err(|e| EngineError::storage(shard, e))?;
        // The new file must be reachable by name before anything relies on it.
        storage
            .sync_dir(dir)
            .await
            .map_err(|e| EngineError::storage(shard, e))?;
        Ok(Manifest {
            shard,
            storage,
            dir: dir.to_path_buf(),
            file: RefCell::new(file),
            generation: Cell::new(generation),
            offset: Cell::new(record.len() as u64),
            seq: Cell::new(seq),
        })
    }

    async fn remove_older_generations(&self, generations: &[u64]) -> Result<()> {
        for &g in generations.iter().filter(|&&g| g < self.generation.get()) {
            let path = self.dir.join(file_name(g));
            match self.storage.remove(&path).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(EngineError::storage(self.shard, e)),
            }
        }
        Ok(())
    }

    /// Makes `state` the durable state. Returns after the fdatasync that covers it.
    pub async fn commit(&self, state: &ManifestState) -> Result<()> {
        let seq = self.seq.get() + 1;
        if self.offset.get() >= MANIFEST_FILE_BYTES_MAX {
            return self.rotate(seq, state).await;
        }
        let record = encode_record(seq, state);
        let file = self.file.borrow().clone();
        file.write_at(self.offset.get(), &record)
            .await
            .map_err(|e| EngineError::storage(self.shard, e))?;
        file.sync()
            .await
            .map_err(|e| EngineError::storage(self.shard, e))?;
        self.offset.set(self.offset.get() + record.len() as u64);
        self.seq.set(seq);
        Ok(())
    }

    async fn rotate(&self, seq: u64, state: &ManifestState) -> Result<()> {
        let old_generation = self.generation.get();
        let next = Self::create_generation(
            self.storage.clone(),
            &self.dir,
            self.shard,
            old_generation + 1,
            seq,
            state,
        )
        .await?;
        let old_file = self.file.replace(next.file.borrow().clone());
        self.generation.set(next.generation.get());
        self.offset.set(next.offset.get());
        self.seq.set(seq);
        let _ = old_file.close().await;
        // Only now that the new generation is durable may the old one go.
        self.remove_older_generations(&[old_generation]).await
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mantis_storage::SimStorage;

    fn state(n: u64) -> ManifestState {
        ManifestState {
            flushed_lsn: n * 10,
            next_segment_id: n + 1,
            segments: (1..=n)
                .map(|id| SegmentRef {
                    id,
                    size_bytes: id * 4096,
                    entries: id,
                    lsn_max: id * 10,
                })
                .collect(),
        }
    }

    fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
        mantis_storage::rt::run_local(f).unwrap();
    }

    #[test]
    fn commits_survive_reopen_and_crash() {
        run(|| async {
            let sim = SimStorage::new(7);
            let dir = PathBuf::from("/m");
            {
                let (m, s) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
                assert_eq!(s.segments.len(), 0);
                for n in 1..=20 {
                    m.commit(&state(n)).await.unwrap();
                }
            }
            sim.crash();
            let (_m, s) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            assert_eq!(s, state(20));
        });
    }

    #[test]
    fn torn_last_record_falls_back_to_previous_state() {
        run(|| async {
            let sim = SimStorage::new(8);
            let dir = PathBuf::from("/m");
            let (m, _) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            m.commit(&state(1)).await.unwrap();
            m.commit(&state(2)).await.unwrap();
            let path = dir.join(file_name(1));
            let len = sim.contents(&path).unwrap().len() as u64;
            // Flip a bit inside the last record's payload.
            sim.flip_bit(&path, len - BLOCK_SIZE as u64 + HEADER_BYTES as u64 + 3, 1)
                .unwrap();
            let (_m, s) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            assert_eq!(s, state(1));
        });
    }

    /// The story: the first reader stopped at the first bad record and used the state before
    /// it, so one flipped bit in the middle of the log brought back an old segment list and the
    /// newer segment files were deleted at open. Every record is a full state: the newest valid
    /// one must win, and the damaged log is rewritten into a fresh generation.
    #[test]
    fn damaged_middle_record_does_not_hide_newer_state() {
        run(|| async {
            let sim = SimStorage::new(10);
            let dir = PathBuf::from("/m");
            let (m, _) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            for n in 1..=5 {
                m.commit(&state(n)).await.unwrap();
            }
            drop(m);
            let path = dir.join(file_name(1));
            // Records are one block each: block 0 is the empty state, block 2 is state(2).
            sim.flip_bit(&path, 2 * BLOCK_SIZE as u64 + HEADER_BYTES as u64 + 3, 4)
                .unwrap();
            let (m, s) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            assert_eq!(s, state(5));
            assert_eq!(m.generation(), 2, "rewritten into a new generation");
            assert_eq!(sim.files(), vec![dir.join(file_name(2))]);
            m.commit(&state(6)).await.unwrap();
            drop(m);
            let file = sim
                .handle()
                .open(&dir.join(file_name(2)), OpenMode::ReadWrite)
                .await
                .unwrap();
            let scan = scan_file(0, &file).await.unwrap();
            assert!(scan.damaged_at.is_none());
            assert_eq!(scan.best.map(|b| b.1), Some(state(6)));
        });
    }

    #[test]
    fn damaged_header_in_the_middle_is_skipped_too() {
        run(|| async {
            let sim = SimStorage::new(12);
            let dir = PathBuf::from("/m");
            let (m, _) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            for n in 1..=3 {
                m.commit(&state(n)).await.unwrap();
            }
            drop(m);
            let path = dir.join(file_name(1));
            sim.flip_bit(&path, BLOCK_SIZE as u64 + 2, 0).unwrap(); // magic of state(1)
            let (_m, s) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            assert_eq!(s, state(3));
        });
    }

    #[test]
    fn rotation_keeps_state_and_removes_old_generation() {
        run(|| async {
            let sim = SimStorage::new(9);
            let dir = PathBuf::from("/m");
            let (m, _) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            let commits = MANIFEST_FILE_BYTES_MAX / BLOCK_SIZE as u64 + 5;
            for n in 0..commits {
                m.commit(&state(n % 7)).await.unwrap();
            }
            assert!(m.generation() >= 2);
            let names: Vec<_> = sim.files();
            assert_eq!(names.len(), 1, "old generations removed: {names:?}");
            let (_m, s) = Manifest::open(sim.handle(), &dir, 0).await.unwrap();
            assert_eq!(s, state((commits - 1) % 7));
        });
    }
}
