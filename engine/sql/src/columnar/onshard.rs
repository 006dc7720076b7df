//! Columnar scans on the shards that own the data: each shard reads its own delta, then its
//! own chunk headers; chunks whose min/max exclude a pushed comparison are skipped whole,
//! the others have their filter columns fetched, checksummed, decoded (dictionary-coded text
//! stays as codes) and filtered first, and the other needed columns only when some row
//! passed. The work (`Work`) folds the selected rows into a partial aggregate or turns them
//! into SQL rows; only that result crosses shards (`EngineHandle::run_on`, the mechanism the
//! row-table pushdown of issue 6 uses through `scan_visit_on`).
//!
//! Chunk rows whose row id is still in the delta (a merge committed between the two reads)
//! are dropped, so no row is seen twice; a row merged before the delta read is in a chunk
//! read after it, so none is missed (chunks are never deleted while the table exists).
//! The statement's own pending rows (a transaction's inserts) are not on any shard yet:
//! the statement's shard runs the same work over them.

use std::collections::HashSet;
use std::sync::Arc;

use mantis_columnar::{decode_vector, filter_vector, AggSpec, GroupedAgg, PhysType, Vector};
use mantis_engine::{EngineHandle, ScanRange};

use super::convert::{phys_of, to_value};
use super::keys::{self, Header};
use super::merge::{row_id_of_key, transpose};
use super::scan::{columnar_err, set_last_scan, Pred, ScanCounters};
use crate::catalog::TableDef;
use crate::error::{state, Result, SqlError};
use crate::exec::{check_rows, Row};
use crate::store::{View, SCAN_PAGE_ROWS_MAX};

/// What each shard does with the rows that pass the pushed comparisons.
#[derive(Debug, Clone)]
pub enum Work {
    /// Fold them into a partial aggregate (`GroupedAgg`).
    Aggregate {
        group_cols: Vec<usize>,
        specs: Vec<AggSpec>,
    },
    /// Send them back as SQL rows (every table column).
    Rows,
}

/// One shard's (or the pending rows') result.
pub enum Output {
    Aggregate(GroupedAgg),
    Rows(Vec<Row>),
}

/// Everything one shard needs (all `Send`: it travels to the shard).
#[derive(Debug, Clone)]
struct ShardScan {
    table: TableDef,
    preds: Vec<Pred>,
    /// Columns the work reads, besides the predicates' (sorted, no duplicates).
    needed: Vec<usize>,
    work: Work,
    /// Delta keys the statement's pending writes replace: read from the statement instead.
    skip: Arc<HashSet<Vec<u8>>>,
}

/// The physical type of every batch column: the table's, then the hidden row id.
pub fn batch_phys(t: &TableDef) -> Vec<PhysType> {
    let mut phys: Vec<PhysType> = t.columns.iter().map(|c| phys_of(&c.ty)).collect();
    phys.push(PhysType::Int);
    phys
}

/// Folds batches into the work's result.
struct Sink<'a> {
    table: &'a TableDef,
    agg: Option<GroupedAgg>,
    rows: Vec<Row>,
}

