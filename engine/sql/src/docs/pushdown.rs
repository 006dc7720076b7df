//! From a WHERE clause over a collection table to a document filter the document store can
//! answer (with a path index when one is ready). The filter only narrows what is read: it
//! must match every document the WHERE clause could accept (a superset), because the whole
//! clause runs again on each row read. Conjuncts recognised:
//!
//! - `doc->>'a' = 'x'` (also `->` chains, array indexes, `#>>`): the text of the value at
//!   path `a` equals `x`. The value is the string `x`, or a number or boolean printed as
//!   `x`: pushed as `a in ["x", <number x>, <boolean x>]` (those `x` parses as).
//! - `doc->'a' = '<scalar>'::jsonb`: pushed as `a eq <scalar>`.
//! - `(doc->'a')::numeric` or `::float8` compared with a number: pushed as the same
//!   comparison on numbers, widened from `<`/`>` to `<=`/`>=` because the store compares
//!   doubles (monotone rounding keeps the superset). A jsonb string, boolean or null there
//!   makes the cast fail in PostgreSQL; a scan reports that error, an index read may not.
//! - `doc @> '{"a": {"b": 1}}'`: every scalar member of the pattern reached through objects
//!   only is an equality (`a.b eq 1`); array members narrow nothing.
//!
//! Everything else is left to the row filter.

use mantis_doc::filter::CmpOp;
use mantis_doc::{Filter, Path, Scalar};
use serde_json::Value as J;

use super::json::parse_text_array;
use super::COL_DOC;
use crate::plan::{BExpr, BinOp};
use crate::types::{SqlType, Value};

/// Conditions pushed at most (the document filter's node limit is 256).
const PUSHED_TERMS_MAX: usize = 64;

/// The document filter for `filter` (`Filter::All` when nothing can be pushed).
pub fn doc_filter(filter: Option<&BExpr>, konst: &dyn Fn(&BExpr) -> Option<Value>) -> Filter {
    let mut terms = Vec::new();
    for t in filter.cloned().map(BExpr::conjuncts).unwrap_or_default() {
        for f in term(&t, konst) {
            if terms.len() < PUSHED_TERMS_MAX {
                terms.push(f);
            }
        }
    }
    match terms.len() {
        0 => Filter::All,
        1 => terms.pop().unwrap_or(Filter::All),
        _ => Filter::And(terms),
    }
}

