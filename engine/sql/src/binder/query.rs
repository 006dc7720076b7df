//! Binding of queries: WITH, set operations, VALUES, SELECT (FROM, WHERE, GROUP BY, HAVING,
//! ORDER BY, DISTINCT), LIMIT/OFFSET.

use std::cell::RefCell;
use std::collections::HashMap;

use sqlparser::ast::{
    self, Expr, GroupByExpr, JoinConstraint, JoinOperator, OrderByExpr, OrderByKind, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, TableFactor,
    TableWithJoins,
};

use super::{ident_name, object_name, Binder, Scope, ScopeCol, VIEW_DEPTH_MAX};
use crate::error::{state, Result, SqlError};
use crate::plan::{AggCall, BExpr, BinOp, BoundQuery, JoinKind, Plan, SetOpKind, SortKey};
use crate::types::{common_type, SqlType, Value};

/// A FROM item once bound: its plan, its columns, and whether it reads an enclosing row.
type FromItem = (Plan, Scope, bool);

/// An ORDER BY key: an output column (Ok) or an expression over the input (Err).
type OrderKey = std::result::Result<usize, BExpr>;

fn contains_agg(e: &BExpr) -> bool {
    matches!(e, BExpr::Agg(_)) || e.children().iter().any(|c| contains_agg(c))
}

fn output_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(p) => p.last().map(ident_name).unwrap_or_default(),
        Expr::Function(f) => object_name(&f.name),
        Expr::Nested(inner) => output_name(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match &**expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => output_name(expr),
            _ => data_type.to_string().to_lowercase(),
        },
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Substring { .. } => "substring".into(),
        _ => "?column?".into(),
    }
}

fn visible(t: &SqlType) -> SqlType {
    if *t == SqlType::Unknown {
        SqlType::Text
    } else {
        t.clone()
    }
}

/// Replaces group expressions and aggregates by columns of the Aggregate node's output.
fn rewrite_agg(
    e: &BExpr,
    group: &[BExpr],
    aggs: &RefCell<Vec<AggCall>>,
    err: &RefCell<Option<SqlError>>,
) -> BExpr {
    e.transform(&|x| {
        if let Some(i) = group.iter().position(|g| g == x) {
            return Some(BExpr::Col(i));
        }
        match x {
            BExpr::Agg(a) => {
                let mut v = aggs.borrow_mut();
                let j = match v.iter().position(|b| b == &**a) {
                    Some(j) => j,
                    None => {
                        v.push((**a).clone());
                        v.len() - 1
                    }
                };
                Some(BExpr::Col(group.len() + j))
            }
            BExpr::Col(_) => {
                err.borrow_mut().get_or_insert_with(|| {
                    SqlError::new(
                        state::GROUPING_ERROR,
                        "column must appear in the GROUP BY clause or be used in an aggregate function",
                    )
                });
                Some(x.clone())
            }
            BExpr::Subquery(_) | BExpr::Exists(..) | BExpr::InSub(..) => {
                // The subquery's references to this query's row must now name grouped
                // columns of the aggregate's output.
                let failed = std::cell::Cell::new(false);
                let map = |i: usize| group.iter().position(|g| *g == BExpr::Col(i));
                let inner = match x {
                    BExpr::InSub(a, sp, n) => {
                        let a = rewrite_agg(a, group, aggs, err);
                        let probe = BExpr::InSub(Box::new(BExpr::Lit(Value::Null)), sp.clone(), *n);
                        match crate::plan::remap_outer(&probe, 0, &map, &failed) {
                            BExpr::InSub(_, sp, n) => BExpr::InSub(Box::new(a), sp, n),
                            other => other,
                        }
                    }
                    other => crate::plan::remap_outer(other, 0, &map, &failed),
                };
                if failed.get() {
                    err.borrow_mut().get_or_insert_with(|| {
                        SqlError::new(state::GROUPING_ERROR, "subquery uses ungrouped column from outer query")
                    });
                }
                Some(inner)
            }
            _ => None,
        }
    })
}

