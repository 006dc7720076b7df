//! The logical plan and bound expressions the binder produces, the optimizer rewrites and the
//! executor runs; `explain` prints it as EXPLAIN shows it.

use std::rc::Rc;

use crate::catalog::{IndexDef, TableDef};
use crate::types::{SqlType, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

impl BinOp {
    pub fn symbol(&self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::NotEq => "<>",
            BinOp::Lt => "<",
            BinOp::LtEq => "<=",
            BinOp::Gt => ">",
            BinOp::GtEq => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
            BinOp::Concat => "||",
        }
    }

    pub fn is_comparison(&self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq
        )
    }

    /// The comparison with its operands swapped (a < b  ==  b > a).
    pub fn flip(&self) -> BinOp {
        match self {
            BinOp::Lt => BinOp::Gt,
            BinOp::LtEq => BinOp::GtEq,
            BinOp::Gt => BinOp::Lt,
            BinOp::GtEq => BinOp::LtEq,
            other => *other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    CountStar,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub func: AggFunc,
    pub arg: Option<BExpr>,
    pub distinct: bool,
    /// Result type.
    pub ty: SqlType,
}

/// A subquery inside an expression.
#[derive(Debug)]
pub struct SubPlan {
    pub plan: Plan,
    /// References columns of an enclosing query: re-run per outer row.
    pub correlated: bool,
}

/// A bound expression: columns are positions in the input row.
#[derive(Debug, Clone)]
pub enum BExpr {
    Lit(Value),
    Col(usize),
    /// A column of an enclosing query's row: `depth` levels out (1 = the immediate parent).
    Outer(usize, usize),
    Param(usize),
    Neg(Box<BExpr>),
    Not(Box<BExpr>),
    Bin(BinOp, Box<BExpr>, Box<BExpr>),
    IsNull(Box<BExpr>, bool),
    /// `e IS [NOT] TRUE/FALSE`: (expr, truth, negated).
    IsBool(Box<BExpr>, bool, bool),
    /// `a IS [NOT] DISTINCT FROM b`: negated = IS NOT DISTINCT.
    IsDistinct(Box<BExpr>, Box<BExpr>, bool),
    InList(Box<BExpr>, Vec<BExpr>, bool),
    Like {
        expr: Box<BExpr>,
        pattern: Box<BExpr>,
        negated: bool,
        ci: bool,
    },
    Case {
        operand: Option<Box<BExpr>>,
        whens: Vec<(BExpr, BExpr)>,
        else_: Option<Box<BExpr>>,
    },
    Cast(Box<BExpr>, SqlType),
    Func(String, Vec<BExpr>),
    /// Only between binding and aggregate rewriting.
    Agg(Box<AggCall>),
    Subquery(Rc<SubPlan>),
    Exists(Rc<SubPlan>, bool),
    InSub(Box<BExpr>, Rc<SubPlan>, bool),
}

impl PartialEq for BExpr {
    /// Structural equality (used to match GROUP BY expressions); subqueries compare by
    /// identity.
    fn eq(&self, other: &Self) -> bool {
        use BExpr::*;
        match (self, other) {
            (Lit(a), Lit(b)) => a == b && a.sql_type() == b.sql_type(),
            (Col(a), Col(b)) => a == b,
            (Outer(a, b), Outer(c, d)) => a == c && b == d,
            (Param(a), Param(b)) => a == b,
            (Neg(a), Neg(b)) | (Not(a), Not(b)) => a == b,
            (Bin(o1, a1, b1), Bin(o2, a2, b2)) => o1 == o2 && a1 == a2 && b1 == b2,
            (IsNull(a, n1), IsNull(b, n2)) => a == b && n1 == n2,
            (IsBool(a, t1, n1), IsBool(b, t2, n2)) => a == b && t1 == t2 && n1 == n2,
            (IsDistinct(a1, b1, n1), IsDistinct(a2, b2, n2)) => a1 == a2 && b1 == b2 && n1 == n2,
            (InList(a, l1, n1), InList(b, l2, n2)) => a == b && l1 == l2 && n1 == n2,
            (
                Like {
                    expr: e1,
                    pattern: p1,
                    negated: n1,
                    ci: c1,
                },
                Like {
                    expr: e2,
                    pattern: p2,
                    negated: n2,
                    ci: c2,
                },
            ) => e1 == e2 && p1 == p2 && n1 == n2 && c1 == c2,
            (
                Case {
                    operand: o1,
                    whens: w1,
                    else_: e1,
                },
                Case {
                    operand: o2,
                    whens: w2,
                    else_: e2,
                },
            ) => o1 == o2 && w1 == w2 && e1 == e2,
            (Cast(a, t1), Cast(b, t2)) => a == b && t1 == t2,
            (Func(f1, a1), Func(f2, a2)) => f1 == f2 && a1 == a2,
            (Agg(a), Agg(b)) => a == b,
            (Subquery(a), Subquery(b)) => Rc::ptr_eq(a, b),
            (Exists(a, n1), Exists(b, n2)) => Rc::ptr_eq(a, b) && n1 == n2,
            (InSub(e1, a, n1), InSub(e2, b, n2)) => e1 == e2 && Rc::ptr_eq(a, b) && n1 == n2,
            _ => false,
        }
    }
}

impl BExpr {
    pub fn lit(v: Value) -> BExpr {
        BExpr::Lit(v)
    }

    pub fn and(a: BExpr, b: BExpr) -> BExpr {
        BExpr::Bin(BinOp::And, Box::new(a), Box::new(b))
    }

    /// Calls `f` on every direct child expression (not into subquery plans).
    pub fn children(&self) -> Vec<&BExpr> {
        use BExpr::*;
        match self {
            Lit(_) | Col(_) | Outer(..) | Param(_) | Subquery(_) | Exists(..) => vec![],
            Neg(a) | Not(a) | IsNull(a, _) | IsBool(a, ..) | Cast(a, _) => vec![a],
            Bin(_, a, b) | IsDistinct(a, b, _) => vec![a, b],
            InList(a, l, _) => std::iter::once(&**a).chain(l.iter()).collect(),
            Like { expr, pattern, .. } => vec![expr, pattern],
            Case {
                operand,
                whens,
                else_,
            } => {
                let mut v: Vec<&BExpr> = operand.iter().map(|b| &**b).collect();
                for (w, t) in whens {
                    v.push(w);
                    v.push(t);
                }
                v.extend(else_.iter().map(|b| &**b));
                v
            }
            Func(_, args) => args.iter().collect(),
            Agg(a) => a.arg.iter().collect(),
            InSub(a, _, _) => vec![a],
        }
    }

    /// True if the expression reads any column of its own row.
    pub fn uses_columns(&self) -> bool {
        matches!(self, BExpr::Col(_))
            || self.children().iter().any(|c| c.uses_columns())
            || self.has_correlated_subquery()
    }

    fn has_correlated_subquery(&self) -> bool {
        match self {
            BExpr::Subquery(s) | BExpr::Exists(s, _) | BExpr::InSub(_, s, _) => s.correlated,
            _ => false,
        }
    }

    /// Highest column index read (None if none).
    pub fn max_col(&self) -> Option<usize> {
        let own = if let BExpr::Col(i) = self {
            Some(*i)
        } else {
            None
        };
        self.children()
            .iter()
            .filter_map(|c| c.max_col())
            .chain(own)
            .max()
    }

    /// True when the value cannot change during one execution (no columns, no outer
    /// references, no subqueries): foldable or usable as an index key.
    pub fn is_constant(&self) -> bool {
        match self {
            BExpr::Col(_) | BExpr::Outer(..) | BExpr::Agg(_) => false,
            BExpr::Subquery(_) | BExpr::Exists(..) | BExpr::InSub(..) => false,
            BExpr::Func(name, _) if name == "random" => false,
            _ => self.children().iter().all(|c| c.is_constant()),
        }
    }

    /// Like `is_constant` but also rejects parameters (folding needs the value now).
    pub fn is_literal_only(&self) -> bool {
        !matches!(self, BExpr::Param(_))
            && self.is_constant()
            && self.children().iter().all(|c| c.is_literal_only())
    }

    /// Rewrites column indexes through `map` (old index → new index).
    pub fn remap_cols(&self, map: &dyn Fn(usize) -> usize) -> BExpr {
        self.transform(&|e| match e {
            BExpr::Col(i) => Some(BExpr::Col(map(*i))),
            _ => None,
        })
    }

    /// Rebuilds the tree bottom-up... top-down: `f` may replace a node (then its children are
    /// not visited).
    pub fn transform(&self, f: &dyn Fn(&BExpr) -> Option<BExpr>) -> BExpr {
        if let Some(r) = f(self) {
            return r;
        }
        use BExpr::*;
        let t = |e: &BExpr| Box::new(e.transform(f));
        match self {
            Lit(_) | Col(_) | Outer(..) | Param(_) | Subquery(_) | Exists(..) => self.clone(),
            Neg(a) => Neg(t(a)),
            Not(a) => Not(t(a)),
            Bin(op, a, b) => Bin(*op, t(a), t(b)),
            IsNull(a, n) => IsNull(t(a), *n),
            IsBool(a, v, n) => IsBool(t(a), *v, *n),
            IsDistinct(a, b, n) => IsDistinct(t(a), t(b), *n),
            InList(a, l, n) => InList(t(a), l.iter().map(|e| e.transform(f)).collect(), *n),
            Like {
                expr,
                pattern,
                negated,
                ci,
            } => Like {
                expr: t(expr),
                pattern: t(pattern),
                negated: *negated,
                ci: *ci,
            },
            Case {
                operand,
                whens,
                else_,
            } => Case {
                operand: operand.as_ref().map(|o| t(o)),
                whens: whens
                    .iter()
                    .map(|(w, r)| (w.transform(f), r.transform(f)))
                    .collect(),
                else_: else_.as_ref().map(|e| t(e)),
            },
            Cast(a, ty) => Cast(t(a), ty.clone()),
            Func(n, args) => Func(n.clone(), args.iter().map(|e| e.transform(f)).collect()),
            Agg(a) => Agg(Box::new(AggCall {
                func: a.func,
                arg: a.arg.as_ref().map(|e| e.transform(f)),
                distinct: a.distinct,
                ty: a.ty.clone(),
            })),
            InSub(a, s, n) => InSub(t(a), s.clone(), *n),
        }
    }

    /// Splits a conjunction into its terms.
    pub fn conjuncts(self) -> Vec<BExpr> {
        match self {
            BExpr::Bin(BinOp::And, a, b) => {
                let mut v = a.conjuncts();
                v.extend(b.conjuncts());
                v
            }
            other => vec![other],
        }
    }

    pub fn conjoin(terms: Vec<BExpr>) -> Option<BExpr> {
        terms.into_iter().reduce(BExpr::and)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOpKind {
    Union,
    Intersect,
    Except,
}

#[derive(Debug, Clone)]
pub struct SortKey {
    pub expr: BExpr,
    pub desc: bool,
    pub nulls_first: bool,
}

/// A bound on one index key column range.
#[derive(Debug, Clone)]
pub struct KeyRange {
    /// Equality values for a prefix of the index columns.
    pub eq: Vec<BExpr>,
    /// Optional range on the next column: (value, inclusive).
    pub lo: Option<(BExpr, bool)>,
    pub hi: Option<(BExpr, bool)>,
}

#[derive(Debug, Clone)]
pub enum Plan {
    /// Literal rows (also SELECT without FROM: one row of width 0).
    Values {
        rows: Vec<Vec<BExpr>>,
        width: usize,
    },
    /// Every row of a table, filtered.
    Scan {
        table: Rc<TableDef>,
        filter: Option<BExpr>,
    },
    /// At most one row by its full primary key: one `get` on the owning shard.
    PkGet {
        table: Rc<TableDef>,
        key: Vec<BExpr>,
        filter: Option<BExpr>,
    },
    /// Rows found through a secondary index (or a primary-key prefix/range when `index` is
    /// None), filtered.
    IndexScan {
        table: Rc<TableDef>,
        index: Option<IndexDef>,
        range: KeyRange,
        filter: Option<BExpr>,
    },
    GenerateSeries {
        args: Vec<BExpr>,
    },
    Filter {
        input: Box<Plan>,
        pred: BExpr,
    },
    Project {
        input: Box<Plan>,
        exprs: Vec<BExpr>,
    },
    Join {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: JoinKind,
        /// Equality keys (left expr, right expr) for a hash join; the rest is in `on`.
        equi: Vec<(BExpr, BExpr)>,
        on: Option<BExpr>,
    },
    Aggregate {
        input: Box<Plan>,
        group: Vec<BExpr>,
        aggs: Vec<AggCall>,
    },
    Sort {
        input: Box<Plan>,
        keys: Vec<SortKey>,
    },
    Limit {
        input: Box<Plan>,
        limit: Option<BExpr>,
        offset: Option<BExpr>,
    },
    Distinct {
        input: Box<Plan>,
    },
    SetOp {
        kind: SetOpKind,
        all: bool,
        left: Box<Plan>,
        right: Box<Plan>,
    },
}

impl Plan {
    /// The operator's input plans (not subquery plans inside expressions), left first.
    pub fn inputs(&self) -> Vec<&Plan> {
        match self {
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. }
            | Plan::Distinct { input } => vec![input],
            Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => {
                vec![left, right]
            }
            _ => Vec::new(),
        }
    }

    /// Number of columns each output row has.
    pub fn width(&self) -> usize {
        match self {
            Plan::Values { width, .. } => *width,
            Plan::Scan { table, .. }
            | Plan::PkGet { table, .. }
            | Plan::IndexScan { table, .. } => table.columns.len(),
            Plan::GenerateSeries { .. } => 1,
            Plan::Filter { input, .. }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. }
            | Plan::Distinct { input } => input.width(),
            Plan::Project { exprs, .. } => exprs.len(),
            Plan::Join { left, right, .. } => left.width() + right.width(),
            Plan::Aggregate { group, aggs, .. } => group.len() + aggs.len(),
            Plan::SetOp { left, .. } => left.width(),
        }
    }
}

/// A bound query: its plan and its output columns.
#[derive(Debug, Clone)]
pub struct BoundQuery {
    pub plan: Plan,
    pub names: Vec<String>,
    pub types: Vec<SqlType>,
    /// Reads a row of an enclosing query.
    pub correlated: bool,
}

impl Plan {
    /// A copy of the plan with `f` applied to every expression of every operator (not into
    /// subquery plans; `f` decides about those).
    pub fn map_exprs(&self, f: &dyn Fn(&BExpr) -> BExpr) -> Plan {
        let b = |p: &Plan| Box::new(p.map_exprs(f));
        let o = |e: &Option<BExpr>| e.as_ref().map(f);
        let v = |es: &[BExpr]| es.iter().map(f).collect::<Vec<_>>();
        match self {
            Plan::Values { rows, width } => Plan::Values {
                rows: rows.iter().map(|r| v(r)).collect(),
                width: *width,
            },
            Plan::Scan { table, filter } => Plan::Scan {
                table: table.clone(),
                filter: o(filter),
            },
            Plan::PkGet { table, key, filter } => Plan::PkGet {
                table: table.clone(),
                key: v(key),
                filter: o(filter),
            },
            Plan::IndexScan {
                table,
                index,
                range,
                filter,
            } => Plan::IndexScan {
                table: table.clone(),
                index: index.clone(),
                range: KeyRange {
                    eq: v(&range.eq),
                    lo: range.lo.as_ref().map(|(e, i)| (f(e), *i)),
                    hi: range.hi.as_ref().map(|(e, i)| (f(e), *i)),
                },
                filter: o(filter),
            },
            Plan::GenerateSeries { args } => Plan::GenerateSeries { args: v(args) },
            Plan::Filter { input, pred } => Plan::Filter {
                input: b(input),
                pred: f(pred),
            },
            Plan::Project { input, exprs } => Plan::Project {
                input: b(input),
                exprs: v(exprs),
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
                kind: *kind,
                equi: equi.iter().map(|(l, r)| (f(l), f(r))).collect(),
                on: o(on),
            },
            Plan::Aggregate { input, group, aggs } => Plan::Aggregate {
                input: b(input),
                group: v(group),
                aggs: aggs
                    .iter()
                    .map(|a| AggCall {
                        arg: a.arg.as_ref().map(f),
                        ..a.clone()
                    })
                    .collect(),
            },
            Plan::Sort { input, keys } => Plan::Sort {
                input: b(input),
                keys: keys
                    .iter()
                    .map(|k| SortKey {
                        expr: f(&k.expr),
                        ..k.clone()
                    })
                    .collect(),
            },
            Plan::Limit {
                input,
                limit,
                offset,
            } => Plan::Limit {
                input: b(input),
                limit: o(limit),
                offset: o(offset),
            },
            Plan::Distinct { input } => Plan::Distinct { input: b(input) },
            Plan::SetOp {
                kind,
                all,
                left,
                right,
            } => Plan::SetOp {
                kind: *kind,
                all: *all,
                left: b(left),
                right: b(right),
            },
        }
    }
}

/// Rewrites references to the query `depth` levels out (`Outer(depth, i)`) through `map`,
/// inside `e` and every subquery below it (where the same query is one level further out).
/// Call with depth 0 on an expression of the query itself. `map` returns None for a column
/// it cannot provide, which is reported through `failed`.
pub fn remap_outer(
    e: &BExpr,
    depth: usize,
    map: &dyn Fn(usize) -> Option<usize>,
    failed: &std::cell::Cell<bool>,
) -> BExpr {
    e.transform(&|x| match x {
        BExpr::Outer(d, i) if *d == depth => match map(*i) {
            Some(n) => Some(BExpr::Outer(*d, n)),
            None => {
                failed.set(true);
                Some(x.clone())
            }
        },
        BExpr::Subquery(sp) if sp.correlated => {
            Some(BExpr::Subquery(remap_subplan(sp, depth, map, failed)))
        }
        BExpr::Exists(sp, n) if sp.correlated => {
            Some(BExpr::Exists(remap_subplan(sp, depth, map, failed), *n))
        }
        BExpr::InSub(a, sp, n) => {
            let a = Box::new(remap_outer(a, depth, map, failed));
            let sp = if sp.correlated {
                remap_subplan(sp, depth, map, failed)
            } else {
                sp.clone()
            };
            Some(BExpr::InSub(a, sp, *n))
        }
        _ => None,
    })
}

fn remap_subplan(
    sp: &Rc<SubPlan>,
    depth: usize,
    map: &dyn Fn(usize) -> Option<usize>,
    failed: &std::cell::Cell<bool>,
) -> Rc<SubPlan> {
    let plan = sp
        .plan
        .map_exprs(&|e| remap_outer(e, depth + 1, map, failed));
    Rc::new(SubPlan {
        plan,
        correlated: sp.correlated,
    })
}
