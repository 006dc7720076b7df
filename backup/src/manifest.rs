//! The backup manifest (`<backup id>/manifest.json`) and object naming.
//!
//! A backup is complete once its manifest exists: it is written after every object it
//! names. Objects: `<backup id>/files/<path in the data dir>.zst`, each the ZSTD frame of one
//! file. An incremental backup lists every file of its image; a file that an ancestor already
//! stored (same path, size and SHA-256) names that ancestor in `backup` instead of being
//! uploaded again.

use serde::{Deserialize, Serialize};

use crate::dest::Destination;
use crate::error::{BackupError, Result};

/// Version of the manifest layout; bumped on any incompatible change.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_OBJECT: &str = "manifest.json";
/// A manifest larger than this is not one of ours.
pub const MANIFEST_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Path relative to the data directory (`shard-0/seg/0000000000000003.seg`).
    pub path: String,
    pub raw_size_bytes: u64,
    /// Hex SHA-256 of the file's bytes.
    pub raw_sha256: String,
    pub stored_size_bytes: u64,
    /// Hex SHA-256 of the stored (compressed) object.
    pub stored_sha256: String,
    /// The object's name in the destination.
    pub object: String,
    /// The backup that uploaded the object (this one or an ancestor).
    pub backup: String,
}

/// One shard's position at the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupShard {
    pub shard: usize,
    /// Every WAL record with an LSN ≤ this is in the backup.
    pub flushed_lsn: u64,
    pub durable_lsn: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format_version: u32,
    pub id: String,
    pub created_at_ms: u64,
    /// The local checkpoint it was taken from.
    pub checkpoint: String,
    /// "full" or "incremental".
    pub kind: String,
    /// The previous backup of an incremental chain.
    pub parent: Option<String>,
    pub compression: String,
    pub shard_count: usize,
    pub shards: Vec<BackupShard>,
    pub files: Vec<BackupFile>,
}

impl BackupManifest {
    pub fn raw_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.raw_size_bytes).sum()
    }

    /// Bytes this backup uploaded itself (its own objects).
    pub fn uploaded_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.backup == self.id)
            .map(|f| f.stored_size_bytes)
            .sum()
    }
}

pub fn manifest_object(backup_id: &str) -> String {
    format!("{backup_id}/{MANIFEST_OBJECT}")
}

pub fn file_object(backup_id: &str, path: &str) -> String {
    format!("{backup_id}/files/{path}.zst")
}

pub fn read_manifest(dest: &dyn Destination, backup_id: &str) -> Result<BackupManifest> {
    let object = manifest_object(backup_id);
    let bytes = dest.get(&object)?;
    if bytes.len() > MANIFEST_BYTES_MAX {
        return Err(BackupError::Manifest {
            object,
            reason: format!("{} bytes is larger than any manifest", bytes.len()),
        });
    }
    let m: BackupManifest = serde_json::from_slice(&bytes).map_err(|e| BackupError::Manifest {
        object: object.clone(),
        reason: format!("parse: {e}"),
    })?;
    if m.format_version != BACKUP_FORMAT_VERSION || m.id != backup_id {
        return Err(BackupError::Manifest {
            object,
            reason: format!(
                "format version {} / id {} (expected {BACKUP_FORMAT_VERSION} / {backup_id})",
                m.format_version, m.id
            ),
        });
    }
    Ok(m)
}

pub(crate) fn write_manifest(dest: &dyn Destination, m: &BackupManifest) -> Result<()> {
    let object = manifest_object(&m.id);
    let json = serde_json::to_vec_pretty(m).map_err(|e| BackupError::Manifest {
        object: object.clone(),
        reason: format!("encode: {e}"),
    })?;
    dest.put(&object, &json)
}

/// Every complete backup in `dest`, oldest first (ids sort by creation time).
pub fn list_backups(dest: &dyn Destination) -> Result<Vec<BackupManifest>> {
    let ids: Vec<String> = dest
        .list("")?
        .into_iter()
        .filter_map(|name| {
            let (id, rest) = name.split_once('/')?;
            (rest == MANIFEST_OBJECT).then(|| id.to_string())
        })
        .collect();
    ids.iter().map(|id| read_manifest(dest, id)).collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}