impl Binder<'_> {
    pub fn query(&mut self, q: &Query) -> Result<BoundQuery> {
        let mut pushed = false;
        if let Some(with) = &q.with {
            if with.recursive {
                return Err(SqlError::unsupported("WITH RECURSIVE"));
            }
            let mut map = HashMap::new();
            for cte in &with.cte_tables {
                let cols = cte
                    .alias
                    .columns
                    .iter()
                    .map(|c| ident_name(&c.name))
                    .collect();
                map.insert(ident_name(&cte.alias.name), ((*cte.query).clone(), cols));
            }
            self.ctes.push(map);
            pushed = true;
        }
        let r = self.query_body(q);
        if pushed {
            self.ctes.pop();
        }
        r
    }

    fn query_body(&mut self, q: &Query) -> Result<BoundQuery> {
        let order: &[OrderByExpr] = match &q.order_by {
            None => &[],
            Some(o) => match &o.kind {
                OrderByKind::Expressions(v) => v,
                OrderByKind::All(_) => return Err(SqlError::unsupported("ORDER BY ALL")),
            },
        };
        if q.fetch.is_some() || !q.limit_by.is_empty() || !q.locks.is_empty() {
            return Err(SqlError::unsupported("FETCH, LIMIT BY and locking clauses"));
        }
        let mut bq = match &*q.body {
            SetExpr::Select(s) => self.select(s, order)?,
            other => {
                let bq = self.set_expr(other)?;
                if order.is_empty() {
                    bq
                } else {
                    self.order_outputs(bq, order)?
                }
            }
        };
        if q.limit.is_some() || q.offset.is_some() {
            let mut bind_count = |e: &Expr| -> Result<BExpr> {
                self.push_scope(Scope::default());
                let r = self.expr(e);
                if self.pop_scope() {
                    self.mark_correlated();
                }
                let (b, t) = r?;
                if !t.is_integer() && t != SqlType::Unknown && t != SqlType::Numeric {
                    return Err(SqlError::mismatch(format!(
                        "argument of LIMIT must be type bigint, not type {}",
                        t.pg_name()
                    )));
                }
                self.coerce(b, &SqlType::Int64)
            };
            let limit = q.limit.as_ref().map(&mut bind_count).transpose()?;
            let offset = q
                .offset
                .as_ref()
                .map(|o| bind_count(&o.value))
                .transpose()?;
            bq.plan = Plan::Limit {
                input: Box::new(bq.plan),
                limit,
                offset,
            };
        }
        Ok(bq)
    }

    fn set_expr(&mut self, s: &SetExpr) -> Result<BoundQuery> {
        match s {
            SetExpr::Select(sel) => self.select(sel, &[]),
            SetExpr::Query(q) => self.query(q),
            SetExpr::Values(v) => self.values(&v.rows),
            SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => {
                let l = self.set_expr(left)?;
                let r = self.set_expr(right)?;
                let kind = match op {
                    SetOperator::Union => SetOpKind::Union,
                    SetOperator::Intersect => SetOpKind::Intersect,
                    SetOperator::Except | SetOperator::Minus => SetOpKind::Except,
                };
                if l.types.len() != r.types.len() {
                    return Err(SqlError::syntax(format!(
                        "each {op} query must have the same number of columns"
                    )));
                }
                let mut types = Vec::with_capacity(l.types.len());
                for (a, b) in l.types.iter().zip(&r.types) {
                    types.push(common_type(a, b).ok_or_else(|| {
                        SqlError::mismatch(format!(
                            "{op} types {} and {} cannot be matched",
                            a.pg_name(),
                            b.pg_name()
                        ))
                    })?);
                }
                let all = matches!(set_quantifier, SetQuantifier::All);
                let left = cast_outputs(l.plan, &l.types, &types);
                let right = cast_outputs(r.plan, &r.types, &types);
                Ok(BoundQuery {
                    plan: Plan::SetOp {
                        kind,
                        all,
                        left: Box::new(left),
                        right: Box::new(right),
                    },
                    names: l.names,
                    types: types.iter().map(visible).collect(),
                    correlated: l.correlated || r.correlated,
                })
            }
            other => Err(SqlError::unsupported(format!("query body {other}"))),
        }
    }

    pub fn values(&mut self, rows: &[Vec<Expr>]) -> Result<BoundQuery> {
        let width = rows.first().map_or(0, Vec::len);
        self.push_scope(Scope::default());
        let mut bound: Vec<Vec<(BExpr, SqlType)>> = Vec::with_capacity(rows.len());
        let mut err = None;
        for r in rows {
            if r.len() != width {
                err = Some(SqlError::syntax("VALUES lists must all be the same length"));
                break;
            }
            let mut out = Vec::with_capacity(width);
            for e in r {
                match self.expr(e) {
                    Ok(b) => out.push(b),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            bound.push(out);
        }
        let correlated = self.pop_scope();
        if let Some(e) = err {
            return Err(e);
        }
        let mut types = vec![SqlType::Unknown; width];
        for r in &bound {
            for (i, (_, t)) in r.iter().enumerate() {
                types[i] = common_type(&types[i], t).ok_or_else(|| {
                    SqlError::mismatch(format!(
                        "VALUES types {} and {} cannot be matched",
                        types[i].pg_name(),
                        t.pg_name()
                    ))
                })?;
            }
        }
        let mut out_rows = Vec::with_capacity(bound.len());
        for r in bound {
            let mut row = Vec::with_capacity(width);
            for (i, (b, _)) in r.into_iter().enumerate() {
                row.push(self.coerce(b, &types[i])?);
            }
            out_rows.push(row);
        }
        Ok(BoundQuery {
            plan: Plan::Values {
                rows: out_rows,
                width,
            },
            names: (1..=width).map(|i| format!("column{i}")).collect(),
            types,
            correlated,
        })
    }

    /// ORDER BY over the output of a set operation: output names, ordinals or expressions
    /// of the output columns.
    fn order_outputs(&mut self, mut bq: BoundQuery, order: &[OrderByExpr]) -> Result<BoundQuery> {
        let scope = Scope {
            cols: bq
                .names
                .iter()
                .zip(&bq.types)
                .map(|(n, t)| ScopeCol {
                    table: None,
                    name: n.clone(),
                    ty: t.clone(),
                })
                .collect(),
        };
        self.push_scope(scope);
        let mut keys = Vec::new();
        let mut err = None;
        for o in order {
            let r = match ordinal(&o.expr, bq.types.len()) {
                Some(r) => r.map(BExpr::Col),
                None => self.expr(&o.expr).map(|(b, _)| b),
            };
            match r {
                Ok(expr) => keys.push(sort_key(expr, o)),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if self.pop_scope() {
            bq.correlated = true;
        }
        if let Some(e) = err {
            return Err(e);
        }
        bq.plan = Plan::Sort {
            input: Box::new(bq.plan),
            keys,
        };
        Ok(bq)
    }

    fn select(&mut self, sel: &Select, order: &[OrderByExpr]) -> Result<BoundQuery> {
        if matches!(sel.distinct, Some(ast::Distinct::On(_))) {
            return Err(SqlError::unsupported("DISTINCT ON"));
        }
        if sel.top.is_some()
            || sel.into.is_some()
            || !sel.lateral_views.is_empty()
            || sel.qualify.is_some()
        {
            return Err(SqlError::unsupported(
                "TOP, SELECT INTO, LATERAL VIEW, QUALIFY",
            ));
        }
        let (plan, scope, from_corr) = self.from(&sel.from)?;
        self.push_scope(scope);
        if from_corr {
            self.mark_correlated();
        }
        let r = self.select_body(sel, order, plan);
        let corr = self.pop_scope();
        r.map(|mut bq| {
            bq.correlated = corr;
            bq
        })
    }

    fn select_items(&mut self, sel: &Select) -> Result<Vec<(BExpr, String, SqlType)>> {
        let scope = self.scopes.last().cloned().unwrap_or_default();
        let mut items = Vec::new();
        for item in &sel.projection {
            match item {
                SelectItem::Wildcard(_) => {
                    if scope.cols.is_empty() {
                        return Err(SqlError::syntax(
                            "SELECT * with no tables specified is not valid",
                        ));
                    }
                    for (i, c) in scope.cols.iter().enumerate() {
                        items.push((BExpr::Col(i), c.name.clone(), c.ty.clone()));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let name = match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n),
                        SelectItemQualifiedWildcardKind::Expr(_) => {
                            return Err(SqlError::unsupported("expression.*"))
                        }
                    };
                    let before = items.len();
                    for (i, c) in scope.cols.iter().enumerate() {
                        if c.table.as_deref() == Some(name.as_str()) {
                            items.push((BExpr::Col(i), c.name.clone(), c.ty.clone()));
                        }
                    }
                    if items.len() == before {
                        return Err(SqlError::new(
                            state::UNDEFINED_TABLE,
                            format!("missing FROM-clause entry for table \"{name}\""),
                        ));
                    }
                }
                SelectItem::UnnamedExpr(e) => {
                    let (b, t) = self.expr(e)?;
                    items.push((b, output_name(e), t));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let (b, t) = self.expr(expr)?;
                    items.push((b, ident_name(alias), t));
                }
            }
        }
        Ok(items)
    }

    fn select_body(
        &mut self,
        sel: &Select,
        order: &[OrderByExpr],
        mut plan: Plan,
    ) -> Result<BoundQuery> {
        if let Some(w) = &sel.selection {
            let pred = self.boolean_pub(w, "WHERE")?;
            plan = Plan::Filter {
                input: Box::new(plan),
                pred,
            };
        }
        let prev = self.set_agg_allowed(true);
        let r = self.select_clauses(sel, order);
        self.set_agg_allowed(prev);
        let (mut items, group, having, order_keys) = r?;
        let mut extras: Vec<BExpr> = Vec::new();
        // Sort keys as (output column or extra expression, options).
        let mut keys: Vec<(OrderKey, &OrderByExpr)> = Vec::new();
        for (k, o) in order_keys.into_iter().zip(order) {
            keys.push((k, o));
        }
        let is_agg = !group.is_empty()
            || having.is_some()
            || items.iter().any(|(e, _, _)| contains_agg(e))
            || keys
                .iter()
                .any(|(k, _)| matches!(k, Err(e) if contains_agg(e)));
        if is_agg {
            let aggs = RefCell::new(Vec::new());
            let err = RefCell::new(None);
            for it in &mut items {
                it.0 = rewrite_agg(&it.0, &group, &aggs, &err);
            }
            let having = having.map(|h| rewrite_agg(&h, &group, &aggs, &err));
            for (k, _) in &mut keys {
                if let Err(e) = k {
                    *e = rewrite_agg(e, &group, &aggs, &err);
                }
            }
            if let Some(e) = err.into_inner() {
                return Err(e);
            }
            plan = Plan::Aggregate {
                input: Box::new(plan),
                group,
                aggs: aggs.into_inner(),
            };
            if let Some(h) = having {
                plan = Plan::Filter {
                    input: Box::new(plan),
                    pred: h,
                };
            }
        }
        let n = items.len();
        let mut sort = Vec::new();
        for (k, o) in keys {
            let col = match k {
                Ok(i) => i,
                Err(e) => match items.iter().position(|(x, _, _)| *x == e) {
                    Some(i) => i,
                    None => {
                        extras.push(e);
                        n + extras.len() - 1
                    }
                },
            };
            sort.push(sort_key(BExpr::Col(col), o));
        }
        let distinct = matches!(sel.distinct, Some(ast::Distinct::Distinct));
        if distinct && !extras.is_empty() {
            return Err(SqlError::new(
                state::INVALID_COLUMN_REFERENCE,
                "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
            ));
        }
        let mut exprs: Vec<BExpr> = items.iter().map(|(e, _, _)| e.clone()).collect();
        exprs.extend(extras.iter().cloned());
        plan = Plan::Project {
            input: Box::new(plan),
            exprs,
        };
        if distinct {
            plan = Plan::Distinct {
                input: Box::new(plan),
            };
        }
        if !sort.is_empty() {
            plan = Plan::Sort {
                input: Box::new(plan),
                keys: sort,
            };
        }
        if !extras.is_empty() {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..n).map(BExpr::Col).collect(),
            };
        }
        Ok(BoundQuery {
            plan,
            names: items.iter().map(|(_, n, _)| n.clone()).collect(),
            types: items.iter().map(|(_, _, t)| visible(t)).collect(),
            correlated: false,
        })
    }

    /// Select list, GROUP BY, HAVING and ORDER BY keys (an output column or an expression).
    #[allow(clippy::type_complexity)]
    fn select_clauses(
        &mut self,
        sel: &Select,
        order: &[OrderByExpr],
    ) -> Result<(
        Vec<(BExpr, String, SqlType)>,
        Vec<BExpr>,
        Option<BExpr>,
        Vec<OrderKey>,
    )> {
        let items = self.select_items(sel)?;
        let mut group = Vec::new();
        match &sel.group_by {
            GroupByExpr::All(_) => return Err(SqlError::unsupported("GROUP BY ALL")),
            GroupByExpr::Expressions(exprs, mods) => {
                if !mods.is_empty() {
                    return Err(SqlError::unsupported("GROUP BY modifiers"));
                }
                for e in exprs {
                    let g = match ordinal(e, items.len()) {
                        Some(i) => items[i?].0.clone(),
                        None => {
                            let prev = self.set_agg_allowed(false);
                            let r = self.expr(e);
                            self.set_agg_allowed(prev);
                            match r {
                                Ok((b, _)) => b,
                                Err(err) if err.sqlstate == state::UNDEFINED_COLUMN => {
                                    match alias_of(e, &items) {
                                        Some(i) => items[i].0.clone(),
                                        None => return Err(err),
                                    }
                                }
                                Err(err) => return Err(err),
                            }
                        }
                    };
                    if contains_agg(&g) {
                        return Err(SqlError::new(
                            state::GROUPING_ERROR,
                            "aggregate functions are not allowed in GROUP BY",
                        ));
                    }
                    group.push(g);
                }
            }
        }
        let having = match &sel.having {
            Some(h) => Some(self.boolean_pub(h, "HAVING")?),
            None => None,
        };
        let mut keys = Vec::new();
        for o in order {
            if let Some(i) = ordinal(&o.expr, items.len()) {
                keys.push(Ok(i?));
                continue;
            }
            if let Some(i) = alias_of(&o.expr, &items) {
                keys.push(Ok(i));
                continue;
            }
            let (b, _) = self.expr(&o.expr)?;
            keys.push(Err(b));
        }
        Ok((items, group, having, keys))
    }

    pub fn boolean_pub(&mut self, e: &Expr, what: &str) -> Result<BExpr> {
        let (b, t) = self.expr(e)?;
        if t != SqlType::Bool && t != SqlType::Unknown {
            return Err(SqlError::mismatch(format!(
                "argument of {what} must be type boolean, not type {}",
                t.pg_name()
            )));
        }
        self.coerce(b, &SqlType::Bool)
    }

    fn from(&mut self, from: &[TableWithJoins]) -> Result<FromItem> {
        if from.is_empty() {
            return Ok((
                Plan::Values {
                    rows: vec![vec![]],
                    width: 0,
                },
                Scope::default(),
                false,
            ));
        }
        let mut acc: Option<FromItem> = None;
        for twj in from {
            let item = self.table_with_joins(twj)?;
            acc = Some(match acc {
                None => item,
                Some(left) => cross(left, item),
            });
        }
        acc.ok_or_else(|| SqlError::internal("empty FROM"))
    }

    fn table_with_joins(&mut self, twj: &TableWithJoins) -> Result<FromItem> {
        let mut left = self.table_factor(&twj.relation)?;
        for j in &twj.joins {
            let right = self.table_factor(&j.relation)?;
            let (kind, constraint) = match &j.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, Some(c)),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, Some(c)),
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Right, Some(c)),
                JoinOperator::FullOuter(c) => (JoinKind::Full, Some(c)),
                JoinOperator::CrossJoin => (JoinKind::Inner, None),
                _ => return Err(SqlError::unsupported("this join type")),
            };
            left = self.join(left, right, kind, constraint)?;
        }
        Ok(left)
    }

    fn join(
        &mut self,
        left: FromItem,
        right: FromItem,
        kind: JoinKind,
        c: Option<&JoinConstraint>,
    ) -> Result<FromItem> {
        let (lp, ls, lc) = left;
        let (rp, rs, rc) = right;
        let lw = ls.cols.len();
        let mut scope = ls.clone();
        scope.cols.extend(rs.cols.iter().cloned());
        let using: Vec<String> = match c {
            Some(JoinConstraint::Using(names)) => names.iter().map(object_name).collect(),
            Some(JoinConstraint::Natural) => ls
                .cols
                .iter()
                .filter(|c| rs.cols.iter().any(|r| r.name == c.name))
                .map(|c| c.name.clone())
                .collect(),
            _ => Vec::new(),
        };
        let mut on = None;
        let mut corr = lc || rc;
        if let Some(JoinConstraint::On(e)) = c {
            self.push_scope(scope.clone());
            let r = self.boolean_pub(e, "JOIN/ON");
            corr |= self.pop_scope();
            on = Some(r?);
        }
        for name in &using {
            let li = ls.cols.iter().rposition(|c| &c.name == name);
            let ri = rs.cols.iter().position(|c| &c.name == name);
            let (Some(li), Some(ri)) = (li, ri) else {
                return Err(SqlError::new(
                    state::UNDEFINED_COLUMN,
                    format!(
                        "column \"{name}\" specified in USING clause does not exist in both tables"
                    ),
                ));
            };
            let eq = BExpr::Bin(
                BinOp::Eq,
                Box::new(BExpr::Col(li)),
                Box::new(BExpr::Col(lw + ri)),
            );
            on = Some(match on {
                None => eq,
                Some(o) => BExpr::and(o, eq),
            });
        }
        let plan = Plan::Join {
            left: Box::new(lp),
            right: Box::new(rp),
            kind,
            equi: Vec::new(),
            on,
        };
        Ok((plan, scope, corr))
    }

    fn table_factor(&mut self, tf: &TableFactor) -> Result<FromItem> {
        match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let tname = object_name(name);
                let alias_name = alias.as_ref().map(|a| ident_name(&a.name));
                if let Some(args) = args {
                    return self.table_function(&tname, args, alias.as_ref());
                }
                if let Some(coll) = crate::docs::collection_of(name) {
                    // `documents.<collection>` (issue 11): before CTEs and views, whose
                    // names are unqualified.
                    let t = crate::docs::table_rc(&coll)?;
                    let scope = Scope::of_table(&t, alias_name.as_deref().unwrap_or(&tname));
                    let scope = rename_columns(scope, alias.as_ref());
                    return Ok((
                        Plan::Scan {
                            table: t,
                            filter: None,
                        },
                        scope,
                        false,
                    ));
                }
                if let Some((q, cols)) = self.cte(&tname) {
                    let bq = self.query(&q)?;
                    return Ok(derived(
                        bq,
                        alias_name.unwrap_or(tname),
                        &cols,
                        alias.as_ref(),
                    ));
                }
                if let Some(v) = self.catalog.views.get(&tname).cloned() {
                    if self.view_depth >= VIEW_DEPTH_MAX {
                        return Err(SqlError::new(
                            state::PROGRAM_LIMIT_EXCEEDED,
                            "views nested too deeply",
                        ));
                    }
                    let q = crate::parser::parse_view_query(&v.sql)?;
                    self.view_depth += 1;
                    let saved_ctes = std::mem::take(&mut self.ctes);
                    let r = self.query(&q);
                    self.ctes = saved_ctes;
                    self.view_depth -= 1;
                    let bq = r?;
                    return Ok(derived(
                        bq,
                        alias_name.unwrap_or(tname),
                        &v.columns,
                        alias.as_ref(),
                    ));
                }
                let t = self.table(name)?;
                let scope = Scope::of_table(&t, alias_name.as_deref().unwrap_or(&tname));
                let scope = rename_columns(scope, alias.as_ref());
                Ok((
                    Plan::Scan {
                        table: t,
                        filter: None,
                    },
                    scope,
                    false,
                ))
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
            } => {
                if *lateral {
                    return Err(SqlError::unsupported("LATERAL"));
                }
                let bq = self.query(subquery)?;
                let name = alias
                    .as_ref()
                    .map(|a| ident_name(&a.name))
                    .unwrap_or_default();
                Ok(derived(bq, name, &[], alias.as_ref()))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let (p, s, c) = self.table_with_joins(table_with_joins)?;
                let s = match alias {
                    Some(a) => {
                        let n = ident_name(&a.name);
                        rename_columns(
                            Scope {
                                cols: s
                                    .cols
                                    .into_iter()
                                    .map(|c| ScopeCol {
                                        table: Some(n.clone()),
                                        ..c
                                    })
                                    .collect(),
                            },
                            Some(a),
                        )
                    }
                    None => s,
                };
                Ok((p, s, c))
            }
            other => Err(SqlError::unsupported(format!("FROM item {other}"))),
        }
    }

    fn table_function(
        &mut self,
        name: &str,
        args: &ast::TableFunctionArgs,
        alias: Option<&ast::TableAlias>,
    ) -> Result<FromItem> {
        if name != "generate_series" {
            return Err(SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!("function {name} does not exist"),
            ));
        }
        self.push_scope(Scope::default());
        let mut bound = Vec::new();
        let mut err = None;
        let mut ty = SqlType::Int32;
        for a in &args.args {
            let r = match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => self.expr(e),
                _ => Err(SqlError::unsupported("named arguments")),
            };
            match r {
                Ok((b, t)) => {
                    if t == SqlType::Int64 {
                        ty = SqlType::Int64;
                    } else if !t.is_integer() && t != SqlType::Unknown {
                        err = Some(SqlError::unsupported(format!(
                            "generate_series over {}",
                            t.pg_name()
                        )));
                    }
                    bound.push(b);
                }
                Err(e) => err = Some(e),
            }
        }
        let corr = self.pop_scope();
        if let Some(e) = err {
            return Err(e);
        }
        if !(2..=3).contains(&bound.len()) {
            return Err(SqlError::new(
                state::UNDEFINED_FUNCTION,
                "generate_series takes 2 or 3 arguments",
            ));
        }
        let bound = bound
            .into_iter()
            .map(|b| self.coerce(b, &SqlType::Int64))
            .collect::<Result<Vec<_>>>()?;
        let tname = alias
            .map(|a| ident_name(&a.name))
            .unwrap_or_else(|| name.to_string());
        let cname = alias
            .and_then(|a| a.columns.first())
            .map(|c| ident_name(&c.name))
            .unwrap_or_else(|| {
                if alias.is_some() {
                    tname.clone()
                } else {
                    name.to_string()
                }
            });
        let scope = Scope {
            cols: vec![ScopeCol {
                table: Some(tname),
                name: cname,
                ty,
            }],
        };
        Ok((Plan::GenerateSeries { args: bound }, scope, corr))
    }
}

