//! Rule-based optimizer: constant folding, predicate pushdown (into scans and join sides),
//! equi-join key extraction (hash joins), index selection for = and ranges, and join
//! ordering of inner-join chains by estimated cardinality.

use crate::exec::Ctx;
use crate::plan::{BExpr, BinOp, JoinKind, KeyRange, Plan};
use crate::types::Value;

pub fn optimize(plan: Plan) -> Plan {
    let plan = fold_plan(plan);
    let plan = push_down(plan);
    select_access(plan)
}

// ---------------------------------------------------------------- constant folding

/// Evaluates literal-only subexpressions once. A subexpression whose evaluation fails is
/// left alone, so the error surfaces only if that branch really runs (CASE, AND).
pub fn fold(e: &BExpr) -> BExpr {
    e.transform(&|x| {
        if matches!(x, BExpr::Lit(_)) || !x.is_literal_only() {
            return None;
        }
        let ctx = Ctx::default();
        match crate::eval::eval(x, &[], &ctx, &[]) {
            Ok(v) => {
                // Keep a cast's type visible (a folded NULL::int stays typed by the binder).
                Some(BExpr::Lit(v))
            }
            Err(_) => None,
        }
    })
}

fn fold_opt(e: Option<BExpr>) -> Option<BExpr> {
    e.map(|e| fold(&e))
}

fn fold_plan(plan: Plan) -> Plan {
    map_plan(plan, &|p| match p {
        Plan::Filter { input, pred } => {
            let pred = fold(&pred);
            match pred {
                BExpr::Lit(Value::Bool(true)) => *input,
                pred => Plan::Filter { input, pred },
            }
        }
        Plan::Project { input, exprs } => Plan::Project {
            input,
            exprs: exprs.iter().map(fold).collect(),
        },
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
        } => Plan::Join {
            left,
            right,
            kind,
            equi,
            on: fold_opt(on),
        },
        Plan::Values { rows, width } => Plan::Values {
            rows: rows
                .into_iter()
                .map(|r| r.iter().map(fold).collect())
                .collect(),
            width,
        },
        other => other,
    })
}

/// Applies `f` bottom-up to every plan node (not into subquery plans, which were optimized
/// when bound).
fn map_plan(plan: Plan, f: &dyn Fn(Plan) -> Plan) -> Plan {
    let b = |p: Box<Plan>| Box::new(map_plan(*p, f));
    let p = match plan {
        Plan::Filter { input, pred } => Plan::Filter {
            input: b(input),
            pred,
        },
        Plan::Project { input, exprs } => Plan::Project {
            input: b(input),
            exprs,
        },
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
        } => Plan::Join {
            left: b(left),
            right: b(right),
            kind,
            equi,
            on,
        },
        Plan::Aggregate { input, group, aggs } => Plan::Aggregate {
            input: b(input),
            group,
            aggs,
        },
        Plan::Sort { input, keys } => Plan::Sort {
            input: b(input),
            keys,
        },
        Plan::Limit {
            input,
            limit,
            offset,
        } => Plan::Limit {
            input: b(input),
            limit,
            offset,
        },
        Plan::Distinct { input } => Plan::Distinct { input: b(input) },
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => Plan::SetOp {
            kind,
            all,
            left: b(left),
            right: b(right),
        },
        leaf => leaf,
    };
    f(p)
}

// ---------------------------------------------------------------- predicate pushdown

fn add_filter(plan: Plan, terms: Vec<BExpr>) -> Plan {
    if terms.is_empty() {
        return plan;
    }
    match plan {
        Plan::Scan { table, filter } => {
            let mut all = filter.map(BExpr::conjuncts).unwrap_or_default();
            all.extend(terms);
            Plan::Scan {
                table,
                filter: BExpr::conjoin(all),
            }
        }
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
        } => push_into_join(*left, *right, kind, equi, on, terms),
        Plan::Filter { input, pred } => {
            let mut all = pred.conjuncts();
            all.extend(terms);
            add_filter(*input, all)
        }
        other => match BExpr::conjoin(terms) {
            Some(pred) => Plan::Filter {
                input: Box::new(other),
                pred,
            },
            None => other,
        },
    }
}

