//! Expression evaluation with PostgreSQL semantics: three-valued logic, integer overflow
//! (22003), truncating integer division, division by zero (22012).

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::error::{state, Result, SqlError};
use crate::exec::{Ctx, Row};
use crate::plan::{BExpr, BinOp};
use crate::types::{compare, SqlType, Value};

/// The rows of the enclosing queries, innermost last.
pub type Outer<'a> = [&'a [Value]];

pub fn eval(e: &BExpr, row: &[Value], ctx: &Ctx, outer: &Outer) -> Result<Value> {
    Ok(match e {
        BExpr::Lit(v) => v.clone(),
        BExpr::Col(i) => row
            .get(*i)
            .cloned()
            .ok_or_else(|| SqlError::internal(format!("column {i} out of row")))?,
        BExpr::Outer(depth, i) => outer
            .len()
            .checked_sub(*depth)
            .and_then(|d| outer.get(d))
            .and_then(|r| r.get(*i))
            .cloned()
            .ok_or_else(|| SqlError::internal("outer reference out of scope"))?,
        BExpr::Param(i) => ctx.params.get(*i).cloned().ok_or_else(|| {
            SqlError::new(
                state::PROTOCOL_VIOLATION,
                format!("no value for parameter ${}", i + 1),
            )
        })?,
        BExpr::Neg(a) => negate(eval(a, row, ctx, outer)?)?,
        BExpr::Not(a) => match truth(&eval(a, row, ctx, outer)?)? {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        },
        BExpr::Bin(BinOp::And, a, b) => {
            let l = truth(&eval(a, row, ctx, outer)?)?;
            if l == Some(false) {
                return Ok(Value::Bool(false));
            }
            let r = truth(&eval(b, row, ctx, outer)?)?;
            match (l, r) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        BExpr::Bin(BinOp::Or, a, b) => {
            let l = truth(&eval(a, row, ctx, outer)?)?;
            if l == Some(true) {
                return Ok(Value::Bool(true));
            }
            let r = truth(&eval(b, row, ctx, outer)?)?;
            match (l, r) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        BExpr::Bin(op, a, b) => {
            let l = eval(a, row, ctx, outer)?;
            let r = eval(b, row, ctx, outer)?;
            binary(*op, l, r)?
        }
        BExpr::IsNull(a, negated) => Value::Bool(eval(a, row, ctx, outer)?.is_null() != *negated),
        BExpr::IsBool(a, target, negated) => {
            let t = truth(&eval(a, row, ctx, outer)?)?;
            Value::Bool((t == Some(*target)) != *negated)
        }
        BExpr::IsDistinct(a, b, negated) => {
            let l = eval(a, row, ctx, outer)?;
            let r = eval(b, row, ctx, outer)?;
            let distinct = match (l.is_null(), r.is_null()) {
                (true, true) => false,
                (true, false) | (false, true) => true,
                _ => compare(&l, &r) != Some(Ordering::Equal),
            };
            Value::Bool(distinct != *negated)
        }
        BExpr::InList(a, list, negated) => {
            let v = eval(a, row, ctx, outer)?;
            let mut items = Vec::with_capacity(list.len());
            for item in list {
                items.push(eval(item, row, ctx, outer)?);
            }
            in_values(&v, items.iter(), *negated)
        }
        BExpr::Like {
            expr,
            pattern,
            negated,
            ci,
        } => {
            let v = eval(expr, row, ctx, outer)?;
            let p = eval(pattern, row, ctx, outer)?;
            match (v, p) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (v, p) => {
                    let s = text_of(&v);
                    let p = text_of(&p);
                    let m = if *ci {
                        like(&s.to_lowercase(), &p.to_lowercase())
                    } else {
                        like(&s, &p)
                    };
                    Value::Bool(m != *negated)
                }
            }
        }
        BExpr::Case {
            operand,
            whens,
            else_,
        } => {
            let base = match operand {
                Some(o) => Some(eval(o, row, ctx, outer)?),
                None => None,
            };
            for (w, then) in whens {
                let hit = match &base {
                    Some(b) => {
                        let wv = eval(w, row, ctx, outer)?;
                        truth(&binary(BinOp::Eq, b.clone(), wv)?)? == Some(true)
                    }
                    None => truth(&eval(w, row, ctx, outer)?)? == Some(true),
                };
                if hit {
                    return eval(then, row, ctx, outer);
                }
            }
            match else_ {
                Some(e) => eval(e, row, ctx, outer)?,
                None => Value::Null,
            }
        }
        BExpr::Cast(a, ty) => crate::cast::cast(eval(a, row, ctx, outer)?, ty, true)?,
        BExpr::Func(name, args) => {
            if name == "coalesce" {
                for a in args {
                    let v = eval(a, row, ctx, outer)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                return Ok(Value::Null);
            }
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, row, ctx, outer)?);
            }
            crate::funcs::call(name, vals)?
        }
        BExpr::Agg(_) => return Err(SqlError::internal("aggregate outside of an aggregation")),
        BExpr::Subquery(sp) => {
            let rows = ctx.run_subquery(sp, row, outer)?;
            if rows.len() > 1 {
                return Err(SqlError::new(
                    state::CARDINALITY_VIOLATION,
                    "more than one row returned by a subquery used as an expression",
                ));
            }
            rows.first()
                .and_then(|r| r.first())
                .cloned()
                .unwrap_or(Value::Null)
        }
        BExpr::Exists(sp, negated) => {
            let rows = ctx.run_subquery(sp, row, outer)?;
            Value::Bool(rows.is_empty() == *negated)
        }
        BExpr::InSub(a, sp, negated) => {
            let v = eval(a, row, ctx, outer)?;
            let rows = ctx.run_subquery(sp, row, outer)?;
            in_values(&v, rows.iter().map(|r: &Row| &r[0]), *negated)
        }
    })
}

