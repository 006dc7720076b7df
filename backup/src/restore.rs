//! Restoring a backup into a new data directory that `Engine::open` serves.
//!
//! Each object is checked (both hashes) as it is fetched, before its bytes are written; the
//! first failure stops the restore, removes everything it wrote and names the object. So a
//! backup that fails verification is never left behind as a data directory, and each object
//! is downloaded once.

use std::io::Write;
use std::path::Path;

use mantis_engine::checkpoint::CHECKPOINT_MANIFEST_NAME;

use crate::dest::{valid_object_name, Destination};
use crate::error::{BackupError, Result};
use crate::manifest::BackupManifest;
use crate::progress::{Progress, Tracker};
use crate::verify::{check_chain, fetch_checked, pick};

/// Restores backup `id` (the newest when None) into `data_dir`, which must be absent or
/// empty. Follows the incremental chain (files an ancestor stored are read from it).
pub fn restore(
    dest: &dyn Destination,
    id: Option<&str>,
    data_dir: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BackupManifest> {
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            return Err(BackupError::TargetNotEmpty {
                dir: data_dir.display().to_string(),
            });
        }
    }
    let m = pick(dest, id)?;
    check_paths(&m)?;
    check_chain(dest, &m)?;
    match write_all(dest, &m, data_dir, progress) {
        Ok(()) => Ok(m),
        Err(e) => {
            remove_contents(data_dir);
            Err(e)
        }
    }
}

/// Paths come from a file anyone with access to the bucket could edit: each must stay inside
/// a shard directory of the layout, and every shard must have its manifest copy (a shard
/// without one would open empty, silently).
fn check_paths(m: &BackupManifest) -> Result<()> {
    let bad = |path: &str, reason: &str| BackupError::Manifest {
        object: crate::manifest::manifest_object(&m.id),
        reason: format!("file {path}: {reason}"),
    };
    if m.shard_count == 0 {
        return Err(bad("-", "zero shards"));
    }
    for f in &m.files {
        if !valid_object_name(&f.path) {
            return Err(bad(&f.path, "not a relative path"));
        }
        let shard = f
            .path
            .strip_prefix("shard-")
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse::<usize>().ok());
        match shard {
            Some(n) if n < m.shard_count => {}
            _ => return Err(bad(&f.path, "not inside a shard directory")),
        }
    }
    for shard in 0..m.shard_count {
        let want = format!("shard-{shard}/{CHECKPOINT_MANIFEST_NAME}");
        if !m.files.iter().any(|f| f.path == want) {
            return Err(bad(&want, "missing"));
        }
    }
    Ok(())
}

fn write_all(
    dest: &dyn Destination,
    m: &BackupManifest,
    data_dir: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<()> {
    mantis_engine::layout::open_or_create(data_dir, m.shard_count)?;
    let mut tracker = Tracker::new(m.raw_bytes(), m.files.len() as u64, progress);
    let mut dirs = std::collections::BTreeSet::new();
    for f in &m.files {
        let raw = fetch_checked(dest, f)?;
        let path = data_dir.join(&f.path);
        let dir = path
            .parent()
            .ok_or_else(|| BackupError::local(&path, "no parent directory"))?;
        std::fs::create_dir_all(dir).map_err(|e| BackupError::local(dir, e))?;
        let mut file = std::fs::File::create(&path).map_err(|e| BackupError::local(&path, e))?;
        file.write_all(&raw)
            .and_then(|()| file.sync_all())
            .map_err(|e| BackupError::local(&path, e))?;
        dirs.insert(dir.to_path_buf());
        tracker.file_done(f.raw_size_bytes);
    }
    // Deepest first, so each directory's entry in its parent is synced after its contents.
    for dir in dirs
        .iter()
        .rev()
        .chain(std::iter::once(&data_dir.to_path_buf()))
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| BackupError::local(dir, e))?;
    }
    Ok(())
}

pub(crate) fn remove_contents(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "could not clean up after a failed restore");
        }
    }
}
