//! Checkpoint directories: creating one (plan → per-shard cuts → `meta`), listing, reading,
//! deleting, and materializing one as a fresh data directory.
//!
//! Plain blocking file I/O: these touch a handful of small files (the links and manifest copies
//! are made by the shards themselves, in `cut`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mantis_storage::format::SEGMENT_DIR;

use super::cut::{sync_dir, write_synced};
use super::meta::{CheckpointKind, CheckpointMeta, ShardCut, CHECKPOINT_FORMAT_VERSION};
use super::{CHECKPOINTS_DIR, META_FILE_NAME};
use crate::error::{EngineError, Result};

/// Attempts at finding a free id within one millisecond before giving up.
const ID_ATTEMPTS_MAX: u32 = 1000;

pub fn checkpoints_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CHECKPOINTS_DIR)
}

fn err(checkpoint: &str, path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Checkpoint {
        checkpoint: checkpoint.to_string(),
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Ids are used as directory names (and come from HTTP paths): no separators, no dot-files.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What one shard needs to cut its part.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub checkpoint_id: String,
    /// `<checkpoint dir>/shard-<n>`.
    pub dir: PathBuf,
    /// Incremental: the parent image's files (name → size, holder checkpoint).
    pub parent_files: HashMap<String, (u64, String)>,
}

/// A checkpoint being taken: its directory exists, its `meta` not yet.
#[derive(Debug)]
pub struct CheckpointPlan {
    pub root: PathBuf,
    pub id: String,
    pub kind: CheckpointKind,
    pub parent: Option<CheckpointMeta>,
    pub created_at_ms: u64,
    pub shard_count: usize,
}

impl CheckpointPlan {
    /// Creates the checkpoint's directory under `root`. An incremental checkpoint without an
    /// explicit parent takes the newest complete checkpoint as its parent.
    pub fn prepare(
        root: &Path,
        kind: CheckpointKind,
        parent: Option<&str>,
        shard_count: usize,
    ) -> Result<CheckpointPlan> {
        std::fs::create_dir_all(root).map_err(|e| err("", root, format!("create: {e}")))?;
        let parent = match (kind, parent) {
            (CheckpointKind::Incremental, Some(p)) => Some(get(root, p)?),
            (CheckpointKind::Incremental, None) => Some(list(root)?.pop().ok_or_else(|| {
                err(
                    "",
                    root,
                    "an incremental checkpoint needs a parent; there is none",
                )
            })?),
            (_, Some(p)) => {
                return Err(err(p, root, "only an incremental checkpoint has a parent"));
            }
            (_, None) => None,
        };
        if let Some(p) = &parent {
            if p.shard_count != shard_count {
                return Err(err(
                    &p.id,
                    root,
                    format!(
                        "parent has {} shards, the engine {shard_count}",
                        p.shard_count
                    ),
                ));
            }
        }
        let created_at_ms = crate::event::now_ms();
        for n in 0..ID_ATTEMPTS_MAX {
            let id = if n == 0 {
                format!("cp-{created_at_ms:013}")
            } else {
                format!("cp-{created_at_ms:013}-{n}")
            };
            let dir = root.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(CheckpointPlan {
                        root: root.to_path_buf(),
                        id,
                        kind,
                        parent,
                        created_at_ms,
                        shard_count,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err(&id, &dir, format!("create: {e}"))),
            }
        }
        Err(err("", root, "no free checkpoint id"))
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.id)
    }

    pub fn shard_plan(&self, shard: usize) -> ShardPlan {
        let parent_files = self
            .parent
            .as_ref()
            .and_then(|p| p.shards.iter().find(|s| s.shard == shard))
            .map(|s| {
                s.files
                    .iter()
                    .map(|f| (f.name.clone(), (f.size_bytes, f.stored_in.clone())))
                    .collect()
            })
            .unwrap_or_default();
        ShardPlan {
            checkpoint_id: self.id.clone(),
            dir: self.dir().join(format!("shard-{shard}")),
            parent_files,
        }
    }

    /// Writes `meta` (temporary file, fsync, rename, directory fsync): the commit point.
    pub fn finish(self, mut cuts: Vec<ShardCut>) -> Result<CheckpointMeta> {
        cuts.sort_by_key(|c| c.shard);
        assert_eq!(cuts.len(), self.shard_count, "one cut per shard");
        let meta = CheckpointMeta {
            format_version: CHECKPOINT_FORMAT_VERSION,
            id: self.id.clone(),
            kind: self.kind,
            parent: self.parent.as_ref().map(|p| p.id.clone()),
            created_at_ms: self.created_at_ms,
            shard_count: self.shard_count,
            shards: cuts,
        };
        let dir = self.dir();
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| err(&self.id, &dir, format!("encode meta: {e}")))?;
        let tmp = dir.join(format!("{META_FILE_NAME}.tmp"));
        write_synced(&tmp, &json).map_err(|e| err(&self.id, &tmp, e))?;
        let path = dir.join(META_FILE_NAME);
        std::fs::rename(&tmp, &path).map_err(|e| err(&self.id, &path, format!("rename: {e}")))?;
        sync_dir(&dir).map_err(|e| err(&self.id, &dir, e))?;
        sync_dir(&self.root).map_err(|e| err(&self.id, &self.root, e))?;
        Ok(meta)
    }

    /// Removes the unfinished directory after a failed cut.
    pub fn abandon(self) {
        let dir = self.dir();
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove unfinished checkpoint");
        }
    }
}

