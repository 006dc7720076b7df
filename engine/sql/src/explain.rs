//! EXPLAIN: the optimized plan that runs, one operator per line, children indented.

use std::collections::HashMap;

use crate::plan::{BExpr, JoinKind, Plan, SetOpKind};

/// What EXPLAIN prints for nodes whose access is decided by I/O (collection scans: which path
/// index the document store picks), by node address; see `docs::explain_notes`.
pub type Notes = HashMap<usize, String>;

pub fn explain(plan: &Plan) -> Vec<String> {
    explain_with(plan, &Notes::new())
}

pub fn explain_with(plan: &Plan, notes: &Notes) -> Vec<String> {
    let mut out = Vec::new();
    node(plan, 0, &mut out, notes);
    out
}

fn expr(e: &BExpr) -> String {
    match e {
        BExpr::Lit(v) => v.to_pg_text().map_or("NULL".into(), |s| match v {
            crate::types::Value::Text(_) => format!("'{s}'"),
            _ => s,
        }),
        BExpr::Col(i) => format!("#{i}"),
        BExpr::Outer(d, i) => format!("outer{d}.#{i}"),
        BExpr::Param(i) => format!("${}", i + 1),
        BExpr::Neg(a) => format!("-{}", expr(a)),
        BExpr::Not(a) => format!("NOT {}", expr(a)),
        BExpr::Bin(op, a, b) => format!("({} {} {})", expr(a), op.symbol(), expr(b)),
        BExpr::IsNull(a, n) => format!("({} IS {}NULL)", expr(a), if *n { "NOT " } else { "" }),
        BExpr::Func(n, args) => format!(
            "{n}({})",
            args.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        BExpr::Cast(a, t) => format!("{}::{}", expr(a), t.pg_name()),
        BExpr::Subquery(_) => "(SubPlan)".into(),
        BExpr::Exists(_, n) => format!("{}EXISTS(SubPlan)", if *n { "NOT " } else { "" }),
        BExpr::InSub(a, _, n) => {
            format!("({} {}IN (SubPlan))", expr(a), if *n { "NOT " } else { "" })
        }
        BExpr::InList(a, l, n) => format!(
            "({} {}IN ({}))",
            expr(a),
            if *n { "NOT " } else { "" },
            l.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        other => format!("{other:?}").chars().take(60).collect(),
    }
}

fn opt(label: &str, e: &Option<BExpr>) -> String {
    e.as_ref()
        .map_or(String::new(), |e| format!(" {label}: {}", expr(e)))
}

fn node(plan: &Plan, depth: usize, out: &mut Vec<String>, notes: &Notes) {
    let pad = if depth == 0 {
        String::new()
    } else {
        format!("{}-> ", "  ".repeat(depth))
    };
    if let Plan::Aggregate { input, group, aggs } = plan {
        if crate::rowagg::analyze(plan).is_some() {
            // Pushed down (issue 6): each shard aggregates its own rows, this shard merges.
            let group = group.iter().map(expr).collect::<Vec<_>>().join(", ");
            out.push(format!(
                "{pad}Final HashAggregate group=({group}) aggs={} (merges the shards' partial states)",
                aggs.len()
            ));
            out.push(format!(
                "{}-> Partial HashAggregate on each shard group=({group}) aggs={}",
                "  ".repeat(depth + 1),
                aggs.len()
            ));
            node(input, depth + 2, out, notes);
            return;
        }
    }
    let line = match plan {
        Plan::Values { rows, .. } => format!("Values rows={}", rows.len()),
        Plan::Scan { table, filter } if table.is_columnar() => {
            let (preds, _) = crate::columnar::scan::preds_of(table, filter.as_ref());
            let skip = preds
                .iter()
                .map(|p| format!("#{} {} {:?}", p.col, p.op.symbol(), p.constant))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "Columnar Scan on {} (storage=columnar: chunks + delta){}{}",
                table.name,
                if skip.is_empty() {
                    String::new()
                } else {
                    format!(" Chunk Skip: {skip}")
                },
                opt("Filter", filter)
            )
        }
        Plan::Scan { table, filter } if table.is_document() => format!(
            "{}{}",
            notes
                .get(&(plan as *const Plan as usize))
                .cloned()
                .unwrap_or_else(|| format!("Document Scan on {}", table.name)),
            opt("Filter", filter)
        ),
        Plan::Scan { table, filter } => {
            format!("Seq Scan on {}{}", table.name, opt("Filter", filter))
        }
        Plan::PkGet { table, key, filter } => format!(
            "Point Get on {} key=({}){}",
            table.name,
            key.iter().map(expr).collect::<Vec<_>>().join(", "),
            opt("Filter", filter)
        ),
        Plan::IndexScan {
            table,
            index,
            range,
            filter,
        } => format!(
            "Index Scan using {} on {} eq=({}){}{}{}",
            index
                .as_ref()
                .map_or("primary key".to_string(), |i| i.name.clone()),
            table.name,
            range.eq.iter().map(expr).collect::<Vec<_>>().join(", "),
            range.lo.as_ref().map_or(String::new(), |(e, inc)| format!(
                " {} {}",
                if *inc { ">=" } else { ">" },
                expr(e)
            )),
            range.hi.as_ref().map_or(String::new(), |(e, inc)| format!(
                " {} {}",
                if *inc { "<=" } else { "<" },
                expr(e)
            )),
            opt("Filter", filter)
        ),
        Plan::GenerateSeries { args } => {
            format!(
                "Function Scan on generate_series({})",
                args.iter().map(expr).collect::<Vec<_>>().join(", ")
            )
        }
        Plan::Filter { pred, .. } => format!("Filter: {}", expr(pred)),
        Plan::Project { exprs, .. } => format!(
            "Project: {}",
            exprs.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        Plan::Join { kind, equi, on, .. } => {
            let k = match kind {
                JoinKind::Inner => "Inner",
                JoinKind::Left => "Left",
                JoinKind::Right => "Right",
                JoinKind::Full => "Full",
            };
            if equi.is_empty() {
                format!("Nested Loop {k} Join{}", opt("Join Filter", on))
            } else {
                format!(
                    "Hash {k} Join keys: {}{}",
                    equi.iter()
                        .map(|(a, b)| format!("{} = inner.{}", expr(a), expr(b)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    opt("Join Filter", on)
                )
            }
        }
        Plan::Aggregate { group, aggs, .. } => format!(
            "{}HashAggregate group=({}) aggs={}",
            if crate::columnar::pushdown::analyze(plan).is_some() {
                "Columnar (vectorized per chunk, partial states merged) "
            } else {
                ""
            },
            group.iter().map(expr).collect::<Vec<_>>().join(", "),
            aggs.len()
        ),
        Plan::Sort { keys, .. } => format!(
            "Sort: {}",
            keys.iter()
                .map(|k| format!("{}{}", expr(&k.expr), if k.desc { " DESC" } else { "" }))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Plan::Limit { limit, offset, .. } => {
            format!("Limit{}{}", opt("limit", limit), opt("offset", offset))
        }
        Plan::Distinct { .. } => "Distinct".into(),
        Plan::SetOp { kind, all, .. } => format!(
            "{}{}",
            match kind {
                SetOpKind::Union => "Union",
                SetOpKind::Intersect => "Intersect",
                SetOpKind::Except => "Except",
            },
            if *all { " All" } else { "" }
        ),
    };
    out.push(format!("{pad}{line}"));
    for input in plan.inputs() {
        node(input, depth + 1, out, notes);
    }
}
