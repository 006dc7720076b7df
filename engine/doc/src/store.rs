//! Collections of documents on the engine: insert, get, replace, patch, delete, indexes.
//!
//! Every change of a document is one read-modify-write on the document's shard, guarded by
//! the document key: it reads the document and the collection's catalog (its indexes) there,
//! and writes the document and all its index-entry changes in one atomic per-shard batch.
//! Reading the catalog under the guard is what keeps a concurrent index build exact: the build
//! takes the same guard per document after the new index is in every shard's catalog.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use mantis_engine::{BatchOp, EngineHandle, ValueEntry};
use serde::{Deserialize, Serialize};

use crate::error::{DocError, Result};
use crate::form::{self, DocView};
use crate::keys;
use crate::patch::{self, PatchOp};
use crate::path::Path;
use crate::tape;

/// Largest document text accepted, in bytes.
pub const DOCUMENT_BYTES_MAX: usize = 16 << 20;
/// Most JSON values in one document: the stored tape takes 16 bytes per value, and the whole
/// record must stay under the engine's value limit (64 MiB by default).
pub const DOCUMENT_VALUES_MAX: usize = 2 << 20;
pub const COLLECTION_NAME_BYTES_MAX: usize = 64;
pub const ID_BYTES_MAX: usize = 256;
/// Most indexes per collection: every write maintains all of them.
pub const INDEXES_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    /// In every shard's catalog and maintained by writes; the back-fill has not finished.
    Building,
    /// Complete: queries may use it.
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub path: String,
    pub state: IndexState,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub indexes: Vec<IndexDef>,
}

/// The document API over one engine. Cheap to clone; every method may run on any thread
/// (requests for another shard travel by message).
#[derive(Clone)]
pub struct DocStore {
    pub(crate) engine: EngineHandle,
}