/// `v IN (items)` with SQL's NULL rules.
fn in_values<'a>(v: &Value, items: impl Iterator<Item = &'a Value>, negated: bool) -> Value {
    if v.is_null() {
        // NULL IN () is false; otherwise unknown.
        let mut items = items.peekable();
        return if items.peek().is_none() {
            Value::Bool(negated)
        } else {
            Value::Null
        };
    }
    let mut saw_null = false;
    for item in items {
        if item.is_null() {
            saw_null = true;
        } else if compare(v, item) == Some(Ordering::Equal) {
            return Value::Bool(!negated);
        }
    }
    if saw_null {
        Value::Null
    } else {
        Value::Bool(negated)
    }
}

/// SQL truth of a value: NULL is unknown; numbers are accepted as in SQLite-derived tests.
pub fn truth(v: &Value) -> Result<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(SqlError::mismatch(format!(
            "argument of WHERE/boolean operator must be type boolean, not type {}",
            other.sql_type().pg_name()
        ))),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => other.to_pg_text().unwrap_or_default(),
    }
}

fn negate(v: Value) -> Result<Value> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int16(x) => Value::Int16(
            x.checked_neg()
                .ok_or_else(|| SqlError::out_of_range("smallint"))?,
        ),
        Value::Int32(x) => Value::Int32(
            x.checked_neg()
                .ok_or_else(|| SqlError::out_of_range("integer"))?,
        ),
        Value::Int64(x) => Value::Int64(
            x.checked_neg()
                .ok_or_else(|| SqlError::out_of_range("bigint"))?,
        ),
        Value::Float32(x) => Value::Float32(-x),
        Value::Float64(x) => Value::Float64(-x),
        Value::Numeric(d) => Value::Numeric(-d),
        other => {
            return Err(SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!("operator does not exist: - {}", other.sql_type().pg_name()),
            ))
        }
    })
}

