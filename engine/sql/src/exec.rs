//! The executor: runs a plan over rows fetched beforehand by `access` (so evaluation is
//! synchronous), materializing each operator's output. Hash joins for equi-joins, nested
//! loops otherwise; hash aggregation; stable sorts; subqueries cached unless correlated.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{state, Result, SqlError};
use crate::eval::{eval, truth, Outer};
use crate::keys::tuple_key;
use crate::plan::{AggCall, AggFunc, BExpr, JoinKind, Plan, SetOpKind, SortKey, SubPlan};
use crate::types::{sort_cmp, SqlType, Value};

pub type Row = Vec<Value>;

/// A table's rows with their keys, as fetched for one statement.
pub type KeyedRows = Rc<Vec<(Vec<u8>, Row)>>;

/// Rows produced by one operator, at most (a runaway cross join fails instead of eating
/// the shard's memory).
pub const OPERATOR_ROWS_MAX: usize = 50_000_000;

/// Everything one statement execution reads: parameters and the prefetched table data.
#[derive(Default)]
pub struct Ctx {
    pub params: Vec<Value>,
    /// Full-table contents by table id: (row key, row).
    pub tables: HashMap<u32, KeyedRows>,
    /// Rows of point and index lookups, by the address of their plan node.
    pub fetched: HashMap<usize, Rc<Vec<Row>>>,
    /// Results of uncorrelated subqueries, by the address of their plan.
    sub_cache: RefCell<HashMap<usize, Rc<Vec<Row>>>>,
}

impl Ctx {
    pub fn new(params: Vec<Value>) -> Ctx {
        Ctx {
            params,
            ..Ctx::default()
        }
    }

    pub fn run_subquery(
        &self,
        sp: &Rc<SubPlan>,
        row: &[Value],
        outer: &Outer,
    ) -> Result<Rc<Vec<Row>>> {
        let id = Rc::as_ptr(sp) as usize;
        if !sp.correlated {
            if let Some(r) = self.sub_cache.borrow().get(&id) {
                return Ok(r.clone());
            }
        }
        let mut stack: Vec<&[Value]> = outer.to_vec();
        stack.push(row);
        let rows = Rc::new(exec(&sp.plan, self, &stack)?);
        if !sp.correlated {
            self.sub_cache.borrow_mut().insert(id, rows.clone());
        }
        Ok(rows)
    }
}

pub(crate) fn check_rows(n: usize) -> Result<()> {
    if n > OPERATOR_ROWS_MAX {
        return Err(SqlError::new(
            state::PROGRAM_LIMIT_EXCEEDED,
            format!("an operator produced more than {OPERATOR_ROWS_MAX} rows"),
        ));
    }
    Ok(())
}

fn passes(pred: &Option<BExpr>, row: &[Value], ctx: &Ctx, outer: &Outer) -> Result<bool> {
    match pred {
        None => Ok(true),
        Some(p) => Ok(truth(&eval(p, row, ctx, outer)?)? == Some(true)),
    }
}