impl<'a> Sink<'a> {
    fn new(table: &'a TableDef, work: &Work) -> Result<Sink<'a>> {
        let agg = match work {
            Work::Aggregate { group_cols, specs } => Some(
                GroupedAgg::new(group_cols.clone(), specs.clone(), &batch_phys(table))
                    .map_err(|e| SqlError::internal(format!("columnar aggregate: {e}")))?,
            ),
            Work::Rows => None,
        };
        Ok(Sink {
            table,
            agg,
            rows: Vec::new(),
        })
    }

    fn add(&mut self, batch: &[Option<Vector>], rows: usize, sel: Option<&[u32]>) -> Result<()> {
        if let Some(agg) = &mut self.agg {
            return agg
                .update_vectors(batch, rows, sel)
                .map_err(super::pushdown::agg_err);
        }
        let all: Vec<u32>;
        let sel = match sel {
            Some(s) => s,
            None => {
                all = (0..rows as u32).collect();
                &all
            }
        };
        check_rows(self.rows.len() + sel.len())?;
        for &i in sel {
            let mut row = Vec::with_capacity(self.table.columns.len());
            for (c, def) in self.table.columns.iter().enumerate() {
                let col = batch[c]
                    .as_ref()
                    .ok_or_else(|| SqlError::internal("column not loaded"))?;
                row.push(to_value(col.get(i as usize), &def.ty)?);
            }
            self.rows.push(row);
        }
        Ok(())
    }

    fn finish(self) -> Output {
        match self.agg {
            Some(a) => Output::Aggregate(a),
            None => Output::Rows(self.rows),
        }
    }
}

/// Runs `work` over every live row of `t` passing `preds`: on every shard over its own
/// data, and here over the statement's pending rows. Sets `last_scan`.
pub async fn run_everywhere(
    t: &TableDef,
    preds: &[Pred],
    needed: &[usize],
    work: Work,
    view: &View<'_>,
) -> Result<Vec<Output>> {
    let pending = pending_rows(t, view)?;
    let mut needed = needed.to_vec();
    needed.sort_unstable();
    needed.dedup();
    let scan = ShardScan {
        table: t.clone(),
        preds: preds.to_vec(),
        needed,
        work,
        skip: Arc::new(pending.iter().map(|(k, _)| k.clone()).collect()),
    };
    let handle = view.handle;
    let calls = (0..handle.shard_count()).map(|shard| {
        let (h, scan) = (handle.clone(), scan.clone());
        handle.run_on(shard, move || scan_shard(h, shard, scan))
    });
    let answers = futures::future::join_all(calls).await;
    let mut counters = ScanCounters::default();
    let mut out = Vec::with_capacity(answers.len() + 1);
    for a in answers {
        let (o, c) = a.map_err(|e| SqlError::storage("columnar scan", e))??;
        counters.add(&c);
        out.push(o);
    }
    let pending: Vec<(Vec<u8>, Row)> = pending
        .into_iter()
        .filter_map(|(k, r)| r.map(|r| (k, r)))
        .collect();
    if !pending.is_empty() {
        let mut sink = Sink::new(t, &scan.work)?;
        add_rows(&mut sink, &scan.preds, &pending)?;
        counters.delta_rows_read += pending.len() as u64;
        out.push(sink.finish());
    }
    set_last_scan(counters);
    Ok(out)
}

/// The statement's and transaction's pending rows of `t` (newest layer winning; `None` is
/// a pending delete).
fn pending_rows(t: &TableDef, view: &View<'_>) -> Result<Vec<(Vec<u8>, Option<Row>)>> {
    let prefix = crate::keys::row_prefix(t.id);
    let end = crate::keys::prefix_end(&prefix);
    let mut out = Vec::new();
    for (k, v) in crate::rowagg::pending_rows(view, &prefix, end.as_deref()) {
        let row = match v {
            Some(v) => Some(crate::rowcodec::decode_row(v, t.columns.len())?),
            None => None,
        };
        out.push((k.to_vec(), row));
    }
    Ok(out)
}

/// Runs the pushed comparisons over row-wise rows (the delta, pending rows) and feeds the
/// passing ones to `sink`.
fn add_rows(sink: &mut Sink<'_>, preds: &[Pred], rows: &[(Vec<u8>, Row)]) -> Result<()> {
    let batch: Vec<Option<Vector>> = transpose(sink.table, rows)?
        .into_iter()
        .map(|c| Some(Vector::Flat(c)))
        .collect();
    let sel = select(&batch, preds, None)?;
    sink.add(&batch, rows.len(), sel.as_deref())
}

/// Runs `preds` over a batch, narrowing `sel`; `None` = every row passes.
fn select(
    batch: &[Option<Vector>],
    preds: &[Pred],
    mut sel: Option<Vec<u32>>,
) -> Result<Option<Vec<u32>>> {
    for p in preds {
        let col = batch
            .get(p.col)
            .and_then(Option::as_ref)
            .ok_or_else(|| SqlError::internal("filter column not loaded"))?;
        sel = Some(
            filter_vector(col, p.op, &p.constant, sel.as_deref())
                .map_err(|e| columnar_err("columnar filter", e))?,
        );
        if sel.as_ref().is_some_and(Vec::is_empty) {
            break;
        }
    }
    Ok(sel)
}

/// The shard's half: its delta, then its chunks.
async fn scan_shard(
    handle: EngineHandle,
    shard: usize,
    scan: ShardScan,
) -> Result<(Output, ScanCounters)> {
    let t = &scan.table;
    let mut counters = ScanCounters::default();
    // The delta before the chunks: see the module comment.
    let delta = read_delta(&handle, shard, t, &scan.skip).await?;
    let mut delta_ids = HashSet::with_capacity(delta.len());
    for (k, _) in &delta {
        delta_ids.insert(row_id_of_key(t.id, k)?);
    }
    let mut sink = Sink::new(t, &scan.work)?;
    let shard16 = u16::try_from(shard).map_err(|_| SqlError::internal("shard id"))?;
    for (chunk, header) in read_headers(&handle, shard16, t).await? {
        counters.chunks_total += 1;
        let rows = header.meta.rows;
        let skip = scan.preds.iter().any(|p| {
            header
                .meta
                .columns
                .get(p.col)
                .is_some_and(|s| !s.may_match(rows, p.op, &p.constant))
        });
        if skip {
            counters.chunks_skipped += 1;
            continue;
        }
        counters.chunk_rows_read += u64::from(rows);
        let at = ChunkAt {
            handle: &handle,
            table: t,
            shard: shard16,
            chunk,
            header: &header,
        };
        scan_chunk(&at, &scan, &delta_ids, &mut sink).await?;
        glommio::yield_if_needed().await;
    }
    if !delta.is_empty() {
        counters.delta_rows_read = delta.len() as u64;
        add_rows(&mut sink, &scan.preds, &delta)?;
    }
    Ok((sink.finish(), counters))
}

/// One chunk of one shard.
struct ChunkAt<'a> {
    handle: &'a EngineHandle,
    table: &'a TableDef,
    shard: u16,
    chunk: u64,
    header: &'a Header,
}