/// Applies a non-logical binary operator.
pub fn binary(op: BinOp, l: Value, r: Value) -> Result<Value> {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    if op.is_comparison() {
        let ord = compare(&l, &r).ok_or_else(|| no_operator(op, &l, &r))?;
        let b = match op {
            BinOp::Eq => ord == Ordering::Equal,
            BinOp::NotEq => ord != Ordering::Equal,
            BinOp::Lt => ord == Ordering::Less,
            BinOp::LtEq => ord != Ordering::Greater,
            BinOp::Gt => ord == Ordering::Greater,
            _ => ord != Ordering::Less,
        };
        return Ok(Value::Bool(b));
    }
    if op == BinOp::Concat {
        return Ok(Value::Text(format!("{}{}", text_of(&l), text_of(&r))));
    }
    arith(op, l, r)
}

fn no_operator(op: BinOp, l: &Value, r: &Value) -> SqlError {
    SqlError::new(
        state::UNDEFINED_FUNCTION,
        format!(
            "operator does not exist: {} {} {}",
            l.sql_type().pg_name(),
            op.symbol(),
            r.sql_type().pg_name()
        ),
    )
}

fn arith(op: BinOp, l: Value, r: Value) -> Result<Value> {
    let lt = l.sql_type();
    let rt = r.sql_type();
    let ty = crate::types::common_type(&lt, &rt).ok_or_else(|| no_operator(op, &l, &r))?;
    match ty {
        SqlType::Int16 | SqlType::Int32 | SqlType::Int64 => {
            let (a, b) = (l.as_i64().unwrap_or(0), r.as_i64().unwrap_or(0));
            let wide = int_op(op, a, b)?;
            let name = ty.pg_name();
            Ok(match ty {
                SqlType::Int16 => {
                    Value::Int16(i16::try_from(wide).map_err(|_| SqlError::out_of_range(name))?)
                }
                SqlType::Int32 => {
                    Value::Int32(i32::try_from(wide).map_err(|_| SqlError::out_of_range(name))?)
                }
                _ => Value::Int64(wide),
            })
        }
        SqlType::Numeric => {
            let (a, b) = (l.as_decimal(), r.as_decimal());
            let (Some(a), Some(b)) = (a, b) else {
                return Err(no_operator(op, &l, &r));
            };
            Ok(Value::Numeric(dec_op(op, a, b)?))
        }
        SqlType::Float32 | SqlType::Float64 => {
            let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) else {
                return Err(no_operator(op, &l, &r));
            };
            let v = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => {
                    if b == 0.0 {
                        return Err(SqlError::division_by_zero());
                    }
                    a / b
                }
                BinOp::Mod => {
                    if b == 0.0 {
                        return Err(SqlError::division_by_zero());
                    }
                    a % b
                }
                _ => return Err(no_operator(op, &l, &r)),
            };
            if v.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(SqlError::out_of_range(ty.pg_name()));
            }
            Ok(if ty == SqlType::Float32 {
                Value::Float32(v as f32)
            } else {
                Value::Float64(v)
            })
        }
        SqlType::Date => match (&l, &r, op) {
            (Value::Date(d), v, BinOp::Add) | (v, Value::Date(d), BinOp::Add)
                if v.as_i64().is_some() =>
            {
                Ok(Value::Date(
                    d.saturating_add(v.as_i64().unwrap_or(0) as i32),
                ))
            }
            (Value::Date(d), v, BinOp::Sub) if v.as_i64().is_some() => Ok(Value::Date(
                d.saturating_sub(v.as_i64().unwrap_or(0) as i32),
            )),
            (Value::Date(a), Value::Date(b), BinOp::Sub) => Ok(Value::Int32(a - b)),
            _ => Err(no_operator(op, &l, &r)),
        },
        _ => Err(no_operator(op, &l, &r)),
    }
}

