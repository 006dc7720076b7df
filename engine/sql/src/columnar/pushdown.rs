//! Aggregates pushed into the column kernels: `Aggregate { Scan columnar [Filter] }` whose
//! filter is all scalar comparisons, whose GROUP BY is plain columns and whose aggregates
//! are COUNT/SUM/AVG/MIN/MAX of plain columns (no DISTINCT) runs per chunk on the shard
//! that owns the chunk (`onshard`: filter → selection vector → hash aggregation into
//! partial states), and the shards' partials merge into the result rows the row executor
//! would produce. The shape check is shared with the row tables' pushdown (`aggscan`).
//! Anything else reads the table into rows and runs the ordinary executor.

use std::rc::Rc;

use mantis_columnar::{AggKind, AggSpec, AggState, GroupedAgg, PhysType, Scalar};
use rust_decimal::Decimal;

use super::convert::{ordered, to_value};
use super::onshard::{batch_phys, run_everywhere, Output, Work};
use super::scan::{preds_of, Pred};
use crate::aggscan::{agg_over_scan, AggOverScan};
use crate::catalog::TableDef;
use crate::error::{state, Result, SqlError};
use crate::exec::Row;
use crate::plan::{AggCall, AggFunc, BExpr, BinOp, Plan};
use crate::store::View;
use crate::types::{SqlType, Value};

/// A pushed-down aggregation, ready to run.
pub struct AggPushdown<'a> {
    pub table: &'a Rc<TableDef>,
    pub preds: Vec<Pred>,
    pub group_cols: Vec<usize>,
    pub specs: Vec<AggSpec>,
    pub aggs: &'a [AggCall],
}

/// The pushed-down form of an `Aggregate` node, when it has one.
pub fn analyze(plan: &Plan) -> Option<AggPushdown<'_>> {
    let AggOverScan {
        table,
        filter,
        group,
        aggs,
        ..
    } = agg_over_scan(plan)?;
    if !table.is_columnar() {
        return None;
    }
    let (preds, all) = preds_of(table, filter.as_ref());
    if !all {
        return None;
    }
    let group_cols = group
        .iter()
        .map(|g| match g {
            BExpr::Col(c) if *c < table.columns.len() => Some(*c),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let specs = aggs
        .iter()
        .map(|a| spec_of(table, a))
        .collect::<Option<Vec<_>>>()?;
    Some(AggPushdown {
        table,
        preds,
        group_cols,
        specs,
        aggs,
    })
}

fn spec_of(t: &TableDef, a: &AggCall) -> Option<AggSpec> {
    if a.distinct {
        return None;
    }
    let column = match &a.arg {
        None => None,
        Some(BExpr::Col(c)) if *c < t.columns.len() => Some(*c),
        Some(_) => return None,
    };
    let ty = column.map(|c| &t.columns[c].ty);
    let kind = match (a.func, ty) {
        (AggFunc::CountStar, _) => AggKind::CountStar,
        (AggFunc::Count, Some(_)) => AggKind::Count,
        // Integer sums are exact in i128; float sums only for double (real sums round
        // through f32 at every step in the row executor).
        (AggFunc::Sum | AggFunc::Avg, Some(ty)) if ty.is_integer() || *ty == SqlType::Float64 => {
            if a.func == AggFunc::Sum {
                AggKind::Sum
            } else {
                AggKind::Avg
            }
        }
        (AggFunc::Min, Some(ty)) if ordered(ty) => AggKind::Min,
        (AggFunc::Max, Some(ty)) if ordered(ty) => AggKind::Max,
        _ => return None,
    };
    Some(AggSpec { kind, column })
}

/// Collects the `Aggregate` nodes of `plan` (not inside subqueries) that push down.
pub fn candidates<'a>(plan: &'a Plan, out: &mut Vec<&'a Plan>) {
    crate::aggscan::candidates(plan, &|p| analyze(p).is_some(), out);
}