pub fn check_collection(name: &str) -> Result<()> {
    let bad = |reason: &str| DocError::BadCollection {
        name: name.chars().take(80).collect(),
        reason: reason.into(),
    };
    if name.is_empty() || name.len() > COLLECTION_NAME_BYTES_MAX {
        return Err(bad("1 to 64 bytes"));
    }
    if name.starts_with('_') {
        return Err(bad("names starting with '_' are reserved"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(bad("letters, digits, '_', '-' and '.' only"));
    }
    Ok(())
}

pub fn check_id(id: &str) -> Result<()> {
    let bad = |reason: &str| DocError::BadId {
        id: id.chars().take(80).collect(),
        reason: reason.into(),
    };
    if id.is_empty() || id.len() > ID_BYTES_MAX {
        return Err(bad("1 to 256 bytes"));
    }
    if id.starts_with('_') {
        return Err(bad("ids starting with '_' are reserved"));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("no control characters"));
    }
    Ok(())
}

/// A parsed, size-checked document ready to store.
pub struct Prepared {
    pub stored: Vec<u8>,
    /// The `_id` member, when the document has a string one.
    pub body_id: Option<String>,
}

/// Parses and checks a document text: a JSON object within the limits.
pub fn prepare(text: &str) -> Result<Prepared> {
    if text.len() > DOCUMENT_BYTES_MAX {
        return Err(DocError::TooLarge {
            len: text.len(),
            max: DOCUMENT_BYTES_MAX,
        });
    }
    let nodes = tape::parse(text)?;
    if nodes.len() > DOCUMENT_VALUES_MAX {
        return Err(DocError::TooLarge {
            len: text.len(),
            max: DOCUMENT_BYTES_MAX,
        });
    }
    if nodes[0].kind != tape::KIND_OBJECT {
        return Err(DocError::NotAnObject);
    }
    let stored = form::encode_parsed(text, nodes)?;
    let body_id = form::with_view(&stored, |v| {
        v.root()
            .and_then(|r| r.child("_id"))
            .and_then(|x| match x.scalar() {
                Some(form::Scalar::String(s)) => Some(s),
                _ => None,
            })
    })?;
    Ok(Prepared { stored, body_id })
}

fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (nanos ^ (u64::from(std::process::id()) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{nanos:016x}{:08x}", (mixed ^ n) as u32)
}

pub(crate) fn parse_catalog(
    collection: &str,
    shard: usize,
    entry: Option<&ValueEntry>,
) -> Result<Catalog> {
    match entry {
        None => Ok(Catalog::default()),
        Some(e) => serde_json::from_slice(&e.value).map_err(|err| DocError::Catalog {
            collection: collection.into(),
            shard,
            reason: err.to_string(),
        }),
    }
}

/// The index keys a document has under `indexes`: one per index whose path holds a scalar.
pub(crate) fn index_keys(
    view: &DocView<'_>,
    collection: &str,
    id: &str,
    indexes: &[IndexDef],
) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    for def in indexes {
        let Ok(path) = Path::parse(&def.path) else {
            continue;
        };
        if let Some(s) = view.get(&path).and_then(|v| v.scalar()) {
            out.insert(keys::index_key(collection, &def.path, &s, id));
        }
    }
    out
}

/// What a write does to one document.
enum Change {
    Insert(Vec<u8>),
    Replace(Vec<u8>),
    Patch(Vec<PatchOp>),
    Delete,
    /// Re-derive the index entries of the current document (index back-fill).
    Reindex,
}

/// The outcome of a write, for the caller.
enum Outcome {
    Done,
    Missing,
    Patched(String),
    /// Internal to `plan_write`: a back-fill step.
    Reindexed,
}

impl DocStore {
    pub fn new(engine: EngineHandle) -> DocStore {
        DocStore { engine }
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// The shard that owns document `id` of `collection`.
    pub fn shard_of(&self, collection: &str, id: &str) -> usize {
        self.engine.shard_for(&keys::doc_key(collection, id))
    }

    /// Stores a new document. The id is `id`, else the document's `_id` string member, else
    /// a generated one; returns it. Fails with [`DocError::Exists`] if the id is taken.
    pub async fn insert(&self, collection: &str, id: Option<&str>, text: &str) -> Result<String> {
        check_collection(collection)?;
        let p = prepare(text)?;
        if let (Some(given), Some(body)) = (id, p.body_id.as_deref()) {
            if given != body {
                return Err(DocError::BadId {
                    id: given.into(),
                    reason: format!("the document's _id is {body:?}"),
                });
            }
        }
        let id = match id.map(str::to_string).or(p.body_id) {
            Some(id) => id,
            None => new_id(),
        };
        check_id(&id)?;
        self.write(collection, &id, Change::Insert(p.stored))
            .await?;
        Ok(id)
    }

    /// The original text of document `id`, checksum verified.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Option<String>> {
        check_collection(collection)?;
        check_id(id)?;
        let shard = self.shard_of(collection, id);
        let entry = self
            .engine
            .get_on(shard, keys::doc_key(collection, id))
            .await?;
        match entry {
            None => Ok(None),
            Some(e) => form::decode_text(&e.value)
                .map(Some)
                .map_err(|err| stored_error(collection, id, shard, err)),
        }
    }

    /// Replaces document `id` wholly; [`DocError::NotFound`] if it does not exist.
    pub async fn replace(&self, collection: &str, id: &str, text: &str) -> Result<()> {
        check_collection(collection)?;
        check_id(id)?;
        let p = prepare(text)?;
        if let Some(body) = p.body_id.as_deref().filter(|b| *b != id) {
            return Err(DocError::BadId {
                id: id.into(),
                reason: format!("the document's _id is {body:?}"),
            });
        }
        match self
            .write(collection, id, Change::Replace(p.stored))
            .await?
        {
            Outcome::Missing => Err(DocError::NotFound {
                collection: collection.into(),
                id: id.into(),
            }),
            _ => Ok(()),
        }
    }

    /// Applies `ops` atomically to document `id`; returns the new text.
    pub async fn patch(&self, collection: &str, id: &str, ops: Vec<PatchOp>) -> Result<String> {
        check_collection(collection)?;
        check_id(id)?;
        if ops.is_empty() || ops.len() > patch::PATCH_OPS_MAX {
            return Err(DocError::BadPatch(format!(
                "a patch has 1 to {} operations",
                patch::PATCH_OPS_MAX
            )));
        }
        match self.write(collection, id, Change::Patch(ops)).await? {
            Outcome::Patched(text) => Ok(text),
            _ => Err(DocError::NotFound {
                collection: collection.into(),
                id: id.into(),
            }),
        }
    }

    /// Removes document `id` and its index entries; true if it existed.
    pub async fn delete(&self, collection: &str, id: &str) -> Result<bool> {
        check_collection(collection)?;
        check_id(id)?;
        Ok(matches!(
            self.write(collection, id, Change::Delete).await?,
            Outcome::Done
        ))
    }

    /// Re-derives the index entries of one document (the back-fill step).
    pub(crate) async fn reindex(&self, collection: &str, id: &str) -> Result<()> {
        self.write(collection, id, Change::Reindex)
            .await
            .map(|_| ())
    }

    async fn write(&self, collection: &str, id: &str, change: Change) -> Result<Outcome> {
        let shard = self.shard_of(collection, id);
        let (coll, id2) = (collection.to_string(), id.to_string());
        let cat_key = keys::catalog_key(collection);
        // A document error is the closure's answer (with an empty batch), not an engine
        // error: the engine's error type has no slot for it.
        let res = self
            .engine
            .update_batch_on(
                shard,
                keys::doc_key(collection, id),
                vec![cat_key],
                move |cur, reads| {
                    Ok(match plan_write(&coll, &id2, shard, cur, reads, change) {
                        Ok((ops, outcome)) => (ops, Ok(outcome)),
                        Err(e) => (Vec::new(), Err(e)),
                    })
                },
            )
            .await?;
        res
    }
}

pub(crate) fn stored_error(collection: &str, id: &str, shard: usize, e: DocError) -> DocError {
    DocError::Stored {
        collection: collection.into(),
        id: id.into(),
        shard,
        source: Box::new(e),
    }
}

/// Decides the batch of one document write, on the document's shard, under its guard.
fn plan_write(
    collection: &str,
    id: &str,
    shard: usize,
    cur: Option<ValueEntry>,
    reads: Vec<Option<ValueEntry>>,
    change: Change,
) -> Result<(Vec<BatchOp>, Outcome)> {
    let catalog = parse_catalog(collection, shard, reads.first().and_then(|r| r.as_ref()))?;
    let old_keys = match &cur {
        None => BTreeSet::new(),
        Some(e) => form::with_view(&e.value, |v| {
            index_keys(&v, collection, id, &catalog.indexes)
        })
        .map_err(|err| stored_error(collection, id, shard, err))?,
    };
    let doc_key = keys::doc_key(collection, id);
    let (new_stored, outcome) = match (change, &cur) {
        (Change::Insert(_), Some(_)) => {
            return Err(DocError::Exists {
                collection: collection.into(),
                id: id.into(),
            })
        }
        (Change::Insert(s), None) => (Some(s), Outcome::Done),
        (Change::Replace(_) | Change::Patch(_) | Change::Delete | Change::Reindex, None) => {
            return Ok((Vec::new(), Outcome::Missing))
        }
        (Change::Replace(s), Some(_)) => (Some(s), Outcome::Done),
        (Change::Delete, Some(_)) => (None, Outcome::Done),
        (Change::Reindex, Some(e)) => (Some(e.value.clone()), Outcome::Reindexed),
        (Change::Patch(ops), Some(e)) => {
            let old = form::decode_text(&e.value)
                .map_err(|err| stored_error(collection, id, shard, err))?;
            let text = patch::apply(&old, &ops)?;
            let p = prepare(&text)?;
            if p.body_id.as_deref().is_some_and(|b| b != id) {
                return Err(DocError::BadPatch("a patch may not change _id".into()));
            }
            (Some(p.stored), Outcome::Patched(text))
        }
    };
    let new_keys = match &new_stored {
        None => BTreeSet::new(),
        Some(s) => form::with_view(s, |v| index_keys(&v, collection, id, &catalog.indexes))?,
    };
    if matches!(outcome, Outcome::Reindexed) {
        // Which entries already exist is unknown (that is why we back-fill): put them all,
        // puts of an entry are idempotent; the document itself is unchanged.
        let ops = new_keys
            .into_iter()
            .map(|key| BatchOp::Put {
                key,
                value: Vec::new(),
                expires_at_ms: None,
            })
            .collect();
        return Ok((ops, Outcome::Done));
    }
    let mut ops = Vec::with_capacity(old_keys.len() + new_keys.len() + 1);
    for k in old_keys.difference(&new_keys) {
        ops.push(BatchOp::Delete { key: k.clone() });
    }
    for k in new_keys.difference(&old_keys) {
        ops.push(BatchOp::Put {
            key: k.clone(),
            value: Vec::new(),
            expires_at_ms: None,
        });
    }
    match new_stored {
        Some(value) => ops.push(BatchOp::Put {
            key: doc_key,
            value,
            expires_at_ms: None,
        }),
        None => ops.push(BatchOp::Delete { key: doc_key }),
    }
    // Invariant: a document's batch touches only its own key and this collection's index
    // entries that name this document.
    let idx_prefix = {
        let mut p = keys::PREFIX.to_vec();
        p.push(b'i');
        p.extend_from_slice(collection.as_bytes());
        p.push(0);
        p
    };
    for op in &ops {
        let k = match op {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        };
        assert!(
            *k == keys::doc_key(collection, id)
                || (k.starts_with(&idx_prefix) && k.ends_with(id.as_bytes())),
            "document batch for {collection}/{id} touches a foreign key"
        );
    }
    Ok((ops, outcome))
}
