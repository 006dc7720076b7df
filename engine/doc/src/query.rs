//! Queries: filter, sort, limit; through an index when one fits, else a scan. Each shard
//! runs its part on its own executor (filtering, sorting and cutting to the limit there) and
//! the caller merges the sorted parts.
//!
//! ```json
//! {"filter": {...}, "sort": [{"path": "a", "order": "desc"}], "limit": 10}
//! ```
//! Sort order: documents without the path first, then null < bool < number < string, then
//! arrays and objects (by their text); ties by id. Without a sort, results come by id.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ops::Bound;

use mantis_engine::{EngineHandle, ScanRange};
use serde::Serialize;
use serde_json::Value;

use crate::error::{DocError, Result};
use crate::filter::{compare_scalars, CmpOp, Filter};
use crate::form::{self, DocView, Scalar};
use crate::keys;
use crate::path::Path;
use crate::store::{check_collection, parse_catalog, stored_error, DocStore, IndexDef, IndexState};

pub const LIMIT_DEFAULT: usize = 100;
pub const LIMIT_MAX: usize = 10_000;
/// Most sort keys in one query.
pub const SORT_KEYS_MAX: usize = 8;
/// Entries read per scan step: documents can be 16 MiB each.
const SCAN_PAGE_ENTRIES: usize = 32;
const INDEX_PAGE_ENTRIES: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub path: Path,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Filter,
    pub sort: Vec<SortKey>,
    pub limit: usize,
}

/// How a query reads: the plan `explain` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// "index" or "scan".
    pub access: String,
    /// The index path when access is "index".
    pub index: Option<String>,
    /// The condition the index answers, e.g. "eq", "in", "range".
    pub index_condition: Option<String>,
    pub shards: usize,
    /// Documents read and checked against the filter (after execution; 0 in `explain`).
    pub documents_examined: u64,
    pub index_entries_read: u64,
}

#[derive(Debug, Clone)]
pub struct QueryResult {
    /// (id, original text), in result order.
    pub documents: Vec<(String, String)>,
    pub plan: Plan,
}

impl Query {
    pub fn parse(v: &Value) -> Result<Query> {
        let obj = v
            .as_object()
            .ok_or_else(|| DocError::BadQuery("a query is a JSON object".into()))?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "filter" | "sort" | "limit") {
                return Err(DocError::BadQuery(format!(
                    "unknown field {k:?} (filter, sort, limit)"
                )));
            }
        }
        let filter = match obj.get("filter") {
            None | Some(Value::Null) => Filter::All,
            Some(f) => Filter::parse(f)?,
        };
        let sort = match obj.get("sort") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => {
                if list.len() > SORT_KEYS_MAX {
                    return Err(DocError::BadQuery(format!(
                        "at most {SORT_KEYS_MAX} sort keys"
                    )));
                }
                list.iter().map(parse_sort_key).collect::<Result<_>>()?
            }
            Some(one) => vec![parse_sort_key(one)?],
        };
        let limit = match obj.get("limit") {
            None | Some(Value::Null) => LIMIT_DEFAULT,
            Some(v) => v
                .as_u64()
                .filter(|&n| (1..=LIMIT_MAX as u64).contains(&n))
                .ok_or_else(|| DocError::BadQuery(format!("limit is 1 to {LIMIT_MAX}")))?
                as usize,
        };
        Ok(Query {
            filter,
            sort,
            limit,
        })
    }
}

fn parse_sort_key(v: &Value) -> Result<SortKey> {
    match v {
        Value::String(p) => Ok(SortKey {
            path: Path::parse(p)?,
            descending: false,
        }),
        Value::Object(o) => {
            let path = o
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| DocError::BadQuery("a sort key needs \"path\"".into()))?;
            let descending = match o.get("order").and_then(Value::as_str) {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(DocError::BadQuery(format!(
                        "sort order {other:?} (asc, desc)"
                    )))
                }
            };
            Ok(SortKey {
                path: Path::parse(path)?,
                descending,
            })
        }
        _ => Err(DocError::BadQuery(
            "a sort key is a path or {\"path\", \"order\"}".into(),
        )),
    }
}

/// One sort value: missing < scalars (typed order) < arrays and objects (by text).
#[derive(Debug, Clone)]
enum SortVal {
    Missing,
    Scalar(Scalar),
    Composite(String),
}