/// Distributes predicates over a join: terms on one side go into that side (where the join
/// kind allows), terms on both sides become join conditions or hash keys.
fn push_into_join(
    left: Plan,
    right: Plan,
    kind: JoinKind,
    mut equi: Vec<(BExpr, BExpr)>,
    on: Option<BExpr>,
    above: Vec<BExpr>,
) -> Plan {
    let lw = left.width();
    let mut to_left = Vec::new();
    let mut to_right = Vec::new();
    let mut residual_on = Vec::new();
    let mut residual_above = Vec::new();
    let side = |e: &BExpr| -> (bool, bool) {
        // (uses left columns, uses right columns); correlated subqueries pin a term in place.
        let mut cols = Vec::new();
        collect_cols(e, &mut cols);
        (cols.iter().any(|c| *c < lw), cols.iter().any(|c| *c >= lw))
    };
    let movable = |e: &BExpr| !has_subquery(e);
    // WHERE terms: an inner join accepts them anywhere; outer joins only on the preserved side.
    for t in above {
        let (l, r) = side(&t);
        let can_left = matches!(kind, JoinKind::Inner | JoinKind::Left);
        let can_right = matches!(kind, JoinKind::Inner | JoinKind::Right);
        if !movable(&t) {
            residual_above.push(t);
        } else if !r && can_left {
            to_left.push(t);
        } else if !l && r && can_right {
            to_right.push(t.remap_cols(&|c| c - lw));
        } else if kind == JoinKind::Inner {
            residual_on.push(t);
        } else {
            residual_above.push(t);
        }
    }
    // ON terms: for an inner join like WHERE; for outer joins only the nullable side's.
    for t in on.map(BExpr::conjuncts).unwrap_or_default() {
        let (l, r) = side(&t);
        if movable(&t) && !r && l && matches!(kind, JoinKind::Inner | JoinKind::Right) {
            to_left.push(t);
        } else if movable(&t) && !l && r && matches!(kind, JoinKind::Inner | JoinKind::Left) {
            to_right.push(t.remap_cols(&|c| c - lw));
        } else {
            residual_on.push(t);
        }
    }
    // Equalities between the two sides become hash-join keys.
    let mut rest = Vec::new();
    for t in residual_on {
        match &t {
            BExpr::Bin(BinOp::Eq, a, b) if movable(&t) => {
                let (al, ar) = side(a);
                let (bl, br) = side(b);
                if al && !ar && br && !bl {
                    equi.push(((**a).clone(), b.remap_cols(&|c| c - lw)));
                } else if bl && !br && ar && !al {
                    equi.push(((**b).clone(), a.remap_cols(&|c| c - lw)));
                } else {
                    rest.push(t);
                }
            }
            _ => rest.push(t),
        }
    }
    let left = push_down(add_filter(left, to_left));
    let right = push_down(add_filter(right, to_right));
    let join = Plan::Join {
        left: Box::new(left),
        right: Box::new(right),
        kind,
        equi,
        on: BExpr::conjoin(rest),
    };
    match BExpr::conjoin(residual_above) {
        Some(pred) => Plan::Filter {
            input: Box::new(join),
            pred,
        },
        None => join,
    }
}

fn collect_cols(e: &BExpr, out: &mut Vec<usize>) {
    if let BExpr::Col(i) = e {
        out.push(*i);
    }
    for c in e.children() {
        collect_cols(c, out);
    }
}

fn has_subquery(e: &BExpr) -> bool {
    matches!(e, BExpr::Subquery(_) | BExpr::Exists(..) | BExpr::InSub(..))
        || e.children().iter().any(|c| has_subquery(c))
}

