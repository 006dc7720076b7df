//! Partial updates: set or unset a path, several at once, by splicing the document's text.
//!
//! Why splice rather than rebuild: everything the patch does not touch keeps its exact text
//! (numbers as written, member order, whitespace), the same promise the stored form makes.
//!
//! ```json
//! [{"op": "set", "path": "a.b", "value": 1.50}, {"op": "unset", "path": "c"}]
//! ```
//! `set` replaces the value at the path, or creates it: missing members are added at the end
//! of their object (with any missing intermediate objects), an array index equal to the
//! array's length appends. `unset` removes a member or element; unsetting nothing is not an
//! error.

use crate::error::{DocError, Result};
use crate::form::{self, ValueRef};
use crate::path::Path;
use crate::tape;

/// Most operations in one patch.
pub const PATCH_OPS_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOp {
    /// `value` is JSON text, kept as written.
    Set {
        path: Path,
        value: String,
    },
    Unset {
        path: Path,
    },
}

impl PatchOp {
    /// Parses a JSON list of operations (or an object with an "ops" list) from its text,
    /// keeping each value's literal text.
    pub fn parse_list(text: &str) -> Result<Vec<PatchOp>> {
        let stored = form::encode(text)?;
        form::with_view(&stored, |v| {
            let root = v.root().ok_or_else(|| DocError::BadPatch("empty".into()))?;
            let list = match root.kind() {
                tape::KIND_ARRAY => root,
                tape::KIND_OBJECT => root.child("ops").ok_or_else(|| {
                    DocError::BadPatch("expected a list of operations or {\"ops\": [...]}".into())
                })?,
                _ => return Err(DocError::BadPatch("expected a list of operations".into())),
            };
            if list.kind() != tape::KIND_ARRAY {
                return Err(DocError::BadPatch("\"ops\" must be a list".into()));
            }
            let items = list.children();
            if items.is_empty() || items.len() > PATCH_OPS_MAX {
                return Err(DocError::BadPatch(format!(
                    "a patch has 1 to {PATCH_OPS_MAX} operations"
                )));
            }
            items.iter().map(|(_, op)| parse_op(op)).collect()
        })?
    }
}

fn parse_op(op: &ValueRef<'_>) -> Result<PatchOp> {
    let string = |name: &str| -> Result<String> {
        match op.child(name).and_then(|v| v.scalar()) {
            Some(form::Scalar::String(s)) => Ok(s),
            _ => Err(DocError::BadPatch(format!(
                "each operation needs \"{name}\" (a string)"
            ))),
        }
    };
    if op.kind() != tape::KIND_OBJECT {
        return Err(DocError::BadPatch("each operation is an object".into()));
    }
    let path = Path::parse(&string("path")?)?;
    match string("op")?.as_str() {
        "set" => {
            let value = op
                .child("value")
                .ok_or_else(|| DocError::BadPatch("\"set\" needs \"value\"".into()))?;
            Ok(PatchOp::Set {
                path,
                value: value.json_text().to_string(),
            })
        }
        "unset" => Ok(PatchOp::Unset { path }),
        other => Err(DocError::BadPatch(format!(
            "unknown op {other:?} (set, unset)"
        ))),
    }
}

/// Applies `ops` in order to `text` and returns the new text.
pub fn apply(text: &str, ops: &[PatchOp]) -> Result<String> {
    let mut cur = text.to_string();
    for op in ops {
        let stored = form::encode(&cur)?;
        let splice = form::with_view(&stored, |v| plan(v, op))??;
        if let Some((start, end, insert)) = splice {
            cur.replace_range(start..end, &insert);
        }
    }
    Ok(cur)
}

type Splice = Option<(usize, usize, String)>;

fn plan(view: form::DocView<'_>, op: &PatchOp) -> Result<Splice> {
    let root = view
        .root()
        .ok_or_else(|| DocError::BadPatch("empty document".into()))?;
    let (path, value) = match op {
        PatchOp::Set { path, value } => (path, Some(value.as_str())),
        PatchOp::Unset { path } => (path, None),
    };
    let segs: Vec<&str> = path.segments().collect();
    let mut parent = root;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match parent.child(seg) {
            Some(child) if last => {
                return Ok(Some(match value {
                    Some(v) => {
                        let (s, e) = child.json_span();
                        (s, e, v.to_string())
                    }
                    None => removal(&parent, &child),
                }));
            }
            Some(child) => parent = child,
            None => {
                let Some(v) = value else { return Ok(None) };
                return insertion(&parent, seg, &segs[i + 1..], v).map(Some);
            }
        }
    }
    Ok(None)
}

