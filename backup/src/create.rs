//! Uploading a checkpoint as a backup: one ZSTD object per file, then the manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mantis_engine::checkpoint::{resolve_file, CheckpointMeta};

use crate::dest::Destination;
use crate::error::{BackupError, Result};
use crate::manifest::{
    file_object, list_backups, read_manifest, sha256_hex, write_manifest, BackupFile,
    BackupManifest, BackupShard, BACKUP_FORMAT_VERSION,
};
use crate::progress::{Progress, Tracker};

/// Attempts at finding an unused backup id within one millisecond.
const ID_ATTEMPTS_MAX: u32 = 1000;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Upload only files that the parent chain does not hold already.
    pub incremental: bool,
    /// The parent of an incremental backup; by default the newest backup in the destination.
    /// With no backup there at all, the backup is full.
    pub parent: Option<String>,
    pub zstd_level: i32,
    /// Reads checkpoint files no faster than this on average (None: as fast as the disk
    /// goes). WHY: a file read whole at disk speed fills the device's queue for tens of
    /// milliseconds, and every commit's fdatasync on the same disk waits behind it (issue
    /// 10's benchmark: foreground p99 ×4 during a backup). Paced in [`READ_CHUNK_BYTES`]
    /// pieces, the reads leave room between them.
    pub read_rate_bytes_per_sec_max: Option<u64>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            incremental: false,
            parent: None,
            zstd_level: 3,
            read_rate_bytes_per_sec_max: None,
        }
    }
}

/// Size of one read of a checkpoint file (the pacing unit of
/// [`BackupOptions::read_rate_bytes_per_sec_max`]): small enough that one read occupies the
/// disk for a millisecond or two, not tens.
pub const READ_CHUNK_BYTES: usize = 256 << 10;

/// Keeps a backup's reads at or below a rate: each read gets a time slot of its size / rate,
/// and the next read waits for the slot to end. Idle time (compressing, uploading) is not
/// banked, so the reads never burst to catch up.
struct ReadPacer {
    /// When the next read may start.
    next_read: std::time::Instant,
    rate_bytes_per_sec_max: Option<u64>,
}

impl ReadPacer {
    fn new(rate_bytes_per_sec_max: Option<u64>) -> ReadPacer {
        ReadPacer {
            next_read: std::time::Instant::now(),
            rate_bytes_per_sec_max: rate_bytes_per_sec_max.filter(|&r| r > 0),
        }
    }

    /// Waits for the current slot to end; returns when the read starts.
    fn before_read(&mut self) -> std::time::Instant {
        let now = std::time::Instant::now();
        if let Some(wait) = self.next_read.checked_duration_since(now) {
            std::thread::sleep(wait);
        }
        std::time::Instant::now()
    }

    /// Gives the read that started at `started` and read `n` bytes its slot.
    fn after_read(&mut self, started: std::time::Instant, n: usize) {
        if let Some(rate) = self.rate_bytes_per_sec_max {
            let slot = std::time::Duration::from_secs_f64(n as f64 / rate as f64);
            self.next_read = started + slot;
        }
    }

    /// Reads `src` whole, in [`READ_CHUNK_BYTES`] pieces, paced.
    fn read(&mut self, src: &Source) -> Result<Vec<u8>> {
        let local_err = |e: std::io::Error| BackupError::local(&src.local, e);
        let mut file = std::fs::File::open(&src.local).map_err(local_err)?;
        let expected = usize::try_from(src.size_bytes).unwrap_or(usize::MAX);
        let mut raw = Vec::with_capacity(expected.min(1 << 30));
        loop {
            let start = raw.len();
            raw.resize(start + READ_CHUNK_BYTES, 0);
            let read_started = self.before_read();
            let n = read_full(&mut file, &mut raw[start..]).map_err(local_err)?;
            self.after_read(read_started, n);
            raw.truncate(start + n);
            if n < READ_CHUNK_BYTES {
                return Ok(raw);
            }
        }
    }
}

/// Fills `buf` unless the file ends first; returns the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read as _;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// One file of the image: where it is on disk, and its path in a data directory.
struct Source {
    local: PathBuf,
    path: String,
    size_bytes: u64,
}

fn sources(root: &Path, cp: &CheckpointMeta) -> Vec<Source> {
    let mut out = Vec::new();
    for cut in &cp.shards {
        for f in &cut.files {
            out.push(Source {
                local: resolve_file(root, cut.shard, &f.stored_in, &f.name),
                path: format!("shard-{}/{}", cut.shard, f.name),
                size_bytes: f.size_bytes,
            });
        }
        let local = resolve_file(root, cut.shard, &cp.id, &cut.manifest);
        let size_bytes = std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
        out.push(Source {
            local,
            path: format!("shard-{}/{}", cut.shard, cut.manifest),
            size_bytes,
        });
    }
    out
}

fn parent_manifest(dest: &dyn Destination, opts: &BackupOptions) -> Result<Option<BackupManifest>> {
    if !opts.incremental {
        return Ok(None);
    }
    match &opts.parent {
        Some(id) => Ok(Some(read_manifest(dest, id)?)),
        None => Ok(list_backups(dest)?.pop()),
    }
}

fn new_id(dest: &dyn Destination, now_ms: u64) -> Result<String> {
    for n in 0..ID_ATTEMPTS_MAX {
        let id = if n == 0 {
            format!("bk-{now_ms:013}")
        } else {
            format!("bk-{now_ms:013}-{n}")
        };
        if dest.list(&format!("{id}/"))?.is_empty() {
            return Ok(id);
        }
    }
    Err(BackupError::Invalid(format!(
        "{}: no free backup id",
        dest.describe()
    )))
}

