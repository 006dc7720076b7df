//! Reads and writes of SQL keys through the `EngineHandle`, seen through the pending writes of
//! the running statement and transaction (so a transaction reads its own writes).

use std::collections::BTreeMap;
use std::ops::Bound;

use mantis_engine::{BatchOp, EngineHandle, ScanRange};

use crate::error::{Result, SqlError};

/// Entries fetched per engine scan call; scans page through larger ranges.
pub const SCAN_PAGE_ROWS_MAX: usize = 4096;
/// Pending writes one transaction may buffer before COMMIT.
pub const TX_WRITES_MAX: usize = 1_000_000;

/// Buffered writes: `None` is a delete.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    pub map: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Writes {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.map.insert(key, None);
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Moves `other`'s writes on top of these.
    pub fn absorb(&mut self, other: Writes) {
        for (k, v) in other.map {
            self.map.insert(k, v);
        }
    }

    pub fn into_batch(self) -> Vec<BatchOp> {
        self.map
            .into_iter()
            .map(|(key, v)| match v {
                Some(value) => BatchOp::Put {
                    key,
                    value,
                    expires_at_ms: None,
                },
                None => BatchOp::Delete { key },
            })
            .collect()
    }
}

/// The layers a read looks through, newest first, before the engine.
pub struct View<'a> {
    pub handle: &'a EngineHandle,
    pub layers: [Option<&'a Writes>; 2],
}

impl View<'_> {
    pub(crate) fn overlay(&self, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        for w in self.layers.iter().flatten() {
            if let Some(v) = w.map.get(key) {
                return Some(v.as_ref());
            }
        }
        None
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.overlay(key) {
            return Ok(v.cloned());
        }
        self.handle
            .get(key)
            .await
            .map_err(|e| SqlError::storage("get", e))
    }

    /// Every live entry with a key in [start, end), merged with the overlays, in key order.
    pub async fn scan(
        &self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let range = ScanRange {
            start: Bound::Included(start.clone()),
            end: end.clone().map_or(Bound::Unbounded, Bound::Excluded),
        };
        let mut base: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut r = range.clone();
        loop {
            let page = self
                .handle
                .scan(r.clone(), SCAN_PAGE_ROWS_MAX)
                .await
                .map_err(|e| SqlError::storage("scan", e))?;
            let full = page.len() == SCAN_PAGE_ROWS_MAX;
            let last = page.last().map(|(k, _)| k.clone());
            for (k, e) in page {
                base.insert(k, e.value);
            }
            match (full, last) {
                (true, Some(k)) => r = range.after(&k),
                _ => break,
            }
            glommio_yield().await;
        }
        // Apply the older layer first so the newer one wins.
        for w in self.layers.iter().rev().flatten() {
            let upper = end.clone().map_or(Bound::Unbounded, Bound::Excluded);
            for (k, v) in w.map.range((Bound::Included(start.clone()), upper)) {
                match v {
                    Some(v) => base.insert(k.clone(), v.clone()),
                    None => base.remove(k),
                };
            }
        }
        Ok(base.into_iter().collect())
    }
}

/// Yields to other tasks when the glommio executor asks for it (a no-op off-executor).
async fn glommio_yield() {
    glommio::yield_if_needed().await;
}

/// Refuses a statement or transaction that buffers more than `TX_WRITES_MAX` writes.
pub fn check_tx_size(writes: usize) -> Result<()> {
    if writes > TX_WRITES_MAX {
        return Err(SqlError::new(
            crate::error::state::PROGRAM_LIMIT_EXCEEDED,
            format!("a transaction may buffer at most {TX_WRITES_MAX} writes"),
        ));
    }
    Ok(())
}