pub fn exec(plan: &Plan, ctx: &Ctx, outer: &Outer) -> Result<Vec<Row>> {
    match plan {
        Plan::Values { rows, .. } => {
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut vals = Vec::with_capacity(r.len());
                for e in r {
                    vals.push(eval(e, &[], ctx, outer)?);
                }
                out.push(vals);
            }
            Ok(out)
        }
        Plan::Scan { table, filter } if table.is_columnar() || table.is_document() => {
            let id = plan as *const Plan as usize;
            let data = ctx
                .fetched
                .get(&id)
                .ok_or_else(|| SqlError::internal(format!("table {} not fetched", table.name)))?;
            let mut out = Vec::new();
            for row in data.iter() {
                if passes(filter, row, ctx, outer)? {
                    out.push(row.clone());
                }
            }
            Ok(out)
        }
        Plan::Scan { table, filter } => {
            let data = ctx
                .tables
                .get(&table.id)
                .ok_or_else(|| SqlError::internal(format!("table {} not fetched", table.name)))?;
            let mut out = Vec::new();
            for (_, row) in data.iter() {
                if passes(filter, row, ctx, outer)? {
                    out.push(row.clone());
                }
            }
            Ok(out)
        }
        Plan::PkGet { filter, .. } | Plan::IndexScan { filter, .. } => {
            let id = plan as *const Plan as usize;
            let data = ctx
                .fetched
                .get(&id)
                .ok_or_else(|| SqlError::internal("lookup not fetched"))?;
            let mut out = Vec::new();
            for row in data.iter() {
                if passes(filter, row, ctx, outer)? {
                    out.push(row.clone());
                }
            }
            Ok(out)
        }
        Plan::GenerateSeries { args } => generate_series(args, ctx, outer),
        Plan::Filter { input, pred } => {
            let rows = exec(input, ctx, outer)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                if truth(&eval(pred, &r, ctx, outer)?)? == Some(true) {
                    out.push(r);
                }
            }
            Ok(out)
        }
        Plan::Project { input, exprs } => {
            let rows = exec(input, ctx, outer)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut vals = Vec::with_capacity(exprs.len());
                for e in exprs {
                    vals.push(eval(e, &r, ctx, outer)?);
                }
                out.push(vals);
            }
            Ok(out)
        }
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
        } => {
            let l = exec(left, ctx, outer)?;
            let r = exec(right, ctx, outer)?;
            join(
                l,
                r,
                left.width(),
                right.width(),
                *kind,
                equi,
                on,
                ctx,
                outer,
            )
        }
        Plan::Aggregate { input, group, aggs } => {
            // Computed before execution by the columnar kernels (access::prefetch).
            if let Some(rows) = ctx.fetched.get(&(plan as *const Plan as usize)) {
                return Ok(rows.as_ref().clone());
            }
            let rows = exec(input, ctx, outer)?;
            aggregate(rows, group, aggs, ctx, outer)
        }
        Plan::Sort { input, keys } => {
            let rows = exec(input, ctx, outer)?;
            sort(rows, keys, ctx, outer)
        }
        Plan::Limit {
            input,
            limit,
            offset,
        } => {
            let rows = exec(input, ctx, outer)?;
            let count = |e: &Option<BExpr>| -> Result<Option<usize>> {
                match e {
                    None => Ok(None),
                    Some(e) => match eval(e, &[], ctx, outer)? {
                        Value::Null => Ok(None),
                        v => {
                            let n = v.as_i64().ok_or_else(|| {
                                SqlError::mismatch("LIMIT/OFFSET must be an integer")
                            })?;
                            if n < 0 {
                                return Err(SqlError::new(
                                    "2201W",
                                    "LIMIT/OFFSET must not be negative",
                                ));
                            }
                            Ok(Some(n as usize))
                        }
                    },
                }
            };
            let off = count(offset)?.unwrap_or(0);
            let lim = count(limit)?;
            Ok(rows
                .into_iter()
                .skip(off)
                .take(lim.unwrap_or(usize::MAX))
                .collect())
        }
        Plan::Distinct { input } => {
            let rows = exec(input, ctx, outer)?;
            let mut seen = std::collections::HashSet::new();
            Ok(rows
                .into_iter()
                .filter(|r| seen.insert(tuple_key(r)))
                .collect())
        }
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => {
            let l = exec(left, ctx, outer)?;
            let r = exec(right, ctx, outer)?;
            Ok(set_op(*kind, *all, l, r))
        }
    }
}