/// `ORDER BY 2` / `GROUP BY 1`: a 0-based output position, or an error when out of range.
fn ordinal(e: &Expr, n: usize) -> Option<Result<usize>> {
    if let Expr::Value(v) = e {
        if let ast::Value::Number(s, _) = &v.value {
            return Some(match s.parse::<usize>() {
                Ok(k) if k >= 1 && k <= n => Ok(k - 1),
                _ => Err(SqlError::new(
                    state::INVALID_COLUMN_REFERENCE,
                    format!("position {s} is not in select list"),
                )),
            });
        }
    }
    None
}

/// A bare name that matches exactly one output column's name.
fn alias_of(e: &Expr, items: &[(BExpr, String, SqlType)]) -> Option<usize> {
    if let Expr::Identifier(i) = e {
        let n = ident_name(i);
        let hits: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.1 == n)
            .map(|(i, _)| i)
            .collect();
        if hits.len() == 1 {
            return Some(hits[0]);
        }
    }
    None
}

fn sort_key(expr: BExpr, o: &OrderByExpr) -> SortKey {
    let desc = o.options.asc == Some(false);
    SortKey {
        expr,
        desc,
        // PostgreSQL: NULLs are larger than everything, so first when descending.
        nulls_first: o.options.nulls_first.unwrap_or(desc),
    }
}

