//! Expressions in a form that can travel to another shard. A bound `BExpr` cannot (its
//! subquery variants hold `Rc`s, so the type is not `Send`); the scalar subset a pushed-down
//! scan evaluates is mirrored here, converted on the statement's shard and rebuilt as a
//! `BExpr` on the shard that owns the rows.

use crate::plan::{AggCall, AggFunc, BExpr, BinOp};
use crate::types::{SqlType, Value};

/// The scalar subset of `BExpr`: no subqueries, no outer references, no aggregates.
#[derive(Debug, Clone)]
pub enum ShipExpr {
    Lit(Value),
    Col(usize),
    Param(usize),
    Neg(Box<ShipExpr>),
    Not(Box<ShipExpr>),
    Bin(BinOp, Box<ShipExpr>, Box<ShipExpr>),
    IsNull(Box<ShipExpr>, bool),
    IsBool(Box<ShipExpr>, bool, bool),
    IsDistinct(Box<ShipExpr>, Box<ShipExpr>, bool),
    InList(Box<ShipExpr>, Vec<ShipExpr>, bool),
    Like {
        expr: Box<ShipExpr>,
        pattern: Box<ShipExpr>,
        negated: bool,
        ci: bool,
    },
    Case {
        operand: Option<Box<ShipExpr>>,
        whens: Vec<(ShipExpr, ShipExpr)>,
        else_: Option<Box<ShipExpr>>,
    },
    Cast(Box<ShipExpr>, SqlType),
    Func(String, Vec<ShipExpr>),
}

/// An aggregate call whose argument can travel (DISTINCT ones never do: see `rowagg`).
#[derive(Debug, Clone)]
pub struct ShipAgg {
    pub func: AggFunc,
    pub arg: Option<ShipExpr>,
    pub ty: SqlType,
}

fn boxed(e: &BExpr) -> Option<Box<ShipExpr>> {
    to_ship(e).map(Box::new)
}

fn all(es: &[BExpr]) -> Option<Vec<ShipExpr>> {
    es.iter().map(to_ship).collect()
}

/// The travelling form of `e`, or None when `e` needs the statement's shard (a subquery,
/// an outer row, an aggregate).
pub fn to_ship(e: &BExpr) -> Option<ShipExpr> {
    use BExpr as B;
    Some(match e {
        B::Lit(v) => ShipExpr::Lit(v.clone()),
        B::Col(i) => ShipExpr::Col(*i),
        B::Param(i) => ShipExpr::Param(*i),
        B::Neg(a) => ShipExpr::Neg(boxed(a)?),
        B::Not(a) => ShipExpr::Not(boxed(a)?),
        B::Bin(op, a, b) => ShipExpr::Bin(*op, boxed(a)?, boxed(b)?),
        B::IsNull(a, n) => ShipExpr::IsNull(boxed(a)?, *n),
        B::IsBool(a, t, n) => ShipExpr::IsBool(boxed(a)?, *t, *n),
        B::IsDistinct(a, b, n) => ShipExpr::IsDistinct(boxed(a)?, boxed(b)?, *n),
        B::InList(a, l, n) => ShipExpr::InList(boxed(a)?, all(l)?, *n),
        B::Like {
            expr,
            pattern,
            negated,
            ci,
        } => ShipExpr::Like {
            expr: boxed(expr)?,
            pattern: boxed(pattern)?,
            negated: *negated,
            ci: *ci,
        },
        B::Case {
            operand,
            whens,
            else_,
        } => ShipExpr::Case {
            operand: match operand {
                Some(o) => Some(boxed(o)?),
                None => None,
            },
            whens: whens
                .iter()
                .map(|(w, t)| Some((to_ship(w)?, to_ship(t)?)))
                .collect::<Option<_>>()?,
            else_: match else_ {
                Some(e) => Some(boxed(e)?),
                None => None,
            },
        },
        B::Cast(a, ty) => ShipExpr::Cast(boxed(a)?, ty.clone()),
        B::Func(name, args) => ShipExpr::Func(name.clone(), all(args)?),
        B::Outer(..) | B::Agg(_) | B::Subquery(_) | B::Exists(..) | B::InSub(..) => return None,
    })
}

// Takes the enum field's box as it comes (every call site has one), so that the call sites stay
// one word each.
#[allow(clippy::boxed_local)]
fn unbox(e: Box<ShipExpr>) -> Box<BExpr> {
    Box::new(from_ship(*e))
}

/// Rebuilds the bound expression (on the shard that evaluates it).
pub fn from_ship(e: ShipExpr) -> BExpr {
    match e {
        ShipExpr::Lit(v) => BExpr::Lit(v),
        ShipExpr::Col(i) => BExpr::Col(i),
        ShipExpr::Param(i) => BExpr::Param(i),
        ShipExpr::Neg(a) => BExpr::Neg(unbox(a)),
        ShipExpr::Not(a) => BExpr::Not(unbox(a)),
        ShipExpr::Bin(op, a, b) => BExpr::Bin(op, unbox(a), unbox(b)),
        ShipExpr::IsNull(a, n) => BExpr::IsNull(unbox(a), n),
        ShipExpr::IsBool(a, t, n) => BExpr::IsBool(unbox(a), t, n),
        ShipExpr::IsDistinct(a, b, n) => BExpr::IsDistinct(unbox(a), unbox(b), n),
        ShipExpr::InList(a, l, n) => {
            BExpr::InList(unbox(a), l.into_iter().map(from_ship).collect(), n)
        }
        ShipExpr::Like {
            expr,
            pattern,
            negated,
            ci,
        } => BExpr::Like {
            expr: unbox(expr),
            pattern: unbox(pattern),
            negated,
            ci,
        },
        ShipExpr::Case {
            operand,
            whens,
            else_,
        } => BExpr::Case {
            operand: operand.map(unbox),
            whens: whens
                .into_iter()
                .map(|(w, t)| (from_ship(w), from_ship(t)))
                .collect(),
            else_: else_.map(unbox),
        },
        ShipExpr::Cast(a, ty) => BExpr::Cast(unbox(a), ty),
        ShipExpr::Func(name, args) => BExpr::Func(name, args.into_iter().map(from_ship).collect()),
    }
}

/// The travelling form of an aggregate call; None for DISTINCT or an argument that cannot
/// travel.
pub fn ship_agg(a: &AggCall) -> Option<ShipAgg> {
    if a.distinct {
        return None;
    }
    let arg = match &a.arg {
        Some(e) => Some(to_ship(e)?),
        None => None,
    };
    Some(ShipAgg {
        func: a.func,
        arg,
        ty: a.ty.clone(),
    })
}

pub fn unship_agg(a: ShipAgg) -> AggCall {
    AggCall {
        func: a.func,
        arg: a.arg.map(from_ship),
        distinct: false,
        ty: a.ty,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_keeps_the_expression_and_refuses_outer_references() {
        let e = BExpr::Case {
            operand: None,
            whens: vec![(
                BExpr::Bin(
                    BinOp::Gt,
                    Box::new(BExpr::Col(2)),
                    Box::new(BExpr::Param(0)),
                ),
                BExpr::Func("abs".into(), vec![BExpr::Neg(Box::new(BExpr::Col(1)))]),
            )],
            else_: Some(Box::new(BExpr::Cast(
                Box::new(BExpr::Lit(Value::Int32(3))),
                SqlType::Int64,
            ))),
        };
        assert_eq!(from_ship(to_ship(&e).unwrap()), e);
        let outer = BExpr::and(BExpr::Col(0), BExpr::Outer(1, 0));
        assert!(to_ship(&outer).is_none());
    }
}