fn push_down(plan: Plan) -> Plan {
    match plan {
        Plan::Filter { input, pred } => add_filter(push_down(*input), pred.conjuncts()),
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
        } => {
            let j = push_into_join(*left, *right, kind, equi, on, Vec::new());
            reorder(j)
        }
        Plan::Project { input, exprs } => Plan::Project {
            input: Box::new(push_down(*input)),
            exprs,
        },
        Plan::Aggregate { input, group, aggs } => Plan::Aggregate {
            input: Box::new(push_down(*input)),
            group,
            aggs,
        },
        Plan::Sort { input, keys } => Plan::Sort {
            input: Box::new(push_down(*input)),
            keys,
        },
        Plan::Limit {
            input,
            limit,
            offset,
        } => Plan::Limit {
            input: Box::new(push_down(*input)),
            limit,
            offset,
        },
        Plan::Distinct { input } => Plan::Distinct {
            input: Box::new(push_down(*input)),
        },
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => Plan::SetOp {
            kind,
            all,
            left: Box::new(push_down(*left)),
            right: Box::new(push_down(*right)),
        },
        leaf => leaf,
    }
}

/// Join ordering for a two-way inner join: the hash table is built on the right input, so
/// put the side estimated smaller there. Output columns keep their order through a
/// projection.
fn reorder(plan: Plan) -> Plan {
    let Plan::Join {
        left,
        right,
        kind: JoinKind::Inner,
        equi,
        on,
    } = plan
    else {
        return plan;
    };
    if equi.is_empty() || estimate(&right) <= estimate(&left) {
        return Plan::Join {
            left,
            right,
            kind: JoinKind::Inner,
            equi,
            on,
        };
    }
    let lw = left.width();
    let rw = right.width();
    // Swapped layout: right columns first. Map an old index to its new position.
    let to_new = move |c: usize| if c < lw { c + rw } else { c - lw };
    let swapped = Plan::Join {
        left: right,
        right: left,
        kind: JoinKind::Inner,
        equi: equi.into_iter().map(|(l, r)| (r, l)).collect(),
        on: on.map(|o| o.remap_cols(&to_new)),
    };
    let exprs = (0..lw + rw).map(|c| BExpr::Col(to_new(c))).collect();
    Plan::Project {
        input: Box::new(swapped),
        exprs,
    }
}

/// Rough output cardinality: 1 for point lookups, a tenth of a table per filter, products
/// for joins. Tables have no statistics yet, so a full table counts as 1000 rows.
pub fn estimate(plan: &Plan) -> f64 {
    const TABLE_ROWS: f64 = 1000.0;
    match plan {
        Plan::PkGet { .. } => 1.0,
        Plan::IndexScan { range, .. } => {
            if range.eq.is_empty() {
                TABLE_ROWS / 3.0
            } else {
                10.0
            }
        }
        Plan::Scan { filter, .. } => match filter {
            None => TABLE_ROWS,
            Some(f) => TABLE_ROWS / 10f64.powi(f.clone().conjuncts().len().min(3) as i32),
        },
        Plan::Values { rows, .. } => rows.len() as f64,
        Plan::GenerateSeries { .. } => 1000.0,
        Plan::Filter { input, .. } => estimate(input) / 10.0,
        Plan::Join {
            left, right, equi, ..
        } => {
            let p = estimate(left) * estimate(right);
            if equi.is_empty() {
                p
            } else {
                p / estimate(left).max(estimate(right)).max(1.0)
            }
        }
        Plan::Aggregate { input, group, .. } => {
            if group.is_empty() {
                1.0
            } else {
                estimate(input) / 10.0
            }
        }
        Plan::Project { input, .. }
        | Plan::Sort { input, .. }
        | Plan::Distinct { input }
        | Plan::Limit { input, .. } => estimate(input),
        Plan::SetOp { left, right, .. } => estimate(left) + estimate(right),
    }
}

// ---------------------------------------------------------------- index selection

fn select_access(plan: Plan) -> Plan {
    map_plan(plan, &|p| match p {
        Plan::Scan {
            table,
            filter: Some(f),
        } => choose_index(table, f),
        other => other,
    })
}

