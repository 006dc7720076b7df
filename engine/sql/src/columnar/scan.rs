//! Reading a columnar table: the delta first, then the chunk headers; chunks whose min/max
//! exclude a pushed comparison are skipped whole, the others have only the needed columns
//! fetched, checksummed and decoded, and filtered into a selection vector. Chunk rows whose
//! row id is still in the delta (a merge committed between the two reads) are dropped, so
//! no row is seen twice; a row merged before the delta read is in a chunk read after it, so
//! none is missed (chunks are never deleted while the table exists).

use std::cell::Cell;
use std::collections::HashSet;

use mantis_columnar::kernels::filter_cmp;
use mantis_columnar::{decode_column, CmpOp, Column, Scalar, Values};

use super::convert::{constant_for, to_value};
use super::keys::{self, Header};
use super::merge::{delta_rows, row_id_of_key, transpose};
use crate::catalog::TableDef;
use crate::error::{state, Result, SqlError};
use crate::exec::Row;
use crate::plan::{BExpr, BinOp};
use crate::store::View;

/// What the last columnar scan on this thread read (tests and the benchmark look).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCounters {
    pub chunks_total: u64,
    pub chunks_skipped: u64,
    pub chunk_rows_read: u64,
    pub delta_rows_read: u64,
}

thread_local!(static LAST: Cell<ScanCounters> = const { Cell::new(ScanCounters {
    chunks_total: 0, chunks_skipped: 0, chunk_rows_read: 0, delta_rows_read: 0 }) });

pub fn last_scan() -> ScanCounters {
    LAST.with(Cell::get)
}

/// `column op constant`, runnable on scalars.
#[derive(Debug, Clone, PartialEq)]
pub struct Pred {
    pub col: usize,
    pub op: CmpOp,
    pub constant: Scalar,
}