impl AggPushdown<'_> {
    /// The aggregate's output rows: group values, then aggregate values.
    pub async fn run(&self, view: &View<'_>) -> Result<Vec<Row>> {
        let t = self.table;
        let phys = batch_phys(t);
        let mut total = GroupedAgg::new(self.group_cols.clone(), self.specs.clone(), &phys)
            .map_err(|e| SqlError::internal(format!("columnar aggregate: {e}")))?;
        let needed: Vec<usize> = self
            .group_cols
            .iter()
            .copied()
            .chain(self.specs.iter().filter_map(|s| s.column))
            .collect();
        let work = Work::Aggregate {
            group_cols: self.group_cols.clone(),
            specs: self.specs.clone(),
        };
        for part in run_everywhere(t, &self.preds, &needed, work, view).await? {
            if let Output::Aggregate(part) = part {
                total.merge(part).map_err(agg_err)?;
            }
        }
        let mut groups = total.into_groups();
        if groups.is_empty() && self.group_cols.is_empty() {
            // An aggregate without GROUP BY yields one row even over no input.
            groups.push((
                Vec::new(),
                self.specs.iter().map(|s| empty_state(s, &phys)).collect(),
            ));
        }
        let mut out = Vec::with_capacity(groups.len());
        for (keys, states) in groups {
            let mut row = Vec::with_capacity(keys.len() + states.len());
            for (k, c) in keys.into_iter().zip(&self.group_cols) {
                row.push(to_value(k, &t.columns[*c].ty)?);
            }
            for ((st, a), spec) in states.into_iter().zip(self.aggs).zip(&self.specs) {
                row.push(finish(a, spec, st, t)?);
            }
            out.push(row);
        }
        Ok(out)
    }
}

fn empty_state(s: &AggSpec, phys: &[PhysType]) -> AggState {
    match (s.kind, s.column.and_then(|c| phys.get(c))) {
        (AggKind::Sum | AggKind::Avg, Some(PhysType::Float)) => {
            AggState::SumFloat { sum: 0.0, count: 0 }
        }
        (AggKind::Sum | AggKind::Avg, _) => AggState::SumInt { sum: 0, count: 0 },
        (AggKind::Min, _) => AggState::Min(None),
        (AggKind::Max, _) => AggState::Max(None),
        _ => AggState::Count(0),
    }
}

pub(crate) fn agg_err(e: mantis_columnar::ColumnarError) -> SqlError {
    match e {
        mantis_columnar::ColumnarError::Limit(m) => SqlError::new(state::PROGRAM_LIMIT_EXCEEDED, m),
        other => SqlError::internal(format!("columnar aggregate: {other}")),
    }
}

/// The SQL value of a finished aggregate, typed as the row executor types it.
fn finish(a: &AggCall, spec: &AggSpec, st: AggState, t: &TableDef) -> Result<Value> {
    let div = |sum: Value, n: Value| crate::eval::binary(BinOp::Div, sum, n);
    Ok(match st {
        AggState::Count(n) => Value::Int64(n),
        AggState::SumInt { count: 0, .. } | AggState::SumFloat { count: 0, .. } => Value::Null,
        AggState::SumInt { sum, count } => {
            let exact = Value::Numeric(Decimal::from_i128_with_scale(sum, 0));
            match (spec.kind, &a.ty) {
                (AggKind::Sum, SqlType::Int64) => {
                    Value::Int64(i64::try_from(sum).map_err(|_| {
                        SqlError::new(state::NUMERIC_OUT_OF_RANGE, "bigint out of range")
                    })?)
                }
                (AggKind::Sum, SqlType::Numeric) => exact,
                (AggKind::Avg, SqlType::Float64) => {
                    div(Value::Float64(sum as f64), Value::Float64(count as f64))?
                }
                (AggKind::Avg, _) => div(exact, Value::Numeric(Decimal::from(count)))?,
                (_, other) => crate::cast::cast(exact, other, false)?,
            }
        }
        AggState::SumFloat { sum, count } => match spec.kind {
            AggKind::Avg => div(Value::Float64(sum), Value::Float64(count as f64))?,
            _ => Value::Float64(sum),
        },
        AggState::Min(s) | AggState::Max(s) => {
            let ty = &t.columns[spec.column.unwrap_or(0)].ty;
            to_value(s.unwrap_or(Scalar::Null), ty)?
        }
    })
}
