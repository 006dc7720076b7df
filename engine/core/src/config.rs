//! Engine configuration. Every limit is declared here, up front, with its unit in its name.

use std::path::PathBuf;

use mantis_storage::SimStorage;
use mantis_table::{CachePolicy, Codec, KeyspaceCodec};

/// The largest expiry we accept: 9999-12-31T23:59:59.999Z, in unix milliseconds.
pub const EXPIRES_AT_MS_MAX: u64 = 253_402_300_799_999;

/// Default of [`EngineConfig::idle_poll_us`].
pub const IDLE_POLL_US_DEFAULT: u64 = 0;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Number of shards; 0 means one per CPU this process may run on.
    pub shards: usize,
    /// Pin shard i's executor to the i-th allowed CPU.
    pub pin_cpus: bool,
    /// Memtable budget per shard: the active memtable is frozen and flushed at half of it, and
    /// writers wait when active + frozen memtables reach it.
    pub memtable_bytes_max: usize,
    /// Block cache per shard.
    pub block_cache_bytes: usize,
    pub cache_policy: CachePolicy,
    pub compression: Codec,
    /// Per-keyspace codecs for flushes and compactions (key prefix → codec, longest prefix
    /// wins; at most `mantis_table::KEYSPACE_CODECS_MAX`). Cold recompression ignores them:
    /// cold data is rewritten with `cold.cold_codec` whatever its keyspace.
    pub keyspace_codecs: Vec<KeyspaceCodec>,
    /// What guards each block of the segment files written from now on (recorded per file;
    /// files keep the algorithm they were written with). CRC32 by default.
    pub block_checksum: mantis_table::ChecksumAlgorithm,
    /// Issue 7: what guards each WAL record written from now on (recorded per chunk; a log
    /// written under another choice, or by format v1, still replays). CRC32 by default.
    pub wal_checksum: mantis_table::ChecksumAlgorithm,
    pub value_bytes_max: usize,
    pub key_bytes_max: usize,
    pub wal_segment_bytes: u64,
    /// Cut the WAL at the first corrupt record instead of refusing to start.
    pub repair_wal: bool,
    /// Compaction starts when a shard has more than this many segments.
    pub segments_max: usize,
    /// Background scrubber: pass interval and read rate.
    pub scrub: crate::scrub::ScrubConfig,
    /// Cold-data detection and ZSTD recompression.
    pub cold: crate::cold::ColdConfig,
    /// Tests and the simulator: run on this simulated disk instead of O_DIRECT files.
    pub sim_storage: Option<SimStorage>,
    /// Issue 10: longest a checkpoint waits for the two-phase-commit transactions already
    /// past their Decision to finish committing before it fails (a participant that never
    /// answers must not hold the cut, and every new Decision behind it, forever).
    pub checkpoint_barrier_timeout_ms: u64,
    /// How long a shard's executor keeps polling for work before it parks (Seastar's
    /// idle-poll time), in microseconds; 0 parks at once. WHY: a parked executor is woken by
    /// another thread through an eventfd and a context switch, and it issues a process-wide
    /// memory barrier (IPIs to every CPU running a thread of the process) each time it goes
    /// to sleep; a transaction crosses shards several times inside a hot row's lock hold.
    /// Polling burns the idle CPU instead: set 0 where mantisd shares its CPUs with others.
    /// Glommio polls only executors bound to a CPU: without `pin_cpus` this does nothing.
    pub idle_poll_us: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("./data"),
            shards: 0,
            pin_cpus: true,
            memtable_bytes_max: 64 << 20,
            block_cache_bytes: 64 << 20,
            cache_policy: CachePolicy::Lru,
            compression: Codec::Lz4,
            keyspace_codecs: Vec::new(),
            block_checksum: mantis_table::ChecksumAlgorithm::Crc32,
            wal_checksum: mantis_table::ChecksumAlgorithm::Crc32,
            value_bytes_max: 64 << 20,
            key_bytes_max: 64 << 10,
            wal_segment_bytes: 64 << 20,
            repair_wal: false,
            segments_max: 8,
            scrub: crate::scrub::ScrubConfig::default(),
            cold: crate::cold::ColdConfig::default(),
            sim_storage: None,
            checkpoint_barrier_timeout_ms: 30_000,
            idle_poll_us: IDLE_POLL_US_DEFAULT,
        }
    }
}

impl EngineConfig {
    /// The shard count to use: the configured one, or one per allowed CPU.
    pub fn effective_shards(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            mantis_storage::rt::allowed_cpus().len().max(1)
        }
    }
}