fn generate_series(args: &[BExpr], ctx: &Ctx, outer: &Outer) -> Result<Vec<Row>> {
    let mut vals = Vec::new();
    for a in args {
        vals.push(eval(a, &[], ctx, outer)?);
    }
    if vals.iter().any(Value::is_null) {
        return Ok(Vec::new());
    }
    let get = |i: usize| vals.get(i).and_then(Value::as_i64);
    let (Some(start), Some(stop)) = (get(0), get(1)) else {
        return Err(SqlError::mismatch(
            "generate_series needs integer arguments",
        ));
    };
    let step = get(2).unwrap_or(1);
    if step == 0 {
        return Err(SqlError::new(
            state::INVALID_PARAMETER_VALUE,
            "step size cannot equal zero",
        ));
    }
    let wide = vals.iter().any(|v| matches!(v, Value::Int64(_)));
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i <= stop) || (step < 0 && i >= stop) {
        out.push(vec![if wide {
            Value::Int64(i)
        } else {
            Value::Int32(i as i32)
        }]);
        check_rows(out.len())?;
        match i.checked_add(step) {
            Some(n) => i = n,
            None => break,
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn join(
    l: Vec<Row>,
    r: Vec<Row>,
    lw: usize,
    rw: usize,
    kind: JoinKind,
    equi: &[(BExpr, BExpr)],
    on: &Option<BExpr>,
    ctx: &Ctx,
    outer: &Outer,
) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    let mut r_matched = vec![false; r.len()];
    // Hash the right side on its equality keys; NULL keys never match.
    let mut table: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    if !equi.is_empty() {
        for (j, row) in r.iter().enumerate() {
            let mut key = Vec::with_capacity(equi.len());
            for (_, re) in equi {
                key.push(eval(re, row, ctx, outer)?);
            }
            if key.iter().any(Value::is_null) {
                continue;
            }
            table.entry(tuple_key(&key)).or_default().push(j);
        }
    }
    let all_right: Vec<usize> = (0..r.len()).collect();
    for lrow in &l {
        let candidates: &[usize] = if equi.is_empty() {
            &all_right
        } else {
            let mut key = Vec::with_capacity(equi.len());
            for (le, _) in equi {
                key.push(eval(le, lrow, ctx, outer)?);
            }
            if key.iter().any(Value::is_null) {
                &[]
            } else {
                table.get(&tuple_key(&key)).map_or(&[], |v| v.as_slice())
            }
        };
        let mut matched = false;
        for &j in candidates {
            let mut combined = Vec::with_capacity(lw + rw);
            combined.extend_from_slice(lrow);
            combined.extend_from_slice(&r[j]);
            if passes(on, &combined, ctx, outer)? {
                matched = true;
                r_matched[j] = true;
                out.push(combined);
                check_rows(out.len())?;
            }
        }
        if !matched && matches!(kind, JoinKind::Left | JoinKind::Full) {
            let mut combined = lrow.clone();
            combined.extend(std::iter::repeat_n(Value::Null, rw));
            out.push(combined);
        }
    }
    if matches!(kind, JoinKind::Right | JoinKind::Full) {
        for (j, m) in r_matched.iter().enumerate() {
            if !m {
                let mut combined: Row = std::iter::repeat_n(Value::Null, lw).collect();
                combined.extend_from_slice(&r[j]);
                out.push(combined);
            }
        }
    }
    Ok(out)
}

/// Running state of one aggregate in one group.
#[derive(Clone)]
pub(crate) struct AggState {
    count: i64,
    acc: Value,
    seen: Option<std::collections::HashSet<Vec<u8>>>,
}

/// The empty state of each aggregate of `aggs`.
pub(crate) fn fresh_states(aggs: &[AggCall]) -> Vec<AggState> {
    aggs.iter()
        .map(|a| AggState {
            count: 0,
            acc: Value::Null,
            seen: a.distinct.then(Default::default),
        })
        .collect()
}

/// Folds the partial state `other` (of the same aggregate over other rows) into `st`: what
/// `accumulate` would have reached over both sets of rows. Not for DISTINCT aggregates,
/// whose partial states could count one value twice (the push-down excludes them).
pub(crate) fn merge_state(a: &AggCall, st: &mut AggState, other: AggState) -> Result<()> {
    debug_assert!(!a.distinct, "DISTINCT aggregates are not merged");
    if other.count == 0 {
        return Ok(());
    }
    st.count += other.count;
    match a.func {
        AggFunc::Count | AggFunc::CountStar => {}
        AggFunc::Sum | AggFunc::Avg => {
            st.acc = if st.acc.is_null() {
                other.acc
            } else {
                crate::eval::binary(crate::plan::BinOp::Add, st.acc.clone(), other.acc)?
            };
        }
        AggFunc::Min | AggFunc::Max => {
            let replace = st.acc.is_null() || {
                let ord = sort_cmp(&other.acc, &st.acc);
                (a.func == AggFunc::Min && ord == Ordering::Less)
                    || (a.func == AggFunc::Max && ord == Ordering::Greater)
            };
            if replace {
                st.acc = other.acc;
            }
        }
    }
    Ok(())
}

fn aggregate(
    rows: Vec<Row>,
    group: &[BExpr],
    aggs: &[AggCall],
    ctx: &Ctx,
    outer: &Outer,
) -> Result<Vec<Row>> {
    let fresh = fresh_states(aggs);
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut groups: Vec<(Row, Vec<AggState>)> = Vec::new();
    for row in &rows {
        let mut keyvals = Vec::with_capacity(group.len());
        for g in group {
            keyvals.push(eval(g, row, ctx, outer)?);
        }
        let k = tuple_key(&keyvals);
        let gi = match index.get(&k) {
            Some(i) => *i,
            None => {
                groups.push((keyvals, fresh.clone()));
                index.insert(k, groups.len() - 1);
                groups.len() - 1
            }
        };
        let states = &mut groups[gi].1;
        for (a, st) in aggs.iter().zip(states.iter_mut()) {
            let v = match &a.arg {
                Some(e) => eval(e, row, ctx, outer)?,
                None => Value::Bool(true),
            };
            accumulate(a, st, v)?;
        }
    }
    if groups.is_empty() && group.is_empty() {
        groups.push((Vec::new(), fresh));
    }
    let mut out = Vec::with_capacity(groups.len());
    for (mut keyvals, states) in groups {
        for (a, st) in aggs.iter().zip(states) {
            keyvals.push(finish(a, st)?);
        }
        out.push(keyvals);
    }
    Ok(out)
}

pub(crate) fn accumulate(a: &AggCall, st: &mut AggState, v: Value) -> Result<()> {
    if v.is_null() {
        return Ok(());
    }
    if let Some(seen) = &mut st.seen {
        if !seen.insert(tuple_key(std::slice::from_ref(&v))) {
            return Ok(());
        }
    }
    st.count += 1;
    match a.func {
        AggFunc::Count | AggFunc::CountStar => {}
        AggFunc::Sum | AggFunc::Avg => {
            let v = match (&a.ty, a.func) {
                (SqlType::Int64, AggFunc::Sum) => Value::Int64(v.as_i64().unwrap_or(0)),
                (SqlType::Numeric, _) => match v.as_decimal() {
                    Some(d) => Value::Numeric(d),
                    None => v,
                },
                (SqlType::Float64, _) => Value::Float64(v.as_f64().unwrap_or(0.0)),
                _ => v,
            };
            st.acc = if st.acc.is_null() {
                v
            } else {
                crate::eval::binary(crate::plan::BinOp::Add, st.acc.clone(), v)?
            };
        }
        AggFunc::Min | AggFunc::Max => {
            let replace = st.acc.is_null() || {
                let ord = sort_cmp(&v, &st.acc);
                (a.func == AggFunc::Min && ord == Ordering::Less)
                    || (a.func == AggFunc::Max && ord == Ordering::Greater)
            };
            if replace {
                st.acc = v;
            }
        }
    }
    Ok(())
}

pub(crate) fn finish(a: &AggCall, st: AggState) -> Result<Value> {
    Ok(match a.func {
        AggFunc::Count | AggFunc::CountStar => Value::Int64(st.count),
        AggFunc::Avg => {
            if st.count == 0 {
                Value::Null
            } else {
                let n = match a.ty {
                    SqlType::Float64 => Value::Float64(st.count as f64),
                    _ => Value::Numeric(rust_decimal::Decimal::from(st.count)),
                };
                crate::eval::binary(crate::plan::BinOp::Div, st.acc, n)?
            }
        }
        _ => st.acc,
    })
}

pub fn sort(rows: Vec<Row>, keys: &[SortKey], ctx: &Ctx, outer: &Outer) -> Result<Vec<Row>> {
    let mut keyed: Vec<(Vec<Value>, Row)> = Vec::with_capacity(rows.len());
    for r in rows {
        let mut k = Vec::with_capacity(keys.len());
        for sk in keys {
            k.push(eval(&sk.expr, &r, ctx, outer)?);
        }
        keyed.push((k, r));
    }
    keyed.sort_by(|(a, _), (b, _)| {
        for (i, sk) in keys.iter().enumerate() {
            let (x, y) = (&a[i], &b[i]);
            let ord = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => {
                    if sk.nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (false, true) => {
                    if sk.nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                _ => {
                    let o = sort_cmp(x, y);
                    if sk.desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}

fn set_op(kind: SetOpKind, all: bool, l: Vec<Row>, r: Vec<Row>) -> Vec<Row> {
    match kind {
        SetOpKind::Union => {
            let mut out = l;
            out.extend(r);
            if !all {
                let mut seen = std::collections::HashSet::new();
                out.retain(|row| seen.insert(tuple_key(row)));
            }
            out
        }
        SetOpKind::Intersect | SetOpKind::Except => {
            let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
            for row in &r {
                *counts.entry(tuple_key(row)).or_default() += 1;
            }
            let mut emitted = std::collections::HashSet::new();
            let mut out = Vec::new();
            for row in l {
                let k = tuple_key(&row);
                let c = counts.get(&k).copied().unwrap_or(0);
                let keep = match (kind, all) {
                    (SetOpKind::Intersect, true) => {
                        if c > 0 {
                            counts.insert(k, c - 1);
                            true
                        } else {
                            false
                        }
                    }
                    (SetOpKind::Intersect, false) => c > 0 && emitted.insert(k),
                    (_, true) => {
                        if c > 0 {
                            counts.insert(k, c - 1);
                            false
                        } else {
                            true
                        }
                    }
                    (_, false) => c == 0 && emitted.insert(k),
                };
                if keep {
                    out.push(row);
                }
            }
            out
        }
    }
}
