//! Key-value transactions shared by RESP MULTI/EXEC and `POST /api/v1/txn`: X locks on every
//! key through the owning shards' lock managers in one global order (shard, then key hash),
//! watch checks under those locks, one `write_batch`, release. Plain writes coordinate with
//! them through [`plain::guarded`] (see `shard_state` for why they lock only sometimes).

pub mod lockset;
pub mod plain;
pub mod shard_state;

use mantis_engine::EngineError;
use mantis_lock::LockError;

/// The lock hierarchy's database of key-value keys (SQL rows use database 0).
pub const KV_LOCK_DATABASE: u32 = 1;
/// The one "table" of that database.
pub const KV_LOCK_TABLE: u32 = 0;

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("shard {shard}: watched keys table full ({keys_max} keys)")]
    WatchTableFull { shard: usize, keys_max: usize },
    #[error("transaction touches {keys} keys, more than {keys_max}")]
    TooManyKeys { keys: usize, keys_max: usize },
}
