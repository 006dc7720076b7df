//! Binding of scalar expressions: names, literals, operators, functions, aggregates and
//! subqueries, with PostgreSQL's typing of literals (untyped strings adapt to context).

use std::rc::Rc;

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, UnaryOperator,
};

use super::{object_name, Binder};
use crate::error::{state, Result, SqlError};
use crate::plan::{AggCall, AggFunc, BExpr, BinOp, SubPlan};
use crate::types::{common_type, SqlType, Value};

fn number_literal(s: &str) -> Result<(Value, SqlType)> {
    if let Ok(i) = s.parse::<i64>() {
        if let Ok(small) = i32::try_from(i) {
            return Ok((Value::Int32(small), SqlType::Int32));
        }
        return Ok((Value::Int64(i), SqlType::Int64));
    }
    let d = crate::cast::parse_decimal(s)?;
    Ok((Value::Numeric(d), SqlType::Numeric))
}

impl Binder<'_> {
    pub fn expr(&mut self, e: &Expr) -> Result<(BExpr, SqlType)> {
        match e {
            Expr::Identifier(i) => self.resolve(std::slice::from_ref(i)),
            Expr::CompoundIdentifier(parts) => self.resolve(parts),
            Expr::Value(v) => self.literal(&v.value),
            Expr::Nested(inner) => self.expr(inner),
            Expr::UnaryOp { op, expr } => self.unary(op, expr),
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right),
            Expr::IsNull(a) | Expr::IsNotNull(a) => {
                let (b, _) = self.expr(a)?;
                Ok((
                    BExpr::IsNull(Box::new(b), matches!(e, Expr::IsNotNull(_))),
                    SqlType::Bool,
                ))
            }
            Expr::IsTrue(a) | Expr::IsNotTrue(a) | Expr::IsFalse(a) | Expr::IsNotFalse(a) => {
                let b = self.boolean(a, "IS TRUE")?;
                let target = matches!(e, Expr::IsTrue(_) | Expr::IsNotTrue(_));
                let negated = matches!(e, Expr::IsNotTrue(_) | Expr::IsNotFalse(_));
                Ok((BExpr::IsBool(Box::new(b), target, negated), SqlType::Bool))
            }
            Expr::IsUnknown(a) | Expr::IsNotUnknown(a) => {
                let b = self.boolean(a, "IS UNKNOWN")?;
                Ok((
                    BExpr::IsNull(Box::new(b), matches!(e, Expr::IsNotUnknown(_))),
                    SqlType::Bool,
                ))
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                let (l, r, _) = self.comparable(a, b)?;
                let negated = matches!(e, Expr::IsNotDistinctFrom(..));
                Ok((
                    BExpr::IsDistinct(Box::new(l), Box::new(r), negated),
                    SqlType::Bool,
                ))
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (mut v, mut vt) = self.expr(expr)?;
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let (b, t) = self.expr(item)?;
                    items.push((b, t));
                }
                for (_, t) in &items {
                    vt = common_type(&vt, t).ok_or_else(|| {
                        SqlError::new(
                            state::UNDEFINED_FUNCTION,
                            format!(
                                "operator does not exist: {} = {}",
                                vt.pg_name(),
                                t.pg_name()
                            ),
                        )
                    })?;
                }
                v = self.coerce(v, &vt)?;
                let items = items
                    .into_iter()
                    .map(|(b, _)| self.coerce(b, &vt))
                    .collect::<Result<Vec<_>>>()?;
                Ok((BExpr::InList(Box::new(v), items, *negated), SqlType::Bool))
            }
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                let (v, vt) = self.expr(expr)?;
                let (sp, types) = self.subquery(subquery)?;
                if types.len() != 1 {
                    return Err(SqlError::syntax("subquery has too many columns"));
                }
                if common_type(&vt, &types[0]).is_none() {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!(
                            "operator does not exist: {} = {}",
                            vt.pg_name(),
                            types[0].pg_name()
                        ),
                    ));
                }
                Ok((BExpr::InSub(Box::new(v), sp, *negated), SqlType::Bool))
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (v, lo, _) = self.comparable(expr, low)?;
                let (v2, hi, _) = self.comparable(expr, high)?;
                let _ = v2;
                let b = BExpr::and(
                    BExpr::Bin(BinOp::GtEq, Box::new(v.clone()), Box::new(lo)),
                    BExpr::Bin(BinOp::LtEq, Box::new(v), Box::new(hi)),
                );
                Ok((
                    if *negated { BExpr::Not(Box::new(b)) } else { b },
                    SqlType::Bool,
                ))
            }
            Expr::Like {
                negated,
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                negated,
                expr,
                pattern,
                escape_char,
                ..
            } => {
                if escape_char.is_some() {
                    return Err(SqlError::unsupported("LIKE ... ESCAPE"));
                }
                let (a, at) = self.expr(expr)?;
                let (p, pt) = self.expr(pattern)?;
                if !at.is_text() || !pt.is_text() {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!(
                            "operator does not exist: {} ~~ {}",
                            at.pg_name(),
                            pt.pg_name()
                        ),
                    ));
                }
                Ok((
                    BExpr::Like {
                        expr: Box::new(a),
                        pattern: Box::new(p),
                        negated: *negated,
                        ci: matches!(e, Expr::ILike { .. }),
                    },
                    SqlType::Bool,
                ))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
            } => self.case(operand, conditions, else_result),
            Expr::Cast {
                kind,
                expr,
                data_type,
                ..
            } => {
                if matches!(kind, CastKind::TryCast | CastKind::SafeCast) {
                    return Err(SqlError::unsupported("TRY_CAST"));
                }
                let ty = SqlType::parse(&data_type.to_string())?;
                let (b, _) = self.expr(expr)?;
                Ok((BExpr::Cast(Box::new(b), ty.clone()), ty))
            }
            Expr::TypedString { data_type, value } => {
                let ty = SqlType::parse(&data_type.to_string())?;
                let s = match value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok((BExpr::Lit(crate::cast::parse_text(&ty, &s)?), ty))
            }
            Expr::Function(f) => self.function(f),
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.expr(expr)?.0];
                args.push(match substring_from {
                    Some(f) => self.expr(f)?.0,
                    None => BExpr::Lit(Value::Int32(1)),
                });
                if let Some(f) = substring_for {
                    args.push(self.expr(f)?.0);
                }
                Ok((BExpr::Func("substr".into(), args), SqlType::Text))
            }
            Expr::Trim {
                expr,
                trim_where,
                trim_what,
                ..
            } => {
                let name = match trim_where {
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                    _ => "btrim",
                };
                let mut args = vec![self.expr(expr)?.0];
                if let Some(w) = trim_what {
                    args.push(self.expr(w)?.0);
                }
                Ok((BExpr::Func(name.into(), args), SqlType::Text))
            }
            Expr::Position { expr, r#in } => {
                let a = self.expr(r#in)?.0;
                let b = self.expr(expr)?.0;
                Ok((BExpr::Func("strpos".into(), vec![a, b]), SqlType::Int32))
            }
            Expr::Ceil { expr, .. } | Expr::Floor { expr, .. } => {
                let (b, t) = self.expr(expr)?;
                let name = if matches!(e, Expr::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                Ok((
                    BExpr::Func(name.into(), vec![b]),
                    if t.is_integer() || t == SqlType::Numeric {
                        t
                    } else {
                        SqlType::Float64
                    },
                ))
            }
            Expr::Exists { subquery, negated } => {
                let (sp, _) = self.subquery(subquery)?;
                Ok((BExpr::Exists(sp, *negated), SqlType::Bool))
            }
            Expr::Subquery(q) => {
                let (sp, types) = self.subquery(q)?;
                if types.len() != 1 {
                    return Err(SqlError::syntax("subquery must return only one column"));
                }
                Ok((BExpr::Subquery(sp), types[0].clone()))
            }
            Expr::Tuple(_) => Err(SqlError::unsupported("row constructors")),
            other => Err(SqlError::unsupported(format!("expression {other}"))),
        }
    }

    fn literal(&mut self, v: &ast::Value) -> Result<(BExpr, SqlType)> {
        Ok(match v {
            ast::Value::Number(s, _) => {
                let (v, t) = number_literal(s)?;
                (BExpr::Lit(v), t)
            }
            ast::Value::SingleQuotedString(s)
            | ast::Value::EscapedStringLiteral(s)
            | ast::Value::DoubleQuotedString(s) => {
                (BExpr::Lit(Value::Text(s.clone())), SqlType::Unknown)
            }
            ast::Value::DollarQuotedString(d) => {
                (BExpr::Lit(Value::Text(d.value.clone())), SqlType::Unknown)
            }
            ast::Value::Boolean(b) => (BExpr::Lit(Value::Bool(*b)), SqlType::Bool),
            ast::Value::Null => (BExpr::Lit(Value::Null), SqlType::Unknown),
            ast::Value::Placeholder(p) => {
                let n: usize = p
                    .trim_start_matches('$')
                    .parse()
                    .map_err(|_| SqlError::syntax(format!("bad parameter {p}")))?;
                if n == 0 || n > 65_535 {
                    return Err(SqlError::syntax(format!("bad parameter {p}")));
                }
                if self.params.len() < n {
                    self.params.resize(n, None);
                }
                let ty = self.params[n - 1].clone().unwrap_or(SqlType::Unknown);
                (BExpr::Param(n - 1), ty)
            }
            other => return Err(SqlError::unsupported(format!("literal {other}"))),
        })
    }

    /// Makes `e` usable where type `ty` is expected: converts untyped string literals now,
    /// and records the type of an untyped parameter.
    pub fn coerce(&mut self, e: BExpr, ty: &SqlType) -> Result<BExpr> {
        match &e {
            BExpr::Lit(Value::Text(s)) if !ty.is_text() && *ty != SqlType::Unknown => {
                Ok(BExpr::Lit(crate::cast::parse_text(ty, s)?))
            }
            BExpr::Param(n) => {
                if let Some(slot) = self.params.get_mut(*n) {
                    if slot.is_none() || *slot == Some(SqlType::Unknown) {
                        *slot = Some(ty.clone());
                    }
                }
                Ok(e)
            }
            _ => Ok(e),
        }
    }

    fn boolean(&mut self, e: &Expr, what: &str) -> Result<BExpr> {
        let (b, t) = self.expr(e)?;
        if t != SqlType::Bool && t != SqlType::Unknown {
            return Err(SqlError::mismatch(format!(
                "argument of {what} must be type boolean, not type {}",
                t.pg_name()
            )));
        }
        self.coerce(b, &SqlType::Bool)
    }

    /// Binds two operands that will be compared, unifying their types.
    fn comparable(&mut self, a: &Expr, b: &Expr) -> Result<(BExpr, BExpr, SqlType)> {
        let (l, lt) = self.expr(a)?;
        let (r, rt) = self.expr(b)?;
        let ty = common_type(&lt, &rt).ok_or_else(|| {
            SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!(
                    "operator does not exist: {} = {}",
                    lt.pg_name(),
                    rt.pg_name()
                ),
            )
        })?;
        let l = self.coerce(
            l,
            &if lt == SqlType::Unknown {
                ty.clone()
            } else {
                lt.clone()
            },
        )?;
        let r = self.coerce(
            r,
            &if rt == SqlType::Unknown {
                ty.clone()
            } else {
                rt.clone()
            },
        )?;
        let l = self.coerce(l, &ty)?;
        let r = self.coerce(r, &ty)?;
        Ok((l, r, ty))
    }

    fn unary(&mut self, op: &UnaryOperator, e: &Expr) -> Result<(BExpr, SqlType)> {
        match op {
            UnaryOperator::Not => {
                Ok((BExpr::Not(Box::new(self.boolean(e, "NOT")?)), SqlType::Bool))
            }
            UnaryOperator::Minus => {
                // Fold "-<number>" so that -2147483648 is an integer, as in PostgreSQL.
                if let Expr::Value(v) = e {
                    if let ast::Value::Number(s, _) = &v.value {
                        let (v, t) = number_literal(&format!("-{s}"))?;
                        return Ok((BExpr::Lit(v), t));
                    }
                }
                let (b, t) = self.expr(e)?;
                if !t.is_numeric_family() && t != SqlType::Unknown {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!("operator does not exist: - {}", t.pg_name()),
                    ));
                }
                let b = self.coerce(b, &SqlType::Numeric)?;
                Ok((
                    BExpr::Neg(Box::new(b)),
                    if t == SqlType::Unknown {
                        SqlType::Numeric
                    } else {
                        t
                    },
                ))
            }
            UnaryOperator::Plus => {
                let (b, t) = self.expr(e)?;
                if !t.is_numeric_family() && t != SqlType::Unknown {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!("operator does not exist: + {}", t.pg_name()),
                    ));
                }
                Ok((b, t))
            }
            other => Err(SqlError::unsupported(format!("operator {other}"))),
        }
    }

    fn binary(&mut self, a: &Expr, op: &BinaryOperator, b: &Expr) -> Result<(BExpr, SqlType)> {
        if let Some(bound) = self.json_operator(a, op, b) {
            return bound;
        }
        let bop = match op {
            BinaryOperator::Plus => BinOp::Add,
            BinaryOperator::Minus => BinOp::Sub,
            BinaryOperator::Multiply => BinOp::Mul,
            BinaryOperator::Divide => BinOp::Div,
            BinaryOperator::Modulo => BinOp::Mod,
            BinaryOperator::Eq => BinOp::Eq,
            BinaryOperator::NotEq => BinOp::NotEq,
            BinaryOperator::Lt => BinOp::Lt,
            BinaryOperator::LtEq => BinOp::LtEq,
            BinaryOperator::Gt => BinOp::Gt,
            BinaryOperator::GtEq => BinOp::GtEq,
            BinaryOperator::And => BinOp::And,
            BinaryOperator::Or => BinOp::Or,
            BinaryOperator::StringConcat => BinOp::Concat,
            other => return Err(SqlError::unsupported(format!("operator {other}"))),
        };
        match bop {
            BinOp::And | BinOp::Or => {
                let what = if bop == BinOp::And { "AND" } else { "OR" };
                let l = self.boolean(a, what)?;
                let r = self.boolean(b, what)?;
                Ok((BExpr::Bin(bop, Box::new(l), Box::new(r)), SqlType::Bool))
            }
            BinOp::Concat => {
                let (l, _) = self.expr(a)?;
                let (r, _) = self.expr(b)?;
                let l = self.coerce(l, &SqlType::Text)?;
                let r = self.coerce(r, &SqlType::Text)?;
                Ok((BExpr::Bin(bop, Box::new(l), Box::new(r)), SqlType::Text))
            }
            _ if bop.is_comparison() => {
                let (l, r, _) = self.comparable(a, b)?;
                Ok((BExpr::Bin(bop, Box::new(l), Box::new(r)), SqlType::Bool))
            }
            _ => {
                let (l, r, ty) = self.comparable(a, b).map_err(|e| {
                    if e.sqlstate == state::UNDEFINED_FUNCTION {
                        SqlError::new(
                            state::UNDEFINED_FUNCTION,
                            e.message.replace(" = ", &format!(" {} ", bop.symbol())),
                        )
                    } else {
                        e
                    }
                })?;
                let ty = match ty {
                    SqlType::Unknown => SqlType::Numeric,
                    SqlType::Date if bop == BinOp::Sub => SqlType::Int32,
                    t if t.is_numeric_family() || t == SqlType::Date => t,
                    t => {
                        return Err(SqlError::new(
                            state::UNDEFINED_FUNCTION,
                            format!(
                                "operator does not exist: {} {} {}",
                                t.pg_name(),
                                bop.symbol(),
                                t.pg_name()
                            ),
                        ))
                    }
                };
                Ok((BExpr::Bin(bop, Box::new(l), Box::new(r)), ty))
            }
        }
    }

    fn case(
        &mut self,
        operand: &Option<Box<Expr>>,
        conditions: &[ast::CaseWhen],
        else_result: &Option<Box<Expr>>,
    ) -> Result<(BExpr, SqlType)> {
        let op = match operand {
            Some(o) => Some(self.expr(o)?),
            None => None,
        };
        let mut whens = Vec::with_capacity(conditions.len());
        let mut ty = SqlType::Unknown;
        let mut results = Vec::new();
        for cw in conditions {
            let w = match &op {
                Some((_, ot)) => {
                    let (w, wt) = self.expr(&cw.condition)?;
                    if common_type(ot, &wt).is_none() {
                        return Err(SqlError::new(
                            state::UNDEFINED_FUNCTION,
                            format!(
                                "operator does not exist: {} = {}",
                                ot.pg_name(),
                                wt.pg_name()
                            ),
                        ));
                    }
                    self.coerce(w, ot)?
                }
                None => self.boolean(&cw.condition, "CASE/WHEN")?,
            };
            let (r, rt) = self.expr(&cw.result)?;
            ty = common_type(&ty, &rt).ok_or_else(|| {
                SqlError::mismatch(format!(
                    "CASE types {} and {} cannot be matched",
                    ty.pg_name(),
                    rt.pg_name()
                ))
            })?;
            whens.push(w);
            results.push(r);
        }
        let else_ = match else_result {
            Some(e) => {
                let (b, t) = self.expr(e)?;
                ty = common_type(&ty, &t).ok_or_else(|| {
                    SqlError::mismatch(format!(
                        "CASE types {} and {} cannot be matched",
                        ty.pg_name(),
                        t.pg_name()
                    ))
                })?;
                Some(b)
            }
            None => None,
        };
        let mut pairs = Vec::with_capacity(whens.len());
        for (w, r) in whens.into_iter().zip(results) {
            pairs.push((w, self.coerce(r, &ty)?));
        }
        let else_ = match else_ {
            Some(b) => Some(Box::new(self.coerce(b, &ty)?)),
            None => None,
        };
        Ok((
            BExpr::Case {
                operand: op.map(|(b, _)| Box::new(b)),
                whens: pairs,
                else_,
            },
            ty,
        ))
    }

    fn function(&mut self, f: &ast::Function) -> Result<(BExpr, SqlType)> {
        let name = object_name(&f.name);
        let (args, distinct, star) = match &f.args {
            FunctionArguments::None => (Vec::new(), false, false),
            FunctionArguments::Subquery(_) => {
                return Err(SqlError::unsupported("function over a subquery"))
            }
            FunctionArguments::List(l) => {
                let distinct = matches!(l.duplicate_treatment, Some(DuplicateTreatment::Distinct));
                let mut exprs = Vec::new();
                let mut star = false;
                for a in &l.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => exprs.push(e.clone()),
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                        _ => {
                            return Err(SqlError::unsupported(
                                "named or qualified-wildcard function arguments",
                            ))
                        }
                    }
                }
                (exprs, distinct, star)
            }
        };
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
            return Err(SqlError::unsupported(
                "window functions, FILTER and WITHIN GROUP",
            ));
        }
        let agg = match name.as_str() {
            "count" => Some(if star {
                AggFunc::CountStar
            } else {
                AggFunc::Count
            }),
            "sum" => Some(AggFunc::Sum),
            "avg" => Some(AggFunc::Avg),
            "min" => Some(AggFunc::Min),
            "max" => Some(AggFunc::Max),
            _ => None,
        };
        if let Some(func) = agg {
            return self.aggregate(&name, func, &args, distinct);
        }
        if star || distinct {
            return Err(SqlError::syntax(format!(
                "{name}(*) / DISTINCT is only valid for aggregates"
            )));
        }
        let mut bound = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for a in &args {
            let (b, t) = self.expr(a)?;
            bound.push(b);
            types.push(t);
        }
        let ty = crate::funcs::result_type(&name, &types)?;
        if matches!(name.as_str(), "coalesce" | "greatest" | "least" | "nullif") {
            let target = if name == "nullif" {
                types[0].clone()
            } else {
                ty.clone()
            };
            bound = bound
                .into_iter()
                .map(|b| self.coerce(b, &target))
                .collect::<Result<_>>()?;
        }
        let ty = if ty == SqlType::Unknown {
            SqlType::Text
        } else {
            ty
        };
        Ok((BExpr::Func(name, bound), ty))
    }

    fn aggregate(
        &mut self,
        name: &str,
        func: AggFunc,
        args: &[Expr],
        distinct: bool,
    ) -> Result<(BExpr, SqlType)> {
        if !self.agg_allowed {
            return Err(SqlError::new(
                state::GROUPING_ERROR,
                format!("aggregate functions are not allowed here ({name})"),
            ));
        }
        if func == AggFunc::CountStar {
            let call = AggCall {
                func,
                arg: None,
                distinct: false,
                ty: SqlType::Int64,
            };
            return Ok((BExpr::Agg(Box::new(call)), SqlType::Int64));
        }
        if args.len() != 1 {
            return Err(SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!("function {name} takes one argument"),
            ));
        }
        // No aggregates inside aggregates.
        self.agg_allowed = false;
        let r = self.expr(&args[0]);
        self.agg_allowed = true;
        let (arg, at) = r?;
        let at = if at == SqlType::Unknown && func != AggFunc::Count {
            SqlType::Numeric
        } else {
            at
        };
        let ty = match func {
            AggFunc::Count | AggFunc::CountStar => SqlType::Int64,
            AggFunc::Sum => match at {
                SqlType::Int16 | SqlType::Int32 => SqlType::Int64,
                SqlType::Int64 | SqlType::Numeric => SqlType::Numeric,
                SqlType::Float32 => SqlType::Float32,
                SqlType::Float64 => SqlType::Float64,
                t => {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!("function sum({}) does not exist", t.pg_name()),
                    ))
                }
            },
            AggFunc::Avg => match at {
                SqlType::Int16 | SqlType::Int32 | SqlType::Int64 | SqlType::Numeric => {
                    SqlType::Numeric
                }
                SqlType::Float32 | SqlType::Float64 => SqlType::Float64,
                t => {
                    return Err(SqlError::new(
                        state::UNDEFINED_FUNCTION,
                        format!("function avg({}) does not exist", t.pg_name()),
                    ))
                }
            },
            AggFunc::Min | AggFunc::Max => at.clone(),
        };
        let arg = self.coerce(arg, &at)?;
        let call = AggCall {
            func,
            arg: Some(arg),
            distinct,
            ty: ty.clone(),
        };
        Ok((BExpr::Agg(Box::new(call)), ty))
    }

    /// Binds a subquery one scope level down; correlated if it reads an enclosing row.
    fn subquery(&mut self, q: &ast::Query) -> Result<(Rc<SubPlan>, Vec<SqlType>)> {
        let saved = self.agg_allowed;
        self.agg_allowed = false;
        let r = self.query(q);
        self.agg_allowed = saved;
        let bq = r?;
        let plan = crate::optimizer::optimize(bq.plan);
        Ok((
            Rc::new(SubPlan {
                plan,
                correlated: bq.correlated,
            }),
            bq.types,
        ))
    }

    pub fn set_agg_allowed(&mut self, allowed: bool) -> bool {
        std::mem::replace(&mut self.agg_allowed, allowed)
    }
}
