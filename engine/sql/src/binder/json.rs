//! Binding of PostgreSQL's jsonb operators (`->`, `->>`, `#>`, `#>>`, `@>`, `<@`) to the
//! functions in `docs::json`, with PostgreSQL's operand typing: untyped literals adapt
//! (`doc @> '{"a":1}'`), anything else that is not jsonb (left) or text/integer (right) is
//! 42883 "operator does not exist".

use sqlparser::ast::{BinaryOperator, Expr};

use super::Binder;
use crate::error::{state, Result, SqlError};
use crate::plan::BExpr;
use crate::types::SqlType;

impl Binder<'_> {
    /// The bound operator when `op` is a jsonb operator; None for every other operator.
    pub(super) fn json_operator(
        &mut self,
        a: &Expr,
        op: &BinaryOperator,
        b: &Expr,
    ) -> Option<Result<(BExpr, SqlType)>> {
        let symbol = match op {
            BinaryOperator::Arrow => "->",
            BinaryOperator::LongArrow => "->>",
            BinaryOperator::HashArrow => "#>",
            BinaryOperator::HashLongArrow => "#>>",
            BinaryOperator::AtArrow => "@>",
            BinaryOperator::ArrowAt => "<@",
            _ => return None,
        };
        Some(self.bind_json_operator(a, symbol, b))
    }

    fn bind_json_operator(&mut self, a: &Expr, symbol: &str, b: &Expr) -> Result<(BExpr, SqlType)> {
        let (l, lt) = self.expr(a)?;
        let (r, rt) = self.expr(b)?;
        let missing = || {
            SqlError::new(
                state::UNDEFINED_FUNCTION,
                format!(
                    "operator does not exist: {} {symbol} {}",
                    lt.pg_name(),
                    rt.pg_name()
                ),
            )
            .with_detail("No operator matches the given name and argument types.")
        };
        if !matches!(lt, SqlType::Jsonb | SqlType::Unknown) {
            return Err(missing());
        }
        let l = self.coerce(l, &SqlType::Jsonb)?;
        let (name, r, ty) = match symbol {
            "->" | "->>" => {
                let text = symbol == "->>";
                if rt.is_integer() {
                    let f = if text {
                        "jsonb_array_element_text"
                    } else {
                        "jsonb_array_element"
                    };
                    (f, r, text)
                } else if rt.is_text() {
                    let f = if text {
                        "jsonb_object_field_text"
                    } else {
                        "jsonb_object_field"
                    };
                    (f, self.coerce(r, &SqlType::Text)?, text)
                } else {
                    return Err(missing());
                }
            }
            "#>" | "#>>" => {
                if !rt.is_text() {
                    return Err(missing());
                }
                let f = if symbol == "#>>" {
                    "jsonb_extract_path_text"
                } else {
                    "jsonb_extract_path"
                };
                (f, self.coerce(r, &SqlType::Text)?, symbol == "#>>")
            }
            _ => {
                if !matches!(rt, SqlType::Jsonb | SqlType::Unknown) {
                    return Err(missing());
                }
                let f = if symbol == "@>" {
                    "jsonb_contains"
                } else {
                    "jsonb_contained"
                };
                let r = self.coerce(r, &SqlType::Jsonb)?;
                return Ok((BExpr::Func(f.into(), vec![l, r]), SqlType::Bool));
            }
        };
        let ty = if ty { SqlType::Text } else { SqlType::Jsonb };
        Ok((BExpr::Func(name.into(), vec![l, r]), ty))
    }
}
