//! Verifying a backup in place: every object it needs (its own and its ancestors') is read
//! back and checked against the manifest: stored size and SHA-256, then raw size and SHA-256
//! after decompression.

use crate::dest::Destination;
use crate::error::{BackupError, Result};
use crate::manifest::{list_backups, read_manifest, sha256_hex, BackupFile, BackupManifest};
use crate::progress::{Progress, Tracker};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub backup: String,
    pub files: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

/// The backup `id`, or the newest one in `dest`.
pub(crate) fn pick(dest: &dyn Destination, id: Option<&str>) -> Result<BackupManifest> {
    match id {
        Some(id) => read_manifest(dest, id),
        None => list_backups(dest)?
            .pop()
            .ok_or_else(|| BackupError::NoBackup {
                destination: dest.describe(),
            }),
    }
}

/// Every backup a file points into must still be there (its manifest), and the object must
/// be one of that backup's own.
pub(crate) fn check_chain(dest: &dyn Destination, m: &BackupManifest) -> Result<()> {
    let mut holders: Vec<&str> = m.files.iter().map(|f| f.backup.as_str()).collect();
    holders.sort_unstable();
    holders.dedup();
    for holder in holders.into_iter().filter(|h| *h != m.id) {
        let ancestor = read_manifest(dest, holder)?;
        for f in m.files.iter().filter(|f| f.backup == holder) {
            if !ancestor
                .files
                .iter()
                .any(|a| a.object == f.object && a.backup == holder)
            {
                return Err(BackupError::Manifest {
                    object: f.object.clone(),
                    reason: format!("backup {holder} does not list it"),
                });
            }
        }
    }
    Ok(())
}

/// Checks `bytes` (the `what` form of object `f`: "stored" or "raw") against the manifest's
/// size and SHA-256.
fn check_form(
    f: &BackupFile,
    what: &'static str,
    bytes: &[u8],
    size_bytes: u64,
    sha256: &str,
) -> Result<()> {
    if bytes.len() as u64 != size_bytes {
        return Err(BackupError::SizeMismatch {
            object: f.object.clone(),
            what,
            expected: size_bytes,
            found: bytes.len() as u64,
        });
    }
    let found = sha256_hex(bytes);
    if found != sha256 {
        return Err(BackupError::ChecksumMismatch {
            object: f.object.clone(),
            what,
            expected: sha256.to_owned(),
            found,
        });
    }
    Ok(())
}

/// Reads one object and returns the raw file bytes once both checks pass.
pub(crate) fn fetch_checked(dest: &dyn Destination, f: &BackupFile) -> Result<Vec<u8>> {
    let stored = dest.get(&f.object)?;
    check_form(f, "stored", &stored, f.stored_size_bytes, &f.stored_sha256)?;
    let capacity = usize::try_from(f.raw_size_bytes).map_err(|_| BackupError::Manifest {
        object: f.object.clone(),
        reason: "raw size does not fit in memory".into(),
    })?;
    let raw = zstd::bulk::decompress(&stored, capacity).map_err(|e| BackupError::Decompress {
        object: f.object.clone(),
        reason: e.to_string(),
    })?;
    check_form(f, "raw", &raw, f.raw_size_bytes, &f.raw_sha256)?;
    Ok(raw)
}

/// Verifies backup `id` (the newest when None): fails with the first problem, naming its
/// object.
pub fn verify(
    dest: &dyn Destination,
    id: Option<&str>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport> {
    let m = pick(dest, id)?;
    check_chain(dest, &m)?;
    let mut tracker = Tracker::new(m.raw_bytes(), m.files.len() as u64, progress);
    let mut stored_bytes = 0;
    for f in &m.files {
        fetch_checked(dest, f)?;
        stored_bytes += f.stored_size_bytes;
        tracker.file_done(f.raw_size_bytes);
    }
    Ok(VerifyReport {
        backup: m.id.clone(),
        files: m.files.len() as u64,
        raw_bytes: m.raw_bytes(),
        stored_bytes,
    })
}