fn cross(left: FromItem, right: FromItem) -> FromItem {
    let (lp, mut ls, lc) = left;
    let (rp, rs, rc) = right;
    ls.cols.extend(rs.cols);
    (
        Plan::Join {
            left: Box::new(lp),
            right: Box::new(rp),
            kind: JoinKind::Inner,
            equi: Vec::new(),
            on: None,
        },
        ls,
        lc || rc,
    )
}

fn rename_columns(mut s: Scope, alias: Option<&ast::TableAlias>) -> Scope {
    if let Some(a) = alias {
        for (c, new) in s.cols.iter_mut().zip(&a.columns) {
            c.name = ident_name(&new.name);
        }
    }
    s
}

/// A subquery, CTE or view used as a FROM item.
fn derived(
    bq: BoundQuery,
    name: String,
    cols: &[String],
    alias: Option<&ast::TableAlias>,
) -> FromItem {
    let scope = Scope {
        cols: bq
            .names
            .iter()
            .zip(&bq.types)
            .enumerate()
            .map(|(i, (n, t))| ScopeCol {
                table: Some(name.clone()),
                name: cols.get(i).cloned().unwrap_or_else(|| n.clone()),
                ty: t.clone(),
            })
            .collect(),
    };
    (bq.plan, rename_columns(scope, alias), bq.correlated)
}

/// Wraps `plan` in casts where a set operation's column type differs from the branch's.
fn cast_outputs(plan: Plan, have: &[SqlType], want: &[SqlType]) -> Plan {
    if have
        .iter()
        .zip(want)
        .all(|(a, b)| a == b || *b == SqlType::Unknown)
    {
        return plan;
    }
    let exprs = have
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (a, b))| {
            if a == b || *b == SqlType::Unknown {
                BExpr::Col(i)
            } else {
                BExpr::Cast(Box::new(BExpr::Col(i)), b.clone())
            }
        })
        .collect();
    let _ = Value::Null;
    Plan::Project {
        input: Box::new(plan),
        exprs,
    }
}
