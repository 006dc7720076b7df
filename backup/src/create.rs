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
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            incremental: false,
            parent: None,
            zstd_level: 3,
        }
    }
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
    for src in &sources {
        let raw = std::fs::read(&src.local).map_err(|e| BackupError::local(&src.local, e))?;
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
