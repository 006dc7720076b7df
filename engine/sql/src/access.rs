//! Fetches, before execution, every row a plan's access nodes read: whole tables for scans,
//! one `get` per primary-key lookup, key ranges for index scans. Runs the only awaits of a
//! query, so evaluation afterwards is synchronous.

use std::rc::Rc;

use crate::catalog::TableDef;
use crate::error::{Result, SqlError};
use crate::eval::eval;
use crate::exec::{Ctx, Row};
use crate::keys;
use crate::plan::{BExpr, KeyRange, Plan};
use crate::rowcodec::decode_row;
use crate::store::View;
use crate::types::Value;

/// Collects the access nodes of `plan` and of every subquery inside it.
pub fn access_nodes<'a>(plan: &'a Plan, out: &mut Vec<&'a Plan>) {
    let mut exprs: Vec<&'a BExpr> = Vec::new();
    match plan {
        Plan::Scan { filter, .. } | Plan::PkGet { filter, .. } | Plan::IndexScan { filter, .. } => {
            out.push(plan);
            exprs.extend(filter.iter());
        }
        Plan::Values { rows, .. } => exprs.extend(rows.iter().flatten()),
        Plan::GenerateSeries { args } => exprs.extend(args.iter()),
        Plan::Filter { input, pred } => {
            access_nodes(input, out);
            exprs.push(pred);
        }
        Plan::Project { input, exprs: es } => {
            access_nodes(input, out);
            exprs.extend(es.iter());
        }
        Plan::Join {
            left,
            right,
            equi,
            on,
            ..
        } => {
            access_nodes(left, out);
            access_nodes(right, out);
            for (a, b) in equi {
                exprs.push(a);
                exprs.push(b);
            }
            exprs.extend(on.iter());
        }
        Plan::Aggregate { input, group, aggs } => {
            access_nodes(input, out);
            exprs.extend(group.iter());
            exprs.extend(aggs.iter().filter_map(|a| a.arg.as_ref()));
        }
        Plan::Sort { input, keys } => {
            access_nodes(input, out);
            exprs.extend(keys.iter().map(|k| &k.expr));
        }
        Plan::Limit { input, .. } | Plan::Distinct { input } => access_nodes(input, out),
        Plan::SetOp { left, right, .. } => {
            access_nodes(left, out);
            access_nodes(right, out);
        }
    }
    for e in exprs {
        subplans_in(e, out);
    }
}

fn subplans_in<'a>(e: &'a BExpr, out: &mut Vec<&'a Plan>) {
    match e {
        BExpr::Subquery(sp) | BExpr::Exists(sp, _) => access_nodes(&sp.plan, out),
        BExpr::InSub(a, sp, _) => {
            subplans_in(a, out);
            access_nodes(&sp.plan, out);
        }
        other => {
            for c in other.children() {
                subplans_in(c, out);
            }
        }
    }
}

