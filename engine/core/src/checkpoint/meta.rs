//! The checkpoint `meta` file (JSON): what a checkpoint holds and where each file lives.

use serde::{Deserialize, Serialize};

/// Version of the `meta` JSON layout; bumped on any incompatible change.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// Every live file, linked into this checkpoint.
    Full,
    /// Only files new since the parent checkpoint are linked here; the others are named with
    /// the checkpoint that holds them (`CheckpointFile::stored_in`).
    Incremental,
    /// A full image meant to be kept locally as a point-in-time copy.
    Snapshot,
}

impl CheckpointKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "incremental" => Some(Self::Incremental),
            "snapshot" => Some(Self::Snapshot),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
            Self::Snapshot => "snapshot",
        }
    }
}

/// One file of a shard's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// Path relative to the shard directory (`seg/<id>.seg`).
    pub name: String,
    pub size_bytes: u64,
    /// The checkpoint whose directory holds the link (this one, or an ancestor).
    pub stored_in: String,
}

/// One shard at the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCut {
    pub shard: usize,
    /// Every WAL record with an LSN ≤ this is in the files: the shard's position at the cut.
    pub flushed_lsn: u64,
    /// The WAL's last durable LSN when the cut was taken (≥ `flushed_lsn`).
    pub durable_lsn: u64,
    pub next_segment_id: u64,
    /// The manifest copy, relative to the shard directory (always stored in this checkpoint).
    pub manifest: String,
    /// Newest first, as the manifest lists them.
    pub files: Vec<CheckpointFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub id: String,
    pub kind: CheckpointKind,
    pub parent: Option<String>,
    pub created_at_ms: u64,
    pub shard_count: usize,
    pub shards: Vec<ShardCut>,
}

impl CheckpointMeta {
    /// Bytes of every file of the image (including inherited ones).
    pub fn total_bytes(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.files.iter())
            .map(|f| f.size_bytes)
            .sum()
    }

    /// Bytes linked into this checkpoint's own directory.
    pub fn own_bytes(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.files.iter())
            .filter(|f| f.stored_in == self.id)
            .map(|f| f.size_bytes)
            .sum()
    }
}