fn cmp_sort_val(a: &SortVal, b: &SortVal) -> Ordering {
    let rank = |v: &SortVal| match v {
        SortVal::Missing => 0,
        SortVal::Scalar(_) => 1,
        SortVal::Composite(_) => 2,
    };
    match (a, b) {
        (SortVal::Scalar(x), SortVal::Scalar(y)) => compare_scalars(x, y),
        (SortVal::Composite(x), SortVal::Composite(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[derive(Debug, Clone)]
struct Hit {
    sort: Vec<SortVal>,
    id: String,
    text: String,
}

fn cmp_hits(sort: &[SortKey], a: &Hit, b: &Hit) -> Ordering {
    for (i, k) in sort.iter().enumerate() {
        let o = cmp_sort_val(&a.sort[i], &b.sort[i]);
        let o = if k.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.id.as_bytes().cmp(b.id.as_bytes())
}

fn sort_values(view: &DocView<'_>, sort: &[SortKey]) -> Vec<SortVal> {
    sort.iter()
        .map(|k| match view.get(&k.path) {
            None => SortVal::Missing,
            Some(v) => match v.scalar() {
                Some(s) => SortVal::Scalar(s),
                None => SortVal::Composite(v.json_text().to_string()),
            },
        })
        .collect()
}

/// What the index part of a plan reads: key ranges of one index.
#[derive(Debug, Clone)]
struct IndexAccess {
    path: String,
    condition: &'static str,
    ranges: Vec<ScanRange>,
}

/// Picks an index for a top-level condition (the filter itself or a member of a top-level
/// `and`): eq first, then in, then a range comparison.
fn choose_index(collection: &str, filter: &Filter, ready: &[String]) -> Option<IndexAccess> {
    let conds: Vec<&Filter> = match filter {
        Filter::And(parts) => parts.iter().collect(),
        other => vec![other],
    };
    let indexed = |p: &Path| ready.iter().any(|r| r == p.as_str());
    for pass in 0..3 {
        for c in &conds {
            match (pass, c) {
                (
                    0,
                    Filter::Cmp {
                        path,
                        op: CmpOp::Eq,
                        value,
                    },
                ) if indexed(path) => {
                    let p = keys::index_prefix(collection, path.as_str());
                    return Some(IndexAccess {
                        path: path.to_string(),
                        condition: "eq",
                        ranges: vec![value_range(&p, value)],
                    });
                }
                (1, Filter::In { path, values }) if indexed(path) => {
                    let p = keys::index_prefix(collection, path.as_str());
                    let mut encoded: Vec<Vec<u8>> = values
                        .iter()
                        .map(|v| {
                            let mut k = Vec::new();
                            keys::encode_scalar(v, &mut k);
                            k
                        })
                        .collect();
                    encoded.sort();
                    encoded.dedup();
                    let ranges = encoded
                        .into_iter()
                        .map(|e| ScanRange::prefix(&[p.as_slice(), &e].concat()))
                        .collect();
                    return Some(IndexAccess {
                        path: path.to_string(),
                        condition: "in",
                        ranges,
                    });
                }
                (2, Filter::Cmp { path, op, value })
                    if indexed(path) && !matches!(op, CmpOp::Eq | CmpOp::Ne) =>
                {
                    let p = keys::index_prefix(collection, path.as_str());
                    return Some(IndexAccess {
                        path: path.to_string(),
                        condition: "range",
                        ranges: vec![cmp_range(&p, *op, value)],
                    });
                }
                _ => {}
            }
        }
    }
    None
}

fn value_range(prefix: &[u8], v: &Scalar) -> ScanRange {
    let mut k = prefix.to_vec();
    keys::encode_scalar(v, &mut k);
    ScanRange::prefix(&k)
}

/// Index keys of `v`'s type that satisfy `op v` (type bracketing: other types never match).
fn cmp_range(prefix: &[u8], op: CmpOp, v: &Scalar) -> ScanRange {
    let mut type_start = prefix.to_vec();
    type_start.push(keys::type_tag(v));
    let type_end = keys::prefix_end(&type_start).map_or(Bound::Unbounded, Bound::Excluded);
    let mut val = prefix.to_vec();
    keys::encode_scalar(v, &mut val);
    let after_val = keys::prefix_end(&val);
    let (start, end) = match op {
        CmpOp::Lt => (Bound::Included(type_start), Bound::Excluded(val)),
        CmpOp::Le => (
            Bound::Included(type_start),
            after_val.map_or(Bound::Unbounded, Bound::Excluded),
        ),
        CmpOp::Gt => (
            after_val.map_or(Bound::Unbounded, Bound::Included),
            type_end,
        ),
        _ => (Bound::Included(val), type_end),
    };
    ScanRange { start, end }
}

impl DocStore {
    /// The indexes of `collection` (as shard 0's catalog has them).
    pub async fn list_indexes(&self, collection: &str) -> Result<Vec<IndexDef>> {
        check_collection(collection)?;
        let e = self.engine.get_on(0, keys::catalog_key(collection)).await?;
        Ok(parse_catalog(collection, 0, e.as_ref())?.indexes)
    }

    /// The plan `query` would run, without running it.
    pub async fn explain(&self, collection: &str, query: &Query) -> Result<Plan> {
        check_collection(collection)?;
        let access = self.plan_access(collection, query).await?;
        Ok(plan_of(access.as_ref(), self.engine.shard_count()))
    }

    async fn plan_access(&self, collection: &str, query: &Query) -> Result<Option<IndexAccess>> {
        let ready: Vec<String> = self
            .list_indexes(collection)
            .await?
            .into_iter()
            .filter(|d| d.state == IndexState::Ready)
            .map(|d| d.path)
            .collect();
        Ok(choose_index(collection, &query.filter, &ready))
    }

    /// Runs `query` on every shard and merges the sorted parts.
    pub async fn query(&self, collection: &str, query: &Query) -> Result<QueryResult> {
        check_collection(collection)?;
        let access = self.plan_access(collection, query).await?;
        self.run_query(collection, query, access).await
    }

    /// Every document of `collection` that matches `filter`, by id, through an index when
    /// one fits: the read behind SQL's `documents.<collection>` tables (issue 11). Unlike
    /// `query` it has no 10,000 cap, but refuses with `TooManyResults` past `rows_max`
    /// rather than cutting the answer silently (SQL aggregates need every row).
    pub async fn select(
        &self,
        collection: &str,
        filter: &Filter,
        rows_max: usize,
    ) -> Result<QueryResult> {
        check_collection(collection)?;
        let query = Query {
            filter: filter.clone(),
            sort: Vec::new(),
            limit: rows_max.saturating_add(1),
        };
        let access = self.plan_access(collection, &query).await?;
        let result = self.run_query(collection, &query, access).await?;
        if result.documents.len() > rows_max {
            return Err(DocError::TooManyResults {
                collection: collection.into(),
                max: rows_max,
            });
        }
        Ok(result)
    }

    async fn run_query(
        &self,
        collection: &str,
        query: &Query,
        access: Option<IndexAccess>,
    ) -> Result<QueryResult> {
        let mut plan = plan_of(access.as_ref(), self.engine.shard_count());
        let calls = (0..self.engine.shard_count()).map(|shard| {
            let (h, q, a) = (self.engine.clone(), query.clone(), access.clone());
            let coll = collection.to_string();
            self.engine.run_on(shard, move || async move {
                shard_query(h, shard, coll, q, a).await
            })
        });
        let mut hits = Vec::new();
        for part in futures::future::join_all(calls).await {
            let part = part??;
            plan.documents_examined += part.examined;
            plan.index_entries_read += part.entries;
            hits.extend(part.hits);
        }
        hits.sort_by(|a, b| cmp_hits(&query.sort, a, b));
        hits.truncate(query.limit);
        Ok(QueryResult {
            documents: hits.into_iter().map(|h| (h.id, h.text)).collect(),
            plan,
        })
    }
}

fn plan_of(access: Option<&IndexAccess>, shards: usize) -> Plan {
    Plan {
        access: if access.is_some() { "index" } else { "scan" }.into(),
        index: access.map(|a| a.path.clone()),
        index_condition: access.map(|a| a.condition.to_string()),
        shards,
        documents_examined: 0,
        index_entries_read: 0,
    }
}

struct ShardPart {
    hits: Vec<Hit>,
    examined: u64,
    entries: u64,
}

/// Keeps the best `limit` hits, sorting only now and then.
struct TopK<'q> {
    query: &'q Query,
    hits: Vec<Hit>,
}

impl TopK<'_> {
    fn push(&mut self, h: Hit) {
        self.hits.push(h);
        if self.hits.len() >= 2 * self.query.limit.max(16) {
            self.cut();
        }
    }

    fn cut(&mut self) {
        let sort = &self.query.sort;
        self.hits.sort_by(|a, b| cmp_hits(sort, a, b));
        self.hits.truncate(self.query.limit);
    }
}

/// One shard's part of a query, run on that shard's executor.
async fn shard_query(
    h: EngineHandle,
    shard: usize,
    coll: String,
    q: Query,
    access: Option<IndexAccess>,
) -> Result<ShardPart> {
    let mut top = TopK {
        query: &q,
        hits: Vec::new(),
    };
    let (mut examined, mut entries) = (0u64, 0u64);
    let mut check = |id: &str, stored: &[u8], top: &mut TopK<'_>| -> Result<()> {
        examined += 1;
        let hit = form::with_view(stored, |v| {
            q.filter.matches(&v).then(|| Hit {
                sort: sort_values(&v, &q.sort),
                id: id.to_string(),
                text: v.text().to_string(),
            })
        })
        .map_err(|e| stored_error(&coll, id, shard, e))?;
        if let Some(hit) = hit {
            top.push(hit);
        }
        Ok(())
    };
    match &access {
        None => {
            let prefix = keys::doc_prefix(&coll);
            let mut range = ScanRange::prefix(&prefix);
            loop {
                let page = h.scan_on(shard, range.clone(), SCAN_PAGE_ENTRIES).await?;
                for (k, e) in &page {
                    let id = String::from_utf8_lossy(&k[prefix.len()..]);
                    check(&id, &e.value, &mut top)?;
                }
                match page.last() {
                    Some((k, _)) if page.len() == SCAN_PAGE_ENTRIES => range = range.after(k),
                    _ => break,
                }
                glommio::yield_if_needed().await;
            }
        }
        Some(a) => {
            let prefix = keys::index_prefix(&coll, &a.path);
            let path = Path::parse(&a.path)?;
            let mut seen = HashSet::new();
            for r in &a.ranges {
                let mut range = r.clone();
                loop {
                    let page = h.scan_on(shard, range.clone(), INDEX_PAGE_ENTRIES).await?;
                    for (k, _) in &page {
                        entries += 1;
                        let found =
                            index_entry_doc(&h, shard, &coll, &a.path, &path, &prefix, k).await?;
                        let Some((id, doc)) = found else { continue };
                        if seen.insert(id.clone()) {
                            check(&id, &doc, &mut top)?;
                        }
                    }
                    match page.last() {
                        Some((k, _)) if page.len() == INDEX_PAGE_ENTRIES => range = range.after(k),
                        _ => break,
                    }
                    glommio::yield_if_needed().await;
                }
            }
        }
    }
    top.cut();
    Ok(ShardPart {
        hits: top.hits,
        examined,
        entries,
    })
}

/// The document an index entry names, after checking the entry against it. A scan is not a
/// snapshot: a write may change the document between reading the entry and the document, so
/// a disagreement is read again; one that persists while the entry stays is corruption,
/// never silently skipped. None: the entry went away meanwhile (the write moved it).
async fn index_entry_doc(
    h: &EngineHandle,
    shard: usize,
    coll: &str,
    path_text: &str,
    path: &Path,
    prefix: &[u8],
    key: &[u8],
) -> Result<Option<(String, Vec<u8>)>> {
    let inconsistent = |id: &str, reason: &str| DocError::IndexInconsistent {
        collection: coll.into(),
        path: path_text.into(),
        shard,
        id: id.into(),
        reason: reason.into(),
    };
    let suffix = key.get(prefix.len()..).unwrap_or_default();
    let (vlen, id_bytes) = keys::split_index_suffix(suffix)
        .ok_or_else(|| inconsistent("?", "undecodable index entry"))?;
    let id = String::from_utf8_lossy(id_bytes).into_owned();
    let mut reason = "";
    for _attempt in 0..ENTRY_RECHECKS_MAX {
        let Some(doc) = h.get_on(shard, keys::doc_key(coll, &id)).await? else {
            reason = "entry without its document";
            if h.get_on(shard, key.to_vec()).await?.is_none() {
                return Ok(None);
            }
            continue;
        };
        let agrees = form::with_view(&doc.value, |v| {
            v.get(path).and_then(|x| x.scalar()).is_some_and(|s| {
                let mut enc = Vec::new();
                keys::encode_scalar(&s, &mut enc);
                enc == suffix[..vlen]
            })
        })
        .map_err(|e| stored_error(coll, &id, shard, e))?;
        if agrees {
            return Ok(Some((id, doc.value)));
        }
        reason = "the document's value differs from the entry's";
        if h.get_on(shard, key.to_vec()).await?.is_none() {
            return Ok(None);
        }
    }
    Err(inconsistent(&id, reason))
}

/// Reads of an entry and its document that disagree before we call it corruption.
const ENTRY_RECHECKS_MAX: usize = 3;
