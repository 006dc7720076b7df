//! The MantisDB storage engine: shard-per-core key-value storage with TTL.
//!
//! `Engine::open` starts one glommio executor per shard; each shard owns its WAL
//! (`mantis-wal`), memtables (`memtable`), sorted segment files (`mantis-table`), manifest
//! (`manifest`) and background maintenance (`shard::maintenance`, strategy in `compaction`).
//! `EngineHandle` routes each key to its shard by hash. See docs/architecture.md.

pub mod checkpoint;
pub mod cold;
pub mod compaction;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod heap;
pub mod layout;
pub mod manifest;
pub mod memtable;
pub mod record;
pub mod scrub;
pub mod shard;
pub mod twopc;

pub use config::{EngineConfig, EXPIRES_AT_MS_MAX};
pub use engine::{key_hash, BatchOp, Engine, EngineHandle, SHARD_QUEUE_MAX};
pub use error::{EngineError, Result};
pub use event::now_ms;
pub use mantis_table::{zstd_level_range, KeyspaceCodec, TableError, KEYSPACE_CODECS_MAX};
pub use mantis_table::{CachePolicy, ChecksumAlgorithm, Codec};
pub use shard::write::{expiry_from_ttl, ValueEntry, WriteOp};
pub use shard::ScanVisitor;
pub use shard::{ScanRange, ShardStats};