fn term(t: &BExpr, konst: &dyn Fn(&BExpr) -> Option<Value>) -> Vec<Filter> {
    match t {
        BExpr::Bin(op, a, b) if op.is_comparison() && *op != BinOp::NotEq => {
            if let Some(f) = comparison(*op, a, b, konst) {
                return vec![f];
            }
            comparison(op.flip(), b, a, konst).into_iter().collect()
        }
        BExpr::Func(name, args) if name == "jsonb_contains" => match args.as_slice() {
            [BExpr::Col(COL_DOC), pattern] if pattern.is_constant() => match konst(pattern) {
                Some(Value::Jsonb(p)) => containment(&p),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// `lhs op rhs` with the document side on the left.
fn comparison(
    op: BinOp,
    lhs: &BExpr,
    rhs: &BExpr,
    konst: &dyn Fn(&BExpr) -> Option<Value>,
) -> Option<Filter> {
    if !rhs.is_constant() {
        return None;
    }
    match lhs {
        BExpr::Func(name, args) if op == BinOp::Eq => {
            let (inner, step) = match args.as_slice() {
                [inner, step] => (inner, step),
                _ => return None,
            };
            let segs = match name.as_str() {
                "jsonb_object_field_text"
                | "jsonb_array_element_text"
                | "jsonb_extract_path_text" => {
                    let mut p = json_path(inner)?;
                    p.extend(step_segments(name, step)?);
                    p
                }
                "jsonb_object_field" | "jsonb_array_element" | "jsonb_extract_path" => {
                    let mut p = json_path(inner)?;
                    p.extend(step_segments(name, step)?);
                    let Some(Value::Jsonb(v)) = konst(rhs) else {
                        return None;
                    };
                    let value = scalar(&v)?;
                    return Some(Filter::Cmp {
                        path: path(&p)?,
                        op: CmpOp::Eq,
                        value,
                    });
                }
                _ => return None,
            };
            let Some(Value::Text(text)) = konst(rhs) else {
                return None;
            };
            Some(Filter::In {
                path: path(&segs)?,
                values: text_candidates(&text)?,
            })
        }
        BExpr::Cast(inner, SqlType::Numeric | SqlType::Float64) => {
            let p = json_path(inner)?;
            let n = konst(rhs)?.as_f64().filter(|n| n.is_finite())?;
            let op = match op {
                BinOp::Eq => CmpOp::Eq,
                BinOp::Lt | BinOp::LtEq => CmpOp::Le,
                BinOp::Gt | BinOp::GtEq => CmpOp::Ge,
                _ => return None,
            };
            Some(Filter::Cmp {
                path: path(&p)?,
                op,
                value: Scalar::Number(n),
            })
        }
        _ => None,
    }
}

/// The path of an index expression: `doc->'a'->>'b'`, `doc #>> '{a,b}'`, `doc->'a'`.
pub fn index_path(e: &BExpr) -> Option<Path> {
    let segs = match e {
        BExpr::Func(name, args) if name.ends_with("_text") => match args.as_slice() {
            [inner, step] => {
                let mut p = json_path(inner)?;
                p.extend(step_segments(name, step)?);
                p
            }
            _ => return None,
        },
        other => json_path(other)?,
    };
    if segs.is_empty() {
        return None;
    }
    path(&segs)
}

/// The document path a jsonb-valued expression reads: `doc`, `doc->'a'`, `doc->'a'->0`,
/// `doc #> '{a,0}'`. None for anything else.
fn json_path(e: &BExpr) -> Option<Vec<String>> {
    match e {
        BExpr::Col(COL_DOC) => Some(Vec::new()),
        BExpr::Func(name, args) => match (name.as_str(), args.as_slice()) {
            (
                "jsonb_object_field" | "jsonb_array_element" | "jsonb_extract_path",
                [inner, step],
            ) => {
                let mut p = json_path(inner)?;
                p.extend(step_segments(name, step)?);
                Some(p)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The path segments one operator step adds. Steps a document path cannot say exactly
/// (negative indexes, empty keys, padded numbers) push nothing.
fn step_segments(name: &str, step: &BExpr) -> Option<Vec<String>> {
    let BExpr::Lit(v) = step else { return None };
    let segs = match (name.trim_end_matches("_text"), v) {
        ("jsonb_object_field", Value::Text(k)) => vec![k.clone()],
        ("jsonb_array_element", v) => {
            let i = v.as_i64().filter(|i| *i >= 0)?;
            vec![i.to_string()]
        }
        ("jsonb_extract_path", Value::Text(arr)) => parse_text_array(arr).ok()?,
        _ => return None,
    };
    let plain =
        |s: &String| !s.is_empty() && s.trim() == s && !s.starts_with('-') && !s.starts_with('+');
    (!segs.is_empty() && segs.iter().all(plain)).then_some(segs)
}

fn path(segs: &[String]) -> Option<Path> {
    let text = segs
        .iter()
        .map(|s| s.replace('\\', "\\\\").replace('.', "\\."))
        .collect::<Vec<_>>()
        .join(".");
    Path::parse(&text).ok()
}

fn scalar(v: &J) -> Option<Scalar> {
    match v {
        J::Null => Some(Scalar::Null),
        J::Bool(b) => Some(Scalar::Bool(*b)),
        J::Number(n) => n.as_f64().map(Scalar::Number),
        J::String(s) => Some(Scalar::String(s.clone())),
        _ => None,
    }
}

/// The scalars whose `->>` text can be `text`. None when a container's text could be it
/// (containers are in no index, so nothing narrower than a scan is exact).
fn text_candidates(text: &str) -> Option<Vec<Scalar>> {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return None;
    }
    let mut out = vec![Scalar::String(text.to_string())];
    if let Ok(J::Number(n)) = serde_json::from_str::<J>(text) {
        if let Some(x) = n.as_f64() {
            out.push(Scalar::Number(x));
        }
    }
    match text {
        "true" => out.push(Scalar::Bool(true)),
        "false" => out.push(Scalar::Bool(false)),
        _ => {}
    }
    Some(out)
}

/// Equalities implied by `doc @> pattern` (`pattern` an object): scalars reached through
/// objects must be equal at their path (below the top level an array never contains a bare
/// scalar, and numbers compare by value).
fn containment(pattern: &J) -> Vec<Filter> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<String>, &J)> = vec![(Vec::new(), pattern)];
    while let Some((prefix, v)) = stack.pop() {
        let J::Object(m) = v else { continue };
        for (k, child) in m {
            let mut p = prefix.clone();
            p.push(k.clone());
            match child {
                J::Object(_) => stack.push((p, child)),
                J::Array(_) => {}
                s => {
                    if let (Some(value), Some(path)) = (scalar(s), checked_path(&p)) {
                        out.push(Filter::Cmp {
                            path,
                            op: CmpOp::Eq,
                            value,
                        });
                    }
                }
            }
            if out.len() >= PUSHED_TERMS_MAX {
                return out;
            }
        }
    }
    out
}

/// A path for containment members: every key must be one the document path reads as a
/// member (a numeric key would also match an array element there, which is still a superset).
fn checked_path(segs: &[String]) -> Option<Path> {
    segs.iter().all(|s| !s.is_empty()).then(|| path(segs))?
}