/// Fills `ctx` with the rows every access node of `plan` needs.
pub async fn prefetch(plan: &Plan, ctx: &mut Ctx, view: &View<'_>) -> Result<()> {
    let mut nodes = Vec::new();
    access_nodes(plan, &mut nodes);
    // Aggregates over columnar tables that run in the column kernels: their scans are
    // not read into rows at all.
    let mut pushed_scans = std::collections::HashSet::new();
    let mut aggs = Vec::new();
    crate::columnar::pushdown::candidates(plan, &mut aggs);
    for agg in aggs {
        if let (Some(p), Plan::Aggregate { input, .. }) =
            (crate::columnar::pushdown::analyze(agg), agg)
        {
            let rows = p.run(view).await?;
            ctx.fetched
                .insert(agg as *const Plan as usize, Rc::new(rows));
            let scan = match &**input {
                Plan::Filter { input, .. } => &**input,
                other => other,
            };
            pushed_scans.insert(scan as *const Plan as usize);
        }
    }
    // Aggregates over row tables that run as partial aggregates on every shard (issue 6):
    // their scans are not read into rows either.
    let mut row_aggs = Vec::new();
    crate::rowagg::candidates(plan, &mut row_aggs);
    for agg in row_aggs {
        if let (Some(p), Some(scan)) = (crate::rowagg::analyze(agg), crate::rowagg::scan_of(agg)) {
            let rows = p.run(&ctx.params, view).await?;
            ctx.fetched
                .insert(agg as *const Plan as usize, Rc::new(rows));
            pushed_scans.insert(scan as *const Plan as usize);
        }
    }
    for node in nodes {
        if pushed_scans.contains(&(node as *const Plan as usize)) {
            continue;
        }
        match node {
            Plan::Scan { table, filter } if table.is_columnar() => {
                let id = node as *const Plan as usize;
                if !pushed_scans.contains(&id) {
                    let (preds, _) = crate::columnar::scan::preds_of(table, filter.as_ref());
                    let rows = crate::columnar::scan::scan_rows(table, &preds, view).await?;
                    ctx.fetched.insert(id, Rc::new(rows));
                }
            }
            Plan::Scan { table, filter } if table.is_document() => {
                let konst = |e: &BExpr| {
                    if e.is_constant() {
                        eval(e, &[], ctx, &[]).ok()
                    } else {
                        None
                    }
                };
                let rows = crate::docs::fetch(view.handle, table, filter.as_ref(), &konst).await?;
                ctx.fetched
                    .insert(node as *const Plan as usize, Rc::new(rows));
            }
            Plan::Scan { table, .. } if !ctx.tables.contains_key(&table.id) => {
                let rows = scan_table(table, view).await?;
                ctx.tables.insert(table.id, Rc::new(rows));
            }
            Plan::PkGet { table, key, .. } => {
                let mut rows = Vec::new();
                if let Some(row_key) = pk_get_row_key(table, key, ctx)? {
                    if let Some(v) = view.get(&row_key).await? {
                        rows.push(decode_row(&v, table.columns.len())?);
                    }
                }
                ctx.fetched
                    .insert(node as *const Plan as usize, Rc::new(rows));
            }
            Plan::IndexScan {
                table,
                index,
                range,
                ..
            } => {
                let rows = index_scan(
                    table,
                    index.as_ref().map(|i| i.columns.as_slice()),
                    index.as_ref().map(|i| i.id),
                    range,
                    ctx,
                    view,
                )
                .await?;
                ctx.fetched
                    .insert(node as *const Plan as usize, Rc::new(rows));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The KV key of the row a [`Plan::PkGet`] names, its key expressions evaluated now; `None`
/// when a key value is NULL (no row has one: nothing to read, nothing to lock). One function
/// for the read (prefetch), the read lock (isolation) and the write lock (dml), so the three
/// always name the same key.
pub(crate) fn pk_get_row_key(
    table: &TableDef,
    key: &[BExpr],
    ctx: &Ctx,
) -> Result<Option<Vec<u8>>> {
    let mut vals = Vec::with_capacity(key.len());
    for k in key {
        vals.push(eval(k, &[], ctx, &[])?);
    }
    if vals.iter().any(Value::is_null) {
        return Ok(None);
    }
    let vals = coerce_key(table, &table.primary_key, vals)?;
    Ok(Some(keys::row_key(table.id, &vals)))
}

/// Converts lookup values to the key columns' types, so 1.0 finds an integer key 1 and a
/// text literal finds a date.
pub(crate) fn coerce_key(table: &TableDef, cols: &[usize], vals: Vec<Value>) -> Result<Vec<Value>> {
    vals.into_iter()
        .zip(cols)
        .map(|(v, &c)| match (&v, &table.columns[c].ty) {
            (Value::Text(_), ty) if !ty.is_text() => crate::cast::cast(v, ty, true),
            _ => Ok(v),
        })
        .collect()
}

pub async fn scan_table(table: &TableDef, view: &View<'_>) -> Result<Vec<(Vec<u8>, Row)>> {
    let prefix = keys::row_prefix(table.id);
    let end = keys::prefix_end(&prefix);
    let entries = view.scan(prefix, end).await?;
    let mut rows = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        rows.push((k, decode_row(&v, table.columns.len())?));
    }
    Ok(rows)
}

/// Rows whose key columns fall in `range`: through index `index_id` (then one `get` per
/// row), or through the primary key itself when `index_id` is None.
async fn index_scan(
    table: &TableDef,
    cols: Option<&[usize]>,
    index_id: Option<u32>,
    range: &KeyRange,
    ctx: &Ctx,
    view: &View<'_>,
) -> Result<Vec<Row>> {
    let cols = cols.unwrap_or(&table.primary_key);
    let mut eq = Vec::new();
    for e in &range.eq {
        eq.push(eval(e, &[], ctx, &[])?);
    }
    if eq.iter().any(Value::is_null) {
        return Ok(Vec::new());
    }
    let eq = coerce_key(table, cols, eq)?;
    let base = match index_id {
        Some(id) => keys::index_prefix(id),
        None => keys::row_prefix(table.id),
    };
    let mut prefix = base;
    for v in &eq {
        keys::encode_value(&mut prefix, v);
    }
    let next_col = cols.get(eq.len()).copied();
    let bound = |b: &Option<(BExpr, bool)>| -> Result<Option<(Value, bool)>> {
        match (b, next_col) {
            (Some((e, inc)), Some(c)) => {
                let v = eval(e, &[], ctx, &[])?;
                let v = coerce_key(table, &[c], vec![v])?
                    .pop()
                    .unwrap_or(Value::Null);
                Ok(Some((v, *inc)))
            }
            _ => Ok(None),
        }
    };
    let lo = bound(&range.lo)?;
    let hi = bound(&range.hi)?;
    if lo.as_ref().is_some_and(|(v, _)| v.is_null())
        || hi.as_ref().is_some_and(|(v, _)| v.is_null())
    {
        return Ok(Vec::new());
    }
    let mut start = prefix.clone();
    match &lo {
        Some((v, inc)) => {
            keys::encode_value(&mut start, v);
            if !inc {
                // Past every key that starts with v's encoding.
                start = keys::prefix_end(&start).unwrap_or(start);
            }
        }
        // Skip NULLs only when some bound is given (NULL never satisfies a comparison).
        None if hi.is_some() => start.push(keys::null_first_marker()),
        None => {}
    }
    let end = match &hi {
        Some((v, inc)) => {
            let mut e = prefix.clone();
            keys::encode_value(&mut e, v);
            if *inc {
                keys::prefix_end(&e)
            } else {
                Some(e)
            }
        }
        None if lo.is_some() => {
            // Stop before NULLs, which sort last.
            let mut e = prefix.clone();
            keys::encode_value(&mut e, &Value::Null);
            Some(e)
        }
        None => keys::prefix_end(&prefix),
    };
    let entries = view.scan(start, end).await?;
    let mut rows = Vec::with_capacity(entries.len());
    for (_, v) in entries {
        match index_id {
            None => rows.push(decode_row(&v, table.columns.len())?),
            Some(_) => {
                // Index entries hold the row key.
                if let Some(rv) = view.get(&v).await? {
                    rows.push(decode_row(&rv, table.columns.len())?);
                } else {
                    return Err(SqlError::internal(format!(
                        "index of {} points at a missing row",
                        table.name
                    )));
                }
            }
        }
    }
    Ok(rows)
}