fn cmp_op(op: BinOp) -> Option<CmpOp> {
    Some(match op {
        BinOp::Eq => CmpOp::Eq,
        BinOp::NotEq => CmpOp::NotEq,
        BinOp::Lt => CmpOp::Lt,
        BinOp::LtEq => CmpOp::LtEq,
        BinOp::Gt => CmpOp::Gt,
        BinOp::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        other => other,
    }
}

fn conjuncts<'a>(e: &'a BExpr, out: &mut Vec<&'a BExpr>) {
    match e {
        BExpr::Bin(BinOp::And, a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

fn pred_of(t: &TableDef, e: &BExpr) -> Option<Pred> {
    let BExpr::Bin(op, a, b) = e else {
        return None;
    };
    let op = cmp_op(*op)?;
    let (col, lit, op) = match (&**a, &**b) {
        (BExpr::Col(c), BExpr::Lit(v)) => (*c, v, op),
        (BExpr::Lit(v), BExpr::Col(c)) => (*c, v, flip(op)),
        _ => return None,
    };
    let constant = constant_for(&t.columns.get(col)?.ty, lit)?;
    Some(Pred { col, op, constant })
}

/// The comparisons of `filter` that run on scalars, and whether they are all of it.
pub fn preds_of(t: &TableDef, filter: Option<&BExpr>) -> (Vec<Pred>, bool) {
    let Some(f) = filter else {
        return (Vec::new(), true);
    };
    let mut cs = Vec::new();
    conjuncts(f, &mut cs);
    let preds: Vec<Pred> = cs.iter().filter_map(|c| pred_of(t, c)).collect();
    let all = preds.len() == cs.len();
    (preds, all)
}

fn columnar_err(what: &str, e: mantis_columnar::ColumnarError) -> SqlError {
    let code = match e {
        mantis_columnar::ColumnarError::Limit(_) => state::PROGRAM_LIMIT_EXCEEDED,
        mantis_columnar::ColumnarError::Type(_) => state::INTERNAL_ERROR,
        _ => state::DATA_CORRUPTED,
    };
    SqlError::new(code, format!("{what}: {e}"))
}

/// Runs `preds` over a batch; `None` = every row passes.
fn select(batch: &[Option<Column>], preds: &[Pred]) -> Result<Option<Vec<u32>>> {
    let mut sel: Option<Vec<u32>> = None;
    for p in preds {
        let col = batch
            .get(p.col)
            .and_then(Option::as_ref)
            .ok_or_else(|| SqlError::internal("filter column not loaded"))?;
        sel = Some(
            filter_cmp(col, p.op, &p.constant, sel.as_deref())
                .map_err(|e| columnar_err("columnar filter", e))?,
        );
    }
    Ok(sel)
}

struct ChunkRef {
    shard: u16,
    chunk: u64,
    header: Header,
}

/// Feeds every live row of `t` passing `preds` to `f`, batch by batch: `f(batch, rows,
/// selection)` where `batch[c]` is loaded for every `c` in `needed` (and the preds').
pub async fn for_each_batch(
    t: &TableDef,
    preds: &[Pred],
    needed: &[usize],
    view: &View<'_>,
    mut f: impl FnMut(&[Option<Column>], usize, Option<&[u32]>) -> Result<()>,
) -> Result<ScanCounters> {
    let mut counters = ScanCounters::default();
    // The delta before the chunks: see the module comment.
    let delta = delta_rows(t, view).await?;
    let mut delta_ids = HashSet::with_capacity(delta.len());
    for (k, _) in &delta {
        delta_ids.insert(row_id_of_key(t.id, k)?);
    }
    let chunks = read_headers(t, view).await?;
    let mut load: Vec<usize> = needed
        .iter()
        .copied()
        .chain(preds.iter().map(|p| p.col))
        .collect();
    load.sort_unstable();
    load.dedup();
    let row_id_col = t.columns.len();
    for c in &chunks {
        counters.chunks_total += 1;
        let rows = c.header.meta.rows;
        let skip = preds.iter().any(|p| {
            c.header
                .meta
                .columns
                .get(p.col)
                .is_some_and(|s| !s.may_match(rows, p.op, &p.constant))
        });
        if skip {
            counters.chunks_skipped += 1;
            continue;
        }
        let mut want = load.clone();
        if !delta_ids.is_empty() {
            want.push(row_id_col);
        }
        let batch = load_columns(t, c, &want, view).await?;
        counters.chunk_rows_read += u64::from(rows);
        let mut sel = select(&batch, preds)?;
        if !delta_ids.is_empty() {
            sel = Some(drop_delta_ids(
                &batch,
                row_id_col,
                rows as usize,
                sel,
                &delta_ids,
            )?);
        }
        f(&batch, rows as usize, sel.as_deref())?;
        glommio::yield_if_needed().await;
    }
    if !delta.is_empty() {
        counters.delta_rows_read = delta.len() as u64;
        let batch: Vec<Option<Column>> = transpose(t, &delta)?.into_iter().map(Some).collect();
        let sel = select(&batch, preds)?;
        f(&batch, delta.len(), sel.as_deref())?;
    }
    LAST.with(|l| l.set(counters));
    Ok(counters)
}

fn drop_delta_ids(
    batch: &[Option<Column>],
    row_id_col: usize,
    rows: usize,
    sel: Option<Vec<u32>>,
    delta_ids: &HashSet<i64>,
) -> Result<Vec<u32>> {
    let Some(Some(Column {
        values: Values::Int(ids),
        ..
    })) = batch.get(row_id_col)
    else {
        return Err(SqlError::internal("row id column not loaded"));
    };
    let sel = sel.unwrap_or_else(|| (0..rows as u32).collect());
    Ok(sel
        .into_iter()
        .filter(|i| !delta_ids.contains(&ids[*i as usize]))
        .collect())
}

async fn read_headers(t: &TableDef, view: &View<'_>) -> Result<Vec<ChunkRef>> {
    let prefix = keys::header_prefix(t.id, None);
    let end = crate::keys::prefix_end(&prefix);
    let mut out = Vec::new();
    for (k, v) in view.scan(prefix, end).await? {
        let (shard, chunk) = keys::parse_header_key(t.id, &k)?;
        out.push(ChunkRef {
            shard,
            chunk,
            header: keys::decode_header(&k, &v)?,
        });
    }
    Ok(out)
}

async fn load_columns(
    t: &TableDef,
    c: &ChunkRef,
    want: &[usize],
    view: &View<'_>,
) -> Result<Vec<Option<Column>>> {
    let mut batch: Vec<Option<Column>> = vec![None; t.columns.len() + 1];
    for &col in want {
        let salt = *c.header.salts.get(col).ok_or_else(|| {
            SqlError::new(
                state::DATA_CORRUPTED,
                format!("chunk {} has no column {col}", c.chunk),
            )
        })?;
        let col16 = u16::try_from(col).map_err(|_| SqlError::internal("column number"))?;
        let key = keys::column_key(t.id, c.shard, c.chunk, col16, salt);
        let blob = view.get(&key).await?.ok_or_else(|| {
            SqlError::new(
                state::DATA_CORRUPTED,
                format!(
                    "{}: chunk {}/{} column {col} missing",
                    t.name, c.shard, c.chunk
                ),
            )
        })?;
        let decoded = decode_column(&blob).map_err(|e| {
            columnar_err(
                &format!("{}: chunk {}/{} column {col}", t.name, c.shard, c.chunk),
                e,
            )
        })?;
        if decoded.len() != c.header.meta.rows as usize {
            return Err(SqlError::new(
                state::DATA_CORRUPTED,
                "chunk column length differs from its header",
            ));
        }
        batch[col] = Some(decoded);
    }
    Ok(batch)
}

/// Every row of `t` passing `preds` (a superset of the rows passing the full filter, which
/// the executor applies afterwards), as SQL rows.
pub async fn scan_rows(t: &TableDef, preds: &[Pred], view: &View<'_>) -> Result<Vec<Row>> {
    let all: Vec<usize> = (0..t.columns.len()).collect();
    let mut out: Vec<Row> = Vec::new();
    for_each_batch(t, preds, &all, view, |batch, rows, sel| {
        let idx: Vec<usize> = match sel {
            Some(s) => s.iter().map(|i| *i as usize).collect(),
            None => (0..rows).collect(),
        };
        crate::exec::check_rows(out.len() + idx.len())?;
        for i in idx {
            let mut row = Vec::with_capacity(t.columns.len());
            for (c, def) in t.columns.iter().enumerate() {
                let col = batch[c]
                    .as_ref()
                    .ok_or_else(|| SqlError::internal("column not loaded"))?;
                row.push(to_value(col.get(i), &def.ty)?);
            }
            out.push(row);
        }
        Ok(())
    })
    .await?;
    Ok(out)
}
