//! Checkpoints: a consistent, on-disk image of every shard, taken while the engine serves.
//!
//! Each shard flushes its memtables, then — holding its manifest lock so that no flush or
//! compaction commit changes the file list meanwhile — hard-links its live segment files and
//! writes a one-record copy of its manifest state into
//! `DATA_DIR/checkpoints/<id>/shard-<n>/`. Hard links are the reference count: a compaction
//! that deletes the original leaves the checkpoint's link (and its bytes) intact, and nothing
//! is copied. Writers are never blocked; a shard pauses only for its own flush.
//!
//! Every write acknowledged before [`crate::EngineHandle::checkpoint`] was called is in the
//! checkpoint (acknowledged writes are in a memtable, and the flush writes it out). Each shard's
//! image is a prefix of its WAL up to the recorded `flushed_lsn`; writes racing the call may or
//! may not be included, per shard.
//!
//! Issue 10: the cut is global for multi-shard (two-phase commit) transactions: while the
//! shards cut, no transaction is between its Decision and its last Commit (`barrier`), so a
//! checkpoint holds each such transaction on all its participants or on none.
//!
//! The parts: `barrier` (the global cut), `meta` (the JSON `meta` file), `cut` (the per-shard work, on the shard), `store`
//! (creating, listing, deleting and materializing checkpoint directories).
//! The checkpoints directory is outside every shard directory, so the orphan-file sweep at
//! shard open (`shard::open_segments`) never sees it.

pub(crate) mod barrier;
pub(crate) mod cut;
pub mod meta;
pub mod store;

pub use meta::{
    CheckpointFile, CheckpointKind, CheckpointMeta, ShardCut, CHECKPOINT_FORMAT_VERSION,
};
pub use store::{
    checkpoints_dir, delete, get, list, materialize, resolve_file, CheckpointPlan, ShardPlan,
};

/// Name of the directory under `DATA_DIR` that holds the checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Name of the JSON description inside a checkpoint directory; written last, so a directory
/// without it is an unfinished checkpoint.
pub const META_FILE_NAME: &str = "meta";
/// The manifest copy in each shard of a checkpoint: generation 1 holding one record.
pub const CHECKPOINT_MANIFEST_NAME: &str = "MANIFEST-0000000001";