fn int_op(op: BinOp, a: i64, b: i64) -> Result<i64> {
    let overflow = || SqlError::out_of_range("bigint");
    match op {
        BinOp::Add => a.checked_add(b).ok_or_else(overflow),
        BinOp::Sub => a.checked_sub(b).ok_or_else(overflow),
        BinOp::Mul => a.checked_mul(b).ok_or_else(overflow),
        BinOp::Div => {
            if b == 0 {
                return Err(SqlError::division_by_zero());
            }
            a.checked_div(b).ok_or_else(overflow)
        }
        BinOp::Mod => {
            if b == 0 {
                return Err(SqlError::division_by_zero());
            }
            Ok(a.checked_rem(b).unwrap_or(0))
        }
        _ => Err(SqlError::internal("not an arithmetic operator")),
    }
}

fn dec_op(op: BinOp, a: Decimal, b: Decimal) -> Result<Decimal> {
    let overflow = || SqlError::out_of_range("numeric");
    match op {
        BinOp::Add => a.checked_add(b).ok_or_else(overflow),
        BinOp::Sub => a.checked_sub(b).ok_or_else(overflow),
        BinOp::Mul => a.checked_mul(b).ok_or_else(overflow),
        BinOp::Div => {
            if b.is_zero() {
                return Err(SqlError::division_by_zero());
            }
            let q = a.checked_div(b).ok_or_else(overflow)?;
            // Inexact quotients keep 20 fractional digits at most, exact ones their scale.
            Ok(q.round_dp(20)
                .normalize()
                .max_scale_with(a.scale().max(b.scale())))
        }
        BinOp::Mod => {
            if b.is_zero() {
                return Err(SqlError::division_by_zero());
            }
            a.checked_rem(b).ok_or_else(overflow)
        }
        _ => Err(SqlError::internal("not an arithmetic operator")),
    }
}

trait MinScale {
    fn max_scale_with(self, scale: u32) -> Decimal;
}

impl MinScale for Decimal {
    /// Keeps at least `scale` fractional digits (normalize() may have dropped them).
    fn max_scale_with(mut self, scale: u32) -> Decimal {
        if self.scale() < scale {
            self.rescale(scale);
        }
        self
    }
}

/// SQL LIKE with % and _ and backslash escapes.
pub fn like(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    like_at(&s, &p)
}

fn like_at(s: &[char], p: &[char]) -> bool {
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == '\\' && pi + 1 < p.len() {
            if s[si] == p[pi + 1] {
                si += 1;
                pi += 2;
                continue;
            }
        } else if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] == s[si])) {
            si += 1;
            pi += 1;
            continue;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, si));
            pi += 1;
            continue;
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn integer_semantics() {
        assert_eq!(
            binary(BinOp::Div, Value::Int32(7), Value::Int32(-2)).unwrap(),
            Value::Int32(-3)
        );
        assert_eq!(
            binary(BinOp::Mod, Value::Int32(-7), Value::Int32(2)).unwrap(),
            Value::Int32(-1)
        );
        assert_eq!(
            binary(BinOp::Div, Value::Int32(1), Value::Int32(0))
                .unwrap_err()
                .sqlstate,
            "22012"
        );
        assert_eq!(
            binary(BinOp::Add, Value::Int32(i32::MAX), Value::Int32(1))
                .unwrap_err()
                .sqlstate,
            "22003"
        );
        assert_eq!(
            binary(BinOp::Add, Value::Int32(i32::MAX), Value::Int64(1)).unwrap(),
            Value::Int64(1 << 31)
        );
        assert_eq!(
            binary(BinOp::Eq, Value::Null, Value::Int32(1)).unwrap(),
            Value::Null
        );
        assert_eq!(
            binary(BinOp::Lt, Value::Int16(1), Value::Float64(1.5)).unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "_ello"));
        assert!(!like("hello", "h%x"));
        assert!(like("50%", "50\\%"));
        assert!(like("", "%"));
    }
}