/// Filters one chunk (filter columns first; the rest only when rows pass) into `sink`.
async fn scan_chunk(
    at: &ChunkAt<'_>,
    scan: &ShardScan,
    delta_ids: &HashSet<i64>,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let rows = at.header.meta.rows as usize;
    let row_id_col = at.table.columns.len();
    let mut batch: Vec<Option<Vector>> = vec![None; row_id_col + 1];
    for p in &scan.preds {
        load(at, p.col, &mut batch).await?;
    }
    let mut sel = select(&batch, &scan.preds, None)?;
    if sel.as_ref().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    if !delta_ids.is_empty() {
        load(at, row_id_col, &mut batch).await?;
        sel = Some(drop_delta_ids(&batch, row_id_col, rows, sel, delta_ids)?);
    }
    for &c in &scan.needed {
        load(at, c, &mut batch).await?;
    }
    sink.add(&batch, rows, sel.as_deref())
}

fn drop_delta_ids(
    batch: &[Option<Vector>],
    row_id_col: usize,
    rows: usize,
    sel: Option<Vec<u32>>,
    delta_ids: &HashSet<i64>,
) -> Result<Vec<u32>> {
    let ids = batch
        .get(row_id_col)
        .and_then(Option::as_ref)
        .map(Vector::flat)
        .ok_or_else(|| SqlError::internal("row id column not loaded"))?;
    let mantis_columnar::Values::Int(ids) = &ids.values else {
        return Err(SqlError::new(
            state::DATA_CORRUPTED,
            "row id column is not an integer column",
        ));
    };
    let sel = sel.unwrap_or_else(|| (0..rows as u32).collect());
    Ok(sel
        .into_iter()
        .filter(|i| !delta_ids.contains(&ids[*i as usize]))
        .collect())
}

/// This shard's delta rows of `t`, minus the keys the statement replaces.
async fn read_delta(
    handle: &EngineHandle,
    shard: usize,
    t: &TableDef,
    skip: &HashSet<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, Row)>> {
    let mut out = Vec::new();
    for (k, v) in scan_all(handle, shard, &crate::keys::row_prefix(t.id)).await? {
        if !skip.contains(&k) {
            out.push((k, crate::rowcodec::decode_row(&v, t.columns.len())?));
        }
    }
    Ok(out)
}

/// This shard's chunk headers of `t`, in chunk order.
async fn read_headers(
    handle: &EngineHandle,
    shard: u16,
    t: &TableDef,
) -> Result<Vec<(u64, Header)>> {
    let prefix = keys::header_prefix(t.id, Some(shard));
    let mut out = Vec::new();
    for (k, v) in scan_all(handle, shard as usize, &prefix).await? {
        let (_, chunk) = keys::parse_header_key(t.id, &k)?;
        out.push((chunk, keys::decode_header(&k, &v)?));
    }
    Ok(out)
}

/// Every live entry under `prefix` on `shard` (run there: no copy across shards), page by
/// page.
async fn scan_all(
    handle: &EngineHandle,
    shard: usize,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut range = ScanRange::prefix(prefix);
    let mut out = Vec::new();
    loop {
        let page = handle
            .scan_on(shard, range.clone(), SCAN_PAGE_ROWS_MAX)
            .await
            .map_err(|e| SqlError::storage("columnar scan", e))?;
        let full = page.len() == SCAN_PAGE_ROWS_MAX;
        let last = page.last().map(|(k, _)| k.clone());
        out.extend(page.into_iter().map(|(k, e)| (k, e.value)));
        check_rows(out.len())?;
        match (full, last) {
            (true, Some(k)) => range = range.after(&k),
            _ => return Ok(out),
        }
    }
}

/// Fetches, verifies and decodes column `col` of the chunk into `batch` (once).
async fn load(at: &ChunkAt<'_>, col: usize, batch: &mut [Option<Vector>]) -> Result<()> {
    if batch.get(col).is_some_and(Option::is_some) {
        return Ok(());
    }
    let (t, chunk, shard) = (at.table, at.chunk, at.shard);
    let salt = *at.header.salts.get(col).ok_or_else(|| {
        SqlError::new(
            state::DATA_CORRUPTED,
            format!("chunk {chunk} has no column {col}"),
        )
    })?;
    let col16 = u16::try_from(col).map_err(|_| SqlError::internal("column number"))?;
    let key = keys::column_key(t.id, shard, chunk, col16, salt);
    let blob = at
        .handle
        .get_on(shard as usize, key)
        .await
        .map_err(|e| SqlError::storage("columnar chunk read", e))?
        .ok_or_else(|| {
            SqlError::new(
                state::DATA_CORRUPTED,
                format!("{}: chunk {shard}/{chunk} column {col} missing", t.name),
            )
        })?;
    let decoded = decode_vector(&blob.value).map_err(|e| {
        columnar_err(
            &format!("{}: chunk {shard}/{chunk} column {col}", t.name),
            e,
        )
    })?;
    if decoded.len() != at.header.meta.rows as usize {
        return Err(SqlError::new(
            state::DATA_CORRUPTED,
            "chunk column length differs from its header",
        ));
    }
    batch[col] = Some(decoded);
    Ok(())
}