/// Nested objects holding `value` under `rest`: `{"b":{"c":value}}`.
fn nest(rest: &[&str], value: &str) -> String {
    rest.iter().rev().fold(value.to_string(), |inner, seg| {
        format!("{{{}:{inner}}}", quote(seg))
    })
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn insertion(
    parent: &ValueRef<'_>,
    seg: &str,
    rest: &[&str],
    value: &str,
) -> Result<(usize, usize, String)> {
    let (_, end) = parent.json_span();
    // `end - 1` is the closing bracket of the container.
    let at = end.saturating_sub(1);
    let empty = parent.children().is_empty();
    let sep = if empty { "" } else { "," };
    match parent.kind() {
        tape::KIND_OBJECT => Ok((at, at, format!("{sep}{}:{}", quote(seg), nest(rest, value)))),
        tape::KIND_ARRAY => {
            let len = parent.children().len();
            if form::parse_index(seg) != Some(len) {
                return Err(DocError::BadPatch(format!(
                    "array index {seg:?} out of range (length {len}; only {len} appends)"
                )));
            }
            Ok((at, at, format!("{sep}{}", nest(rest, value))))
        }
        _ => Err(DocError::BadPatch(format!(
            "cannot set member {seg:?} inside a scalar"
        ))),
    }
}

fn removal(parent: &ValueRef<'_>, child: &ValueRef<'_>) -> (usize, usize, String) {
    let kids = parent.children();
    let pos = kids
        .iter()
        .position(|(_, v)| v.span() == child.span())
        .unwrap_or(0);
    let start_of = |i: usize| {
        let (k, v) = &kids[i];
        k.map_or(v.json_span().0, |k| k.json_span().0)
    };
    let (_, value_end) = child.json_span();
    if pos + 1 < kids.len() {
        (start_of(pos), start_of(pos + 1), String::new())
    } else if pos > 0 {
        let (_, prev_end) = kids[pos - 1].1.json_span();
        (prev_end, value_end, String::new())
    } else {
        (start_of(pos), value_end, String::new())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(doc: &str, ops: &str) -> String {
        apply(doc, &PatchOp::parse_list(ops).unwrap()).unwrap()
    }

    #[test]
    fn set_and_unset_splice_the_text() {
        let d = r#"{"a": 1.0, "b": {"c": [1, 2]}, "z": "x"}"#;
        assert_eq!(
            run(d, r#"[{"op":"set","path":"a","value":1e400}]"#),
            r#"{"a": 1e400, "b": {"c": [1, 2]}, "z": "x"}"#
        );
        assert_eq!(
            run(d, r#"[{"op":"set","path":"b.c.2","value":"é"}]"#),
            r#"{"a": 1.0, "b": {"c": [1, 2,"é"]}, "z": "x"}"#
        );
        assert_eq!(
            run(d, r#"[{"op":"set","path":"n.m","value":null}]"#),
            r#"{"a": 1.0, "b": {"c": [1, 2]}, "z": "x","n":{"m":null}}"#
        );
        assert_eq!(
            run(d, r#"[{"op":"unset","path":"a"}]"#),
            r#"{"b": {"c": [1, 2]}, "z": "x"}"#
        );
        assert_eq!(
            run(d, r#"[{"op":"unset","path":"z"}]"#),
            r#"{"a": 1.0, "b": {"c": [1, 2]}}"#
        );
        assert_eq!(
            run(
                d,
                r#"[{"op":"unset","path":"b.c.0"},{"op":"unset","path":"q"}]"#
            ),
            r#"{"a": 1.0, "b": {"c": [2]}, "z": "x"}"#
        );
        assert_eq!(
            run("{}", r#"{"ops":[{"op":"set","path":"a","value":[]}]}"#),
            r#"{"a":[]}"#
        );
        assert_eq!(run(r#"{"a":1}"#, r#"[{"op":"unset","path":"a"}]"#), "{}");
    }

    #[test]
    fn refuses_bad_patches() {
        for ops in [
            "[]",
            "{}",
            "[1]",
            r#"[{"op":"set","path":"a"}]"#,
            r#"[{"op":"zap","path":"a"}]"#,
            r#"[{"op":"set","path":"","value":1}]"#,
        ] {
            assert!(PatchOp::parse_list(ops).is_err(), "accepted {ops}");
        }
        let ops = PatchOp::parse_list(r#"[{"op":"set","path":"a.b","value":1}]"#).unwrap();
        assert!(apply(r#"{"a":1}"#, &ops).is_err());
        let ops = PatchOp::parse_list(r#"[{"op":"set","path":"a.5","value":1}]"#).unwrap();
        assert!(apply(r#"{"a":[]}"#, &ops).is_err());
    }
}
