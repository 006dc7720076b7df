//! The one eligibility shape both aggregate pushdowns start from: `Aggregate { Scan }` or
//! `Aggregate { Filter { Scan } }` (the two filters joined with AND). Row tables push down
//! through `rowagg` (partial aggregates per shard over KV rows), columnar tables through
//! `columnar::pushdown` (column kernels per shard over chunks); each then checks what its
//! own kernels can evaluate.

use std::rc::Rc;

use crate::catalog::TableDef;
use crate::plan::{AggCall, BExpr, Plan};

/// An aggregate directly over a (filtered) table scan.
pub struct AggOverScan<'a> {
    pub table: &'a Rc<TableDef>,
    /// The scan's filter and the Filter node's predicate, joined.
    pub filter: Option<BExpr>,
    pub group: &'a [BExpr],
    pub aggs: &'a [AggCall],
    /// The `Scan` node (not read into rows when the aggregate is pushed down).
    pub scan: &'a Plan,
}

/// The aggregate-over-scan shape of `plan`, when it has it.
pub fn agg_over_scan(plan: &Plan) -> Option<AggOverScan<'_>> {
    let Plan::Aggregate { input, group, aggs } = plan else {
        return None;
    };
    let (scan, pred) = match &**input {
        Plan::Filter { input, pred } => (&**input, Some(pred)),
        other => (other, None),
    };
    let Plan::Scan { table, filter } = scan else {
        return None;
    };
    let filter = match (filter, pred) {
        (Some(f), Some(p)) => Some(BExpr::and(f.clone(), p.clone())),
        (Some(f), None) => Some(f.clone()),
        (None, Some(p)) => Some(p.clone()),
        (None, None) => None,
    };
    Some(AggOverScan {
        table,
        filter,
        group,
        aggs,
        scan,
    })
}

/// Collects the `Aggregate` nodes of `plan` (not inside subqueries) for which `pushes`
/// holds, not looking below one that does.
pub fn candidates<'a>(plan: &'a Plan, pushes: &dyn Fn(&Plan) -> bool, out: &mut Vec<&'a Plan>) {
    if pushes(plan) {
        out.push(plan);
        return;
    }
    for input in plan.inputs() {
        candidates(input, pushes, out);
    }
}
