//! Lockable resources: the hierarchy database → table → row/key, and the transaction id.

use serde::{Deserialize, Serialize};

/// A transaction, as the lock manager knows it. Ids are global (the same transaction keeps its
/// id on every shard it touches) so that per-shard wait-for edges can be merged into one graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TxnId(pub u64);

impl std::fmt::Display for TxnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "txn-{}", self.0)
    }
}

/// A lockable resource. Rows are identified by a 64-bit hash of their key so that a lock
/// record is fixed-size (no allocation per request); two keys with the same hash share a lock,
/// which can only cause a spurious wait, never a missed conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceId {
    Database(u32),
    Table {
        database: u32,
        table: u32,
    },
    Row {
        database: u32,
        table: u32,
        key_hash: u64,
    },
}

impl ResourceId {
    /// The row resource of `key` in `table`.
    pub fn row(database: u32, table: u32, key: &[u8]) -> ResourceId {
        ResourceId::Row {
            database,
            table,
            key_hash: key_hash(key),
        }
    }

    /// The resource one level up, `None` for a database.
    pub fn parent(self) -> Option<ResourceId> {
        match self {
            ResourceId::Database(_) => None,
            ResourceId::Table { database, .. } => Some(ResourceId::Database(database)),
            ResourceId::Row {
                database, table, ..
            } => Some(ResourceId::Table { database, table }),
        }
    }

    /// Ancestors from the root down (excluding `self`); unused slots are `None`.
    pub fn ancestors(self) -> [Option<ResourceId>; 2] {
        match self {
            ResourceId::Database(_) => [None, None],
            ResourceId::Table { database, .. } => [Some(ResourceId::Database(database)), None],
            ResourceId::Row {
                database, table, ..
            } => [
                Some(ResourceId::Database(database)),
                Some(ResourceId::Table { database, table }),
            ],
        }
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResourceId::Database(d) => write!(f, "db:{d}"),
            ResourceId::Table { database, table } => write!(f, "db:{database}/table:{table}"),
            ResourceId::Row {
                database,
                table,
                key_hash,
            } => write!(f, "db:{database}/table:{table}/row:{key_hash:016x}"),
        }
    }
}

/// FNV-1a, 64 bits: stable across processes and versions (unlike `DefaultHasher`), so the same
/// key maps to the same lock on every shard and in every log line.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