/// Uploads checkpoint `cp` (whose directories are under `checkpoints_root`) to `dest`.
/// The manifest is written last: a backup interrupted before it does not exist.
pub fn create_backup(
    dest: &dyn Destination,
    checkpoints_root: &Path,
    cp: &CheckpointMeta,
    opts: &BackupOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BackupManifest> {
    let parent = parent_manifest(dest, opts)?;
    if let Some(p) = &parent {
        if p.shard_count != cp.shard_count {
            return Err(BackupError::Invalid(format!(
                "parent backup {} has {} shards, the checkpoint {}",
                p.id, p.shard_count, cp.shard_count
            )));
        }
    }
    let inherited: HashMap<&str, &BackupFile> = parent
        .iter()
        .flat_map(|p| p.files.iter())
        .map(|f| (f.path.as_str(), f))
        .collect();
    let created_at_ms = mantis_engine::now_ms();
    let id = new_id(dest, created_at_ms)?;
    let sources = sources(checkpoints_root, cp);
    let bytes_total = sources.iter().map(|s| s.size_bytes).sum();
    let mut tracker = Tracker::new(bytes_total, sources.len() as u64, progress);
    let mut files = Vec::with_capacity(sources.len());
    let mut pacer = ReadPacer::new(opts.read_rate_bytes_per_sec_max);
    for src in &sources {
        let raw = pacer.read(src)?;
        if raw.len() as u64 != src.size_bytes {
            return Err(BackupError::local(
                &src.local,
                format!(
                    "{} bytes, the checkpoint says {}",
                    raw.len(),
                    src.size_bytes
                ),
            ));
        }
        let raw_sha256 = sha256_hex(&raw);
        let reuse = inherited
            .get(src.path.as_str())
            .filter(|f| f.raw_size_bytes == src.size_bytes && f.raw_sha256 == raw_sha256);
        let entry = match reuse {
            Some(f) => (*f).clone(),
            None => upload_one(dest, &id, src, &raw, raw_sha256, opts.zstd_level)?,
        };
        files.push(entry);
        tracker.file_done(src.size_bytes);
    }
    let manifest = BackupManifest {
        format_version: BACKUP_FORMAT_VERSION,
        id,
        created_at_ms,
        checkpoint: cp.id.clone(),
        kind: if parent.is_some() {
            "incremental"
        } else {
            "full"
        }
        .into(),
        parent: parent.map(|p| p.id),
        compression: "zstd".into(),
        shard_count: cp.shard_count,
        shards: cp
            .shards
            .iter()
            .map(|c| BackupShard {
                shard: c.shard,
                flushed_lsn: c.flushed_lsn,
                durable_lsn: c.durable_lsn,
            })
            .collect(),
        files,
    };
    write_manifest(dest, &manifest)?;
    tracing::info!(
        backup = %manifest.id,
        destination = %dest.describe(),
        raw_bytes = tracker.progress().bytes_done,
        uploaded_bytes = manifest.uploaded_bytes(),
        "backup complete"
    );
    Ok(manifest)
}

fn upload_one(
    dest: &dyn Destination,
    id: &str,
    src: &Source,
    raw: &[u8],
    raw_sha256: String,
    level: i32,
) -> Result<BackupFile> {
    let stored = zstd::bulk::compress(raw, level)
        .map_err(|e| BackupError::local(&src.local, format!("zstd: {e}")))?;
    let object = file_object(id, &src.path);
    dest.put(&object, &stored)?;
    Ok(BackupFile {
        path: src.path.clone(),
        raw_size_bytes: raw.len() as u64,
        raw_sha256,
        stored_size_bytes: stored.len() as u64,
        stored_sha256: sha256_hex(&stored),
        object,
        backup: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn source(dir: &Path, len: usize) -> TestResult<(Source, Vec<u8>)> {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let local = dir.join("f.seg");
        std::fs::write(&local, &bytes)?;
        let src = Source {
            local,
            path: "shard-0/f.seg".into(),
            size_bytes: len as u64,
        };
        Ok((src, bytes))
    }

    /// The limit holds as a lower bound on the time taken (sleeping cannot make it faster),
    /// and pacing changes nothing of what is read.
    #[test]
    fn paced_reads_take_their_slots_and_read_the_same_bytes() -> TestResult {
        let dir = tempfile::tempdir_in("/var/tmp")?;
        let len = 8 * READ_CHUNK_BYTES + 1000;
        let (src, bytes) = source(dir.path(), len)?;
        assert_eq!(ReadPacer::new(None).read(&src)?, bytes);
        assert_eq!(ReadPacer::new(Some(0)).read(&src)?, bytes, "0: no limit");
        let rate = 16 * READ_CHUNK_BYTES as u64; // 16 chunks per second
        let started = std::time::Instant::now();
        assert_eq!(ReadPacer::new(Some(rate)).read(&src)?, bytes);
        // Nine reads: the ninth starts once eight full slots of 1/16 s have passed.
        let floor = std::time::Duration::from_millis(8 * 1000 / 16);
        assert!(started.elapsed() >= floor, "{:?}", started.elapsed());
        Ok(())
    }

    /// A file whose length is an exact number of chunks ends with an empty read, not an
    /// error, and an empty file reads as empty.
    #[test]
    fn whole_chunks_and_empty_files_read_exactly() -> TestResult {
        let dir = tempfile::tempdir_in("/var/tmp")?;
        for len in [0, READ_CHUNK_BYTES, 3 * READ_CHUNK_BYTES] {
            let (src, bytes) = source(dir.path(), len)?;
            assert_eq!(ReadPacer::new(None).read(&src)?, bytes, "{len}");
        }
        Ok(())
    }
}