/// Reads one checkpoint's `meta`.
pub fn get(root: &Path, id: &str) -> Result<CheckpointMeta> {
    if !valid_id(id) {
        return Err(err(id, root, "not a valid checkpoint id"));
    }
    let path = root.join(id).join(META_FILE_NAME);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            EngineError::CheckpointNotFound { id: id.to_string() }
        } else {
            err(id, &path, format!("read: {e}"))
        }
    })?;
    let meta: CheckpointMeta =
        serde_json::from_slice(&bytes).map_err(|e| err(id, &path, format!("parse: {e}")))?;
    if meta.format_version != CHECKPOINT_FORMAT_VERSION || meta.id != id {
        return Err(err(
            id,
            &path,
            format!(
                "format version {} / id {} (expected {CHECKPOINT_FORMAT_VERSION} / {id})",
                meta.format_version, meta.id
            ),
        ));
    }
    Ok(meta)
}

/// Every complete checkpoint, oldest first (directories without `meta` are unfinished).
pub fn list(root: &Path) -> Result<Vec<CheckpointMeta>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err("", root, format!("list: {e}"))),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_id(n) && root.join(n).join(META_FILE_NAME).exists())
        .collect();
    ids.sort();
    ids.iter().map(|id| get(root, id)).collect()
}

/// Deletes a checkpoint. Refused while another checkpoint uses files stored in it.
pub fn delete(root: &Path, id: &str) -> Result<()> {
    get(root, id)?;
    for other in list(root)?.iter().filter(|m| m.id != id) {
        let uses = other
            .shards
            .iter()
            .flat_map(|s| s.files.iter())
            .any(|f| f.stored_in == id);
        if uses {
            return Err(EngineError::CheckpointInUse {
                id: id.to_string(),
                by: other.id.clone(),
            });
        }
    }
    let dir = root.join(id);
    // Without its meta the directory reads as unfinished, whatever a crash leaves of the rest.
    let meta = dir.join(META_FILE_NAME);
    std::fs::remove_file(&meta).map_err(|e| err(id, &meta, format!("remove: {e}")))?;
    std::fs::remove_dir_all(&dir).map_err(|e| err(id, &dir, format!("remove: {e}")))?;
    sync_dir(root).map_err(|e| err(id, root, e))
}

/// Where a file of `shard` in checkpoint `meta` is stored.
pub fn resolve_file(root: &Path, shard: usize, stored_in: &str, name: &str) -> PathBuf {
    root.join(stored_in)
        .join(format!("shard-{shard}"))
        .join(name)
}

/// Copies checkpoint `id` into `target` as a data directory `Engine::open` serves (layout file,
/// per-shard segments and manifest; the WAL starts empty after the cut). `target` must be
/// absent or empty.
pub fn materialize(root: &Path, id: &str, target: &Path) -> Result<CheckpointMeta> {
    let meta = get(root, id)?;
    if let Ok(mut entries) = std::fs::read_dir(target) {
        if entries.next().is_some() {
            return Err(err(id, target, "the target directory is not empty"));
        }
    }
    crate::layout::open_or_create(target, meta.shard_count)?;
    for cut in &meta.shards {
        let shard_dir = target.join(format!("shard-{}", cut.shard));
        let seg_dir = shard_dir.join(SEGMENT_DIR);
        std::fs::create_dir_all(&seg_dir).map_err(|e| err(id, &seg_dir, e.to_string()))?;
        for f in &cut.files {
            let from = resolve_file(root, cut.shard, &f.stored_in, &f.name);
            copy_synced(&from, &shard_dir.join(&f.name)).map_err(|e| err(id, &from, e))?;
        }
        let from = resolve_file(root, cut.shard, id, &cut.manifest);
        copy_synced(&from, &shard_dir.join(&cut.manifest)).map_err(|e| err(id, &from, e))?;
        for dir in [&seg_dir, &shard_dir] {
            sync_dir(dir).map_err(|e| err(id, dir, e))?;
        }
    }
    sync_dir(target).map_err(|e| err(id, target, e))?;
    Ok(meta)
}

fn copy_synced(from: &Path, to: &Path) -> std::result::Result<(), String> {
    std::fs::copy(from, to).map_err(|e| format!("copy to {}: {e}", to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("fsync {}: {e}", to.display()))
}