/// `col = const`, `col < const` ... with the column on either side.
fn column_bound(t: &BExpr) -> Option<(usize, BinOp, BExpr)> {
    if let BExpr::Bin(op, a, b) = t {
        if !op.is_comparison() || *op == BinOp::NotEq {
            return None;
        }
        match (&**a, &**b) {
            (BExpr::Col(c), v) if v.is_constant() => return Some((*c, *op, v.clone())),
            (v, BExpr::Col(c)) if v.is_constant() => return Some((*c, op.flip(), v.clone())),
            _ => {}
        }
    }
    None
}

fn choose_index(table: std::rc::Rc<crate::catalog::TableDef>, filter: BExpr) -> Plan {
    let terms = filter.clone().conjuncts();
    let bounds: Vec<(usize, BinOp, BExpr)> = terms.iter().filter_map(column_bound).collect();
    let eq_for = |c: usize| {
        bounds
            .iter()
            .find(|(col, op, _)| *col == c && *op == BinOp::Eq)
            .map(|b| b.2.clone())
    };
    // Full primary key by equality: one get.
    if table.has_pk() {
        let key: Option<Vec<BExpr>> = table.primary_key.iter().map(|c| eq_for(*c)).collect();
        if let Some(key) = key {
            return Plan::PkGet {
                table,
                key,
                filter: Some(filter),
            };
        }
    }
    // Otherwise the key (primary or secondary) with the longest equality prefix, then a
    // range on its next column.
    let mut best: Option<(usize, Option<crate::catalog::IndexDef>, KeyRange)> = None;
    let mut candidates: Vec<(Vec<usize>, Option<crate::catalog::IndexDef>)> = Vec::new();
    if table.has_pk() {
        candidates.push((table.primary_key.clone(), None));
    }
    for ix in &table.indexes {
        candidates.push((ix.columns.clone(), Some(ix.clone())));
    }
    for (cols, ix) in candidates {
        let mut eq = Vec::new();
        for c in &cols {
            match eq_for(*c) {
                Some(v) => eq.push(v),
                None => break,
            }
        }
        let mut range = KeyRange {
            eq,
            lo: None,
            hi: None,
        };
        if let Some(next) = cols.get(range.eq.len()) {
            for (c, op, v) in &bounds {
                if c != next {
                    continue;
                }
                match op {
                    BinOp::Gt | BinOp::GtEq if range.lo.is_none() => {
                        range.lo = Some((v.clone(), *op == BinOp::GtEq))
                    }
                    BinOp::Lt | BinOp::LtEq if range.hi.is_none() => {
                        range.hi = Some((v.clone(), *op == BinOp::LtEq))
                    }
                    _ => {}
                }
            }
        }
        let score = range.eq.len() * 2 + usize::from(range.lo.is_some() || range.hi.is_some());
        if score > 0 && best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, ix, range));
        }
    }
    match best {
        Some((_, index, range)) => Plan::IndexScan {
            table,
            index,
            range,
            filter: Some(filter),
        },
        None => Plan::Scan {
            table,
            filter: Some(filter),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn folds_constants_but_not_errors() {
        let e = BExpr::Bin(
            BinOp::Add,
            Box::new(BExpr::Lit(Value::Int32(1))),
            Box::new(BExpr::Lit(Value::Int32(2))),
        );
        assert!(matches!(fold(&e), BExpr::Lit(Value::Int32(3))));
        let bad = BExpr::Bin(
            BinOp::Div,
            Box::new(BExpr::Lit(Value::Int32(1))),
            Box::new(BExpr::Lit(Value::Int32(0))),
        );
        assert!(matches!(fold(&bad), BExpr::Bin(..)));
        let col = BExpr::Bin(BinOp::Add, Box::new(BExpr::Col(0)), Box::new(e));
        match fold(&col) {
            BExpr::Bin(_, a, b) => {
                assert!(matches!(*a, BExpr::Col(0)));
                assert!(matches!(*b, BExpr::Lit(Value::Int32(3))));
            }
            other => panic!("{other:?}"),
        }
    }
}
