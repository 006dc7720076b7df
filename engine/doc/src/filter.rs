//! Query filters, parsed from JSON, and their evaluation on a document view.
//!
//! ```json
//! {"path": "a.b", "op": "eq", "value": 1}          eq ne lt le gt ge
//! {"path": "tags", "op": "in", "values": [1, "x"]}
//! {"path": "a", "op": "exists", "value": true}
//! {"and": [ ... ]}   {"or": [ ... ]}
//! ```
//!
//! Comparisons bracket by type (as MongoDB does): `lt 5` matches numbers below 5, never
//! strings. Numbers compare as doubles. Only scalars are compared: a path holding an array or
//! an object matches no comparison (but `exists`). `ne` is the negation of `eq` (a document
//! without the path matches it).

use std::cmp::Ordering;

use serde_json::Value;

use crate::error::{DocError, Result};
use crate::form::{DocView, Scalar};
use crate::path::Path;

/// Most nodes (conditions plus and/or) in one filter.
pub const FILTER_NODES_MAX: usize = 256;
/// Most values in one `in` list.
pub const IN_VALUES_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    Cmp {
        path: Path,
        op: CmpOp,
        value: Scalar,
    },
    In {
        path: Path,
        values: Vec<Scalar>,
    },
    Exists {
        path: Path,
        present: bool,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// The typed total order: null < bool < number < string, then by value.
pub fn compare_scalars(a: &Scalar, b: &Scalar) -> Ordering {
    let rank = |s: &Scalar| crate::keys::type_tag(s);
    match (a, b) {
        (Scalar::Bool(x), Scalar::Bool(y)) => x.cmp(y),
        (Scalar::Number(x), Scalar::Number(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Scalar::String(x), Scalar::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)),
    }
}

pub fn scalar_from_json(v: &Value) -> Result<Scalar> {
    Ok(match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => Scalar::Number(
            n.as_f64()
                .ok_or_else(|| DocError::BadFilter(format!("number {n} out of range")))?,
        ),
        Value::String(s) => Scalar::String(s.clone()),
        _ => {
            return Err(DocError::BadFilter(
                "filter values must be scalars (null, boolean, number, string)".into(),
            ))
        }
    })
}

impl Filter {
    pub fn parse(v: &Value) -> Result<Filter> {
        let mut budget = FILTER_NODES_MAX;
        parse_node(v, &mut budget)
    }

    pub fn matches(&self, doc: &DocView<'_>) -> bool {
        match self {
            Filter::All => true,
            Filter::Cmp { path, op, value } => {
                let got = doc.get(path).and_then(|v| v.scalar());
                match op {
                    CmpOp::Ne => {
                        got.is_none_or(|g| same_type_cmp(&g, value) != Some(Ordering::Equal))
                    }
                    _ => got.is_some_and(|g| {
                        same_type_cmp(&g, value).is_some_and(|o| op_holds(*op, o))
                    }),
                }
            }
            Filter::In { path, values } => {
                doc.get(path).and_then(|v| v.scalar()).is_some_and(|g| {
                    values
                        .iter()
                        .any(|x| same_type_cmp(&g, x) == Some(Ordering::Equal))
                })
            }
            Filter::Exists { path, present } => doc.get(path).is_some() == *present,
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
        }
    }
}

/// Compares within one type; None across types (type bracketing).
pub fn same_type_cmp(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    (crate::keys::type_tag(a) == crate::keys::type_tag(b)).then(|| compare_scalars(a, b))
}

pub fn op_holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    }
}

fn parse_node(v: &Value, budget: &mut usize) -> Result<Filter> {
    if *budget == 0 {
        return Err(DocError::BadFilter(format!(
            "more than {FILTER_NODES_MAX} conditions"
        )));
    }
    *budget -= 1;
    let obj = v
        .as_object()
        .ok_or_else(|| DocError::BadFilter("a filter is a JSON object".into()))?;
    for (word, is_and) in [("and", true), ("or", false)] {
        if let Some(list) = obj.get(word) {
            if obj.len() != 1 {
                return Err(DocError::BadFilter(format!(
                    "\"{word}\" stands alone in its object"
                )));
            }
            let items = list
                .as_array()
                .ok_or_else(|| DocError::BadFilter(format!("\"{word}\" takes a list")))?;
            let parts = items
                .iter()
                .map(|x| parse_node(x, budget))
                .collect::<Result<Vec<_>>>()?;
            return Ok(if is_and {
                Filter::And(parts)
            } else {
                Filter::Or(parts)
            });
        }
    }
    let path = obj
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| DocError::BadFilter("a condition needs \"path\" (a string)".into()))?;
    let path = Path::parse(path)?;
    let op = obj
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| DocError::BadFilter("a condition needs \"op\" (a string)".into()))?;
    let value = || {
        obj.get("value")
            .ok_or_else(|| DocError::BadFilter(format!("op {op:?} needs \"value\"")))
    };
    let cmp = |op| -> Result<Filter> {
        Ok(Filter::Cmp {
            path: path.clone(),
            op,
            value: scalar_from_json(value()?)?,
        })
    };
    match op {
        "eq" => cmp(CmpOp::Eq),
        "ne" => cmp(CmpOp::Ne),
        "lt" => cmp(CmpOp::Lt),
        "le" => cmp(CmpOp::Le),
        "gt" => cmp(CmpOp::Gt),
        "ge" => cmp(CmpOp::Ge),
        "in" => {
            let list = obj
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| DocError::BadFilter("op \"in\" needs \"values\" (a list)".into()))?;
            if list.len() > IN_VALUES_MAX {
                return Err(DocError::BadFilter(format!(
                    "\"in\" takes at most {IN_VALUES_MAX} values"
                )));
            }
            let values = list.iter().map(scalar_from_json).collect::<Result<_>>()?;
            Ok(Filter::In { path, values })
        }
        "exists" => {
            let present = match obj.get("value") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(DocError::BadFilter(
                        "op \"exists\" takes a boolean \"value\"".into(),
                    ))
                }
            };
            Ok(Filter::Exists { path, present })
        }
        other => Err(DocError::BadFilter(format!(
            "unknown op {other:?} (eq ne lt le gt ge in exists)"
        ))),
    }
}
