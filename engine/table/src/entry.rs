//! The entry model shared by the memtable, segments and compaction.

/// The largest key a segment stores.
pub const KEY_MAX_BYTES: usize = 64 * 1024;
/// The largest value a segment stores. A value larger than a block gets a block of its own.
pub const VALUE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// What a key's newest version says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A value, optionally expiring at an absolute unix time in milliseconds. Segments return
    /// expired entries as they are: only the caller knows the current time.
    Put {
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    /// A tombstone: the key was deleted at this LSN.
    Delete,
}

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub lsn: u64,
    pub kind: EntryKind,
}

impl Entry {
    pub fn put(key: impl Into<Vec<u8>>, lsn: u64, value: impl Into<Vec<u8>>) -> Self {
        Entry {
            key: key.into(),
            lsn,
            kind: EntryKind::Put {
                value: value.into(),
                expires_at_ms: None,
            },
        }
    }

    pub fn put_expiring(
        key: impl Into<Vec<u8>>,
        lsn: u64,
        value: impl Into<Vec<u8>>,
        expires_at_ms: u64,
    ) -> Self {
        Entry {
            key: key.into(),
            lsn,
            kind: EntryKind::Put {
                value: value.into(),
                expires_at_ms: Some(expires_at_ms),
            },
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>, lsn: u64) -> Self {
        Entry {
            key: key.into(),
            lsn,
            kind: EntryKind::Delete,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        matches!(self.kind, EntryKind::Delete)
    }

    /// The value, or `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        match &self.kind {
            EntryKind::Put { value, .. } => Some(value),
            EntryKind::Delete => None,
        }
    }

    pub fn expires_at_ms(&self) -> Option<u64> {
        match &self.kind {
            EntryKind::Put { expires_at_ms, .. } => *expires_at_ms,
            EntryKind::Delete => None,
        }
    }

    /// True when the entry has expired at `now_ms` (unix milliseconds).
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms().is_some_and(|at| at <= now_ms)
    }
}
