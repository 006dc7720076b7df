//! Index creation (with back-fill) and the consistency check of documents against entries.

use std::collections::BTreeSet;

use mantis_engine::{BatchOp, ScanRange};
use serde::Serialize;

use crate::error::{DocError, Result};
use crate::form;
use crate::keys;
use crate::path::Path;
use crate::store::{
    check_collection, index_keys, parse_catalog, stored_error, Catalog, DocStore, IndexDef,
    IndexState, INDEXES_MAX,
};

/// Documents read per back-fill step.
const BACKFILL_PAGE_ENTRIES: usize = 64;

/// What [`DocStore::verify`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub documents: u64,
    pub index_entries: u64,
}

impl DocStore {
    /// Declares an index on `path` and back-fills it from the documents already stored;
    /// returns once it is ready. Idempotent: calling it again for a path resumes a build
    /// that a crash interrupted.
    pub async fn create_index(&self, collection: &str, path: &str) -> Result<IndexDef> {
        check_collection(collection)?;
        let path = Path::parse(path)?.as_str().to_string();
        // 1. Into every shard's catalog, as Building: from now on every write maintains it.
        for shard in 0..self.engine.shard_count() {
            self.set_state(collection, shard, &path, IndexState::Building)
                .await?;
        }
        // 2. Back-fill: each document re-derives its entries under its own guard.
        for shard in 0..self.engine.shard_count() {
            let (store, coll) = (self.clone(), collection.to_string());
            self.engine
                .run_on(
                    shard,
                    move || async move { store.backfill(shard, &coll).await },
                )
                .await??;
        }
        // 3. Ready everywhere: only now may queries use it.
        for shard in 0..self.engine.shard_count() {
            self.set_state(collection, shard, &path, IndexState::Ready)
                .await?;
        }
        Ok(IndexDef {
            path,
            state: IndexState::Ready,
        })
    }

    async fn set_state(
        &self,
        collection: &str,
        shard: usize,
        path: &str,
        state: IndexState,
    ) -> Result<()> {
        let (coll, path) = (collection.to_string(), path.to_string());
        let key = keys::catalog_key(collection);
        let res = self
            .engine
            .update_batch_on(shard, key.clone(), Vec::new(), move |cur, _| {
                let mut cat: Catalog = match parse_catalog(&coll, shard, cur.as_ref()) {
                    Ok(c) => c,
                    Err(e) => return Ok((Vec::new(), Err(e))),
                };
                let count = cat.indexes.len();
                match cat.indexes.iter_mut().find(|d| d.path == path) {
                    Some(d) if d.state == IndexState::Ready => return Ok((Vec::new(), Ok(()))),
                    Some(d) => d.state = state,
                    None if count >= INDEXES_MAX => {
                        return Ok((
                            Vec::new(),
                            Err(DocError::TooManyIndexes {
                                collection: coll.clone(),
                                count,
                                max: INDEXES_MAX,
                            }),
                        ))
                    }
                    None => cat.indexes.push(IndexDef { path, state }),
                }
                let value = serde_json::to_vec(&cat).unwrap_or_default();
                Ok((
                    vec![BatchOp::Put {
                        key,
                        value,
                        expires_at_ms: None,
                    }],
                    Ok(()),
                ))
            })
            .await?;
        res
    }

    async fn backfill(&self, shard: usize, collection: &str) -> Result<()> {
        let prefix = keys::doc_prefix(collection);
        let mut range = ScanRange::prefix(&prefix);
        loop {
            let page = self
                .engine
                .scan_on(shard, range.clone(), BACKFILL_PAGE_ENTRIES)
                .await?;
            for (k, _) in &page {
                let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                self.reindex(collection, &id).await?;
            }
            match page.last() {
                Some((k, _)) if page.len() == BACKFILL_PAGE_ENTRIES => range = range.after(k),
                _ => return Ok(()),
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Checks, shard by shard, that the index entries of `collection` are exactly those its
    /// documents call for (every document's checksum is verified on the way). Run it without
    /// concurrent writes to the collection: it reads no snapshot.
    pub async fn verify(&self, collection: &str) -> Result<VerifyReport> {
        check_collection(collection)?;
        let mut report = VerifyReport::default();
        for shard in 0..self.engine.shard_count() {
            let (store, coll) = (self.clone(), collection.to_string());
            let part = self
                .engine
                .run_on(shard, move || async move {
                    store.verify_shard(shard, &coll).await
                })
                .await??;
            report.documents += part.documents;
            report.index_entries += part.index_entries;
        }
        Ok(report)
    }

    async fn verify_shard(&self, shard: usize, collection: &str) -> Result<VerifyReport> {
        let cat = self
            .engine
            .get_on(shard, keys::catalog_key(collection))
            .await?;
        let cat = parse_catalog(collection, shard, cat.as_ref())?;
        let mut want = BTreeSet::new();
        let prefix = keys::doc_prefix(collection);
        let docs = self.scan_all(shard, &prefix).await?;
        for (k, stored) in &docs {
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            assert_eq!(
                self.shard_of(collection, &id),
                shard,
                "document {collection}/{id} stored on a shard that does not own it"
            );
            let keys = form::with_view(stored, |v| index_keys(&v, collection, &id, &cat.indexes))
                .map_err(|e| stored_error(collection, &id, shard, e))?;
            want.extend(keys);
        }
        let mut have = BTreeSet::new();
        for def in &cat.indexes {
            let p = keys::index_prefix(collection, &def.path);
            have.extend(self.scan_all(shard, &p).await?.into_iter().map(|(k, _)| k));
        }
        if let Some(k) = want.symmetric_difference(&have).next() {
            let reason = if want.contains(k) {
                "a document's index entry is missing"
            } else {
                "an index entry has no document with its value"
            };
            return Err(DocError::IndexInconsistent {
                collection: collection.into(),
                path: String::new(),
                shard,
                id: String::from_utf8_lossy(k).into_owned(),
                reason: reason.into(),
            });
        }
        Ok(VerifyReport {
            documents: docs.len() as u64,
            index_entries: have.len() as u64,
        })
    }

    async fn scan_all(&self, shard: usize, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut range = ScanRange::prefix(prefix);
        loop {
            let page = self.engine.scan_on(shard, range.clone(), 256).await?;
            let full = page.len() == 256;
            let last = page.last().map(|(k, _)| k.clone());
            out.extend(page.into_iter().map(|(k, e)| (k, e.value)));
            match last {
                Some(k) if full => range = range.after(&k),
                _ => return Ok(out),
            }
            glommio::yield_if_needed().await;
        }
    }
}
