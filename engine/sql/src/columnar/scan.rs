//! Pushed comparisons (`Pred`), the scan counters, and the statement-side entry points of a
//! columnar scan: the reading itself runs on the shards that own the data (`onshard`), each
//! returning only its rows that pass the pushed comparisons, or its partial aggregate.

use std::cell::Cell;

use mantis_columnar::{CmpOp, Scalar};

use super::convert::constant_for;
use super::onshard::{run_everywhere, Output, Work};
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

pub(crate) fn set_last_scan(c: ScanCounters) {
    LAST.with(|l| l.set(c));
}

impl ScanCounters {
    pub(crate) fn add(&mut self, o: &ScanCounters) {
        self.chunks_total += o.chunks_total;
        self.chunks_skipped += o.chunks_skipped;
        self.chunk_rows_read += o.chunk_rows_read;
        self.delta_rows_read += o.delta_rows_read;
    }
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

pub(crate) fn columnar_err(what: &str, e: mantis_columnar::ColumnarError) -> SqlError {
    let code = match e {
        mantis_columnar::ColumnarError::Limit(_) => state::PROGRAM_LIMIT_EXCEEDED,
        mantis_columnar::ColumnarError::Type(_) => state::INTERNAL_ERROR,
        _ => state::DATA_CORRUPTED,
    };
    SqlError::new(code, format!("{what}: {e}"))
}

/// Every row of `t` passing `preds` (a superset of the rows passing the full filter, which
/// the executor applies afterwards), as SQL rows: each shard filters its own chunks and
/// delta and sends back only the rows that pass.
pub async fn scan_rows(t: &TableDef, preds: &[Pred], view: &View<'_>) -> Result<Vec<Row>> {
    let all: Vec<usize> = (0..t.columns.len()).collect();
    let mut out: Vec<Row> = Vec::new();
    for o in run_everywhere(t, preds, &all, Work::Rows, view).await? {
        if let Output::Rows(rows) = o {
            crate::exec::check_rows(out.len() + rows.len())?;
            out.extend(rows);
        }
    }
    Ok(out)
}
