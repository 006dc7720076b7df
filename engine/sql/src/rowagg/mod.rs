//! Aggregates over row tables pushed down to the shards (issue 6).
//!
//! `Aggregate { [Filter] Scan }` over a row table whose filter, GROUP BY expressions and
//! aggregate arguments are scalar (no subquery, no outer reference) and whose aggregates are
//! not DISTINCT and not floating-point sums/averages runs in two phases: every shard scans
//! its own slice of the table where it lives (`EngineHandle::scan_visit_on`), decodes only
//! the columns read, filters and folds the rows into partial aggregate states per group
//! (`partial`); the statement's shard merges the partial states (`exec::merge_state`) and
//! finishes them. Rows never cross shards, only groups. Groups come out in the order of
//! their smallest row key, the order the whole-table path produces, so results do not
//! change. Floating-point sums are left to the whole-table path because adding in another
//! order can change the last digits.

mod partial;
mod ship;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::rc::Rc;
use std::sync::Arc;

use mantis_engine::ScanRange;

use crate::aggscan::{agg_over_scan, AggOverScan};
use crate::catalog::TableDef;
use crate::error::{Result, SqlError};
use crate::exec::{check_rows, finish, fresh_states, merge_state, Row};
use crate::keys;
use crate::plan::{AggCall, AggFunc, BExpr, Plan};
use crate::store::View;
use crate::types::{SqlType, Value};
use partial::{PartialAgg, PartialGroup, Spec};
use ship::{ship_agg, to_ship};

/// A pushed-down row-table aggregate, ready to run.
pub struct RowAggPushdown<'a> {
    pub table: &'a Rc<TableDef>,
    spec: Spec,
    group_len: usize,
    aggs: &'a [AggCall],
}

/// The pushed-down form of an `Aggregate` node, when it has one.
pub fn analyze(plan: &Plan) -> Option<RowAggPushdown<'_>> {
    let AggOverScan {
        table,
        filter,
        group,
        aggs,
        ..
    } = agg_over_scan(plan)?;
    if table.is_columnar() || table.is_document() || aggs.iter().any(float_sum) {
        return None;
    }
    let mut needed = vec![false; table.columns.len()];
    let mut exprs: Vec<&BExpr> = group.iter().collect();
    exprs.extend(aggs.iter().filter_map(|a| a.arg.as_ref()));
    exprs.extend(filter.iter());
    for e in exprs {
        mark_columns(e, &mut needed);
    }
    let filter = match &filter {
        Some(f) => Some(to_ship(f)?),
        None => None,
    };
    Some(RowAggPushdown {
        table,
        spec: Spec {
            needed,
            filter,
            group: group.iter().map(to_ship).collect::<Option<Vec<_>>>()?,
            aggs: aggs.iter().map(ship_agg).collect::<Option<Vec<_>>>()?,
            params: Vec::new(),
            skip: Arc::new(HashSet::new()),
        },
        group_len: group.len(),
        aggs,
    })
}

/// A SUM or AVG accumulated in floating point: its digits depend on the order of the
/// additions, so it stays on the whole-table path, which adds in key order.
fn float_sum(a: &AggCall) -> bool {
    matches!(a.func, AggFunc::Sum | AggFunc::Avg)
        && matches!(a.ty, SqlType::Float32 | SqlType::Float64)
}

/// Sets the flag of every column `e` reads.
fn mark_columns(e: &BExpr, needed: &mut [bool]) {
    if let BExpr::Col(i) = e {
        if let Some(n) = needed.get_mut(*i) {
            *n = true;
        }
    }
    for c in e.children() {
        mark_columns(c, needed);
    }
}

/// Collects the `Aggregate` nodes of `plan` (not inside subqueries) that push down.
pub fn candidates<'a>(plan: &'a Plan, out: &mut Vec<&'a Plan>) {
    crate::aggscan::candidates(plan, &|p| analyze(p).is_some(), out);
}

/// The `Scan` node below a pushed-down aggregate (not read into rows).
pub fn scan_of(agg: &Plan) -> Option<&Plan> {
    agg_over_scan(agg).map(|a| a.scan)
}

impl RowAggPushdown<'_> {
    /// The aggregate's output rows: group values, then aggregate values.
    pub async fn run(&self, params: &[Value], view: &View<'_>) -> Result<Vec<Row>> {
        let prefix = keys::row_prefix(self.table.id);
        let end = keys::prefix_end(&prefix);
        let pending = pending_rows(view, &prefix, end.as_deref());
        let mut spec = self.spec.clone();
        spec.params = params.to_vec();
        spec.skip = Arc::new(pending.keys().map(|k| k.to_vec()).collect());
        let range = ScanRange {
            start: Bound::Included(prefix.clone()),
            end: end.clone().map_or(Bound::Unbounded, Bound::Excluded),
        };
        let calls = (0..view.handle.shard_count()).map(|shard| {
            let spec = spec.clone();
            view.handle
                .scan_visit_on(shard, range.clone(), move || PartialAgg::new(spec))
        });
        let answers = futures::future::join_all(calls).await;
        // The statement's pending versions of rows, aggregated here.
        let mut local = PartialAgg::new(Spec {
            skip: Arc::new(HashSet::new()),
            ..spec
        });
        for (k, v) in &pending {
            if let Some(v) = v {
                local.add(k, v)?;
            }
        }
        let mut parts = vec![mantis_engine::ScanVisitor::finish(local)?];
        for a in answers {
            parts.push(a.map_err(|e| SqlError::storage("aggregate scan", e))??);
        }
        self.merge(parts).await
    }

    /// Merges every shard's partial groups and finishes the states.
    async fn merge(&self, parts: Vec<Vec<PartialGroup>>) -> Result<Vec<Row>> {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut groups: Vec<PartialGroup> = Vec::new();
        for g in parts.into_iter().flatten() {
            let k = keys::tuple_key(&g.keyvals);
            match index.get(&k) {
                Some(&i) => {
                    let into = &mut groups[i];
                    if g.first_key < into.first_key {
                        into.first_key = g.first_key;
                    }
                    for ((a, st), other) in self.aggs.iter().zip(&mut into.states).zip(g.states) {
                        merge_state(a, st, other)?;
                    }
                }
                None => {
                    groups.push(g);
                    check_rows(groups.len())?;
                    index.insert(k, groups.len() - 1);
                }
            }
            glommio::yield_if_needed().await;
        }
        groups.sort_by(|a, b| a.first_key.cmp(&b.first_key));
        if groups.is_empty() && self.group_len == 0 {
            // An aggregate without GROUP BY yields one row even over no input.
            groups.push(PartialGroup {
                keyvals: Vec::new(),
                first_key: Vec::new(),
                states: fresh_states(self.aggs),
            });
        }
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let mut row = g.keyvals;
            for (a, st) in self.aggs.iter().zip(g.states) {
                row.push(finish(a, st)?);
            }
            out.push(row);
        }
        Ok(out)
    }
}

/// The statement's and transaction's pending versions of the rows in [prefix, end), newest
/// layer winning: `None` is a pending delete.
pub(crate) fn pending_rows<'a>(
    view: &View<'a>,
    prefix: &[u8],
    end: Option<&[u8]>,
) -> BTreeMap<&'a [u8], Option<&'a [u8]>> {
    let mut out = BTreeMap::new();
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    for w in view.layers.into_iter().flatten() {
        for (k, v) in w.map.range::<[u8], _>((Bound::Included(prefix), upper)) {
            out.entry(k.as_slice()).or_insert(v.as_deref());
        }
    }
    out
}
