//! PostgreSQL's jsonb operators, evaluated on `Value::Jsonb` (issue 11):
//!
//! | operator | function (bound as)          | result |
//! |----------|------------------------------|--------|
//! | `->`     | `jsonb_object_field` (text key) / `jsonb_array_element` (integer) | jsonb |
//! | `->>`    | `jsonb_object_field_text` / `jsonb_array_element_text` | text |
//! | `#>`     | `jsonb_extract_path` (text[] literal such as `'{a,0}'`) | jsonb |
//! | `#>>`    | `jsonb_extract_path_text`    | text |
//! | `@>`     | `jsonb_contains`             | boolean |
//! | `<@`     | `jsonb_contained` (arguments swapped) | boolean |
//!
//! As in PostgreSQL a missing member, an index out of range or the wrong container type gives
//! NULL (never an error); `->>` of a JSON null is SQL NULL; negative array indexes count from
//! the end. Operands of other types are refused by the binder with 42883.

use serde_json::Value as J;

use crate::error::{state, Result, SqlError};
use crate::types::Value;

/// Deepest nesting `@>` descends into: containment recurses once per level.
const CONTAINS_DEPTH_MAX: usize = 512;
/// Most elements in a `#>` path.
pub const PATH_ELEMENTS_MAX: usize = 64;

/// The functions the operators bind to; `funcs::call` dispatches these names here.
pub const FUNCTIONS: &[&str] = &[
    "jsonb_object_field",
    "jsonb_object_field_text",
    "jsonb_array_element",
    "jsonb_array_element_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_contains",
    "jsonb_contained",
];

pub fn is_json_function(name: &str) -> bool {
    FUNCTIONS.contains(&name)
}

/// Runs one of `FUNCTIONS` on non-null arguments (the caller handles NULL: all are strict).
pub fn call(name: &str, args: &[Value]) -> Result<Value> {
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
        return Err(SqlError::internal(format!("{name} takes two arguments")));
    };
    let doc = json_arg(name, a)?;
    match name {
        "jsonb_object_field" | "jsonb_object_field_text" => {
            let key = text_arg(name, b)?;
            Ok(wrap(name, field(doc, &key)))
        }
        "jsonb_array_element" | "jsonb_array_element_text" => {
            let i = b.as_i64().ok_or_else(|| wrong_type(name, b))?;
            Ok(wrap(name, element(doc, i)))
        }
        "jsonb_extract_path" | "jsonb_extract_path_text" => {
            let path = parse_text_array(&text_arg(name, b)?)?;
            let mut cur = Some(doc);
            for seg in &path {
                cur = cur.and_then(|v| step(v, seg));
            }
            Ok(wrap(name, cur))
        }
        "jsonb_contains" => Ok(Value::Bool(contains(doc, json_arg(name, b)?, 0)?)),
        "jsonb_contained" => Ok(Value::Bool(contains(json_arg(name, b)?, doc, 0)?)),
        other => Err(SqlError::internal(format!("not a json function: {other}"))),
    }
}

fn wrong_type(name: &str, v: &Value) -> SqlError {
    SqlError::new(
        state::UNDEFINED_FUNCTION,
        format!("function {name}({}) does not exist", v.sql_type().pg_name()),
    )
}

fn json_arg<'a>(name: &str, v: &'a Value) -> Result<&'a J> {
    match v {
        Value::Jsonb(j) => Ok(j),
        other => Err(wrong_type(name, other)),
    }
}

fn text_arg(name: &str, v: &Value) -> Result<String> {
    match v {
        Value::Text(s) => Ok(s.clone()),
        other => Err(wrong_type(name, other)),
    }
}

/// jsonb for `->`/`#>`, text for the `_text` variants (a JSON string unquoted, JSON null as
/// SQL NULL, anything else as its JSON text).
fn wrap(name: &str, v: Option<&J>) -> Value {
    match (v, name.ends_with("_text")) {
        (None, _) | (Some(J::Null), true) => Value::Null,
        (Some(J::String(s)), true) => Value::Text(s.clone()),
        (Some(other), true) => Value::Text(other.to_string()),
        (Some(other), false) => Value::Jsonb(other.clone()),
    }
}

pub fn field<'a>(v: &'a J, key: &str) -> Option<&'a J> {
    match v {
        J::Object(m) => m.get(key),
        _ => None,
    }
}

pub fn element(v: &J, i: i64) -> Option<&J> {
    let J::Array(a) = v else { return None };
    let len = i64::try_from(a.len()).ok()?;
    let i = if i < 0 { len + i } else { i };
    usize::try_from(i).ok().and_then(|i| a.get(i))
}

/// One `#>` path step: a member of an object, or an (optionally negative) index of an array.
fn step<'a>(v: &'a J, seg: &str) -> Option<&'a J> {
    match v {
        J::Object(m) => m.get(seg),
        J::Array(_) => seg.trim().parse::<i64>().ok().and_then(|i| element(v, i)),
        _ => None,
    }
}

/// A `text[]` literal as `#>` takes it: `{a,b,"c d"}` (double quotes and backslash escapes).
pub fn parse_text_array(s: &str) -> Result<Vec<String>> {
    let bad = |why: &str| {
        SqlError::new(
            state::INVALID_TEXT_REPRESENTATION,
            format!("malformed array literal: \"{s}\""),
        )
        .with_detail(why.to_string())
    };
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| bad("Array value must start with \"{\" and end with \"}\"."))?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => item.push(chars.next().ok_or_else(|| bad("Unexpected end."))?),
                    Some(c) => item.push(c),
                    None => return Err(bad("Unterminated quoted element.")),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_string();
            if item.is_empty() {
                return Err(bad("Unexpected \",\" character."));
            }
        }
        out.push(item);
        if out.len() > PATH_ELEMENTS_MAX {
            return Err(SqlError::new(
                state::PROGRAM_LIMIT_EXCEEDED,
                format!("a jsonb path has at most {PATH_ELEMENTS_MAX} elements"),
            ));
        }
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(_) => return Err(bad("Junk after closing double quote.")),
        }
    }
}

/// PostgreSQL's `@>`: an object contains an object whose every member it contains; an array
/// contains an array each of whose elements some element of it contains (order and
/// duplicates do not matter), and — at the top level only — a scalar it has as an element;
/// scalars contain equal scalars (numbers by value).
pub fn contains(a: &J, b: &J, depth: usize) -> Result<bool> {
    if depth > CONTAINS_DEPTH_MAX {
        return Err(SqlError::new(
            state::PROGRAM_LIMIT_EXCEEDED,
            format!("jsonb nested deeper than {CONTAINS_DEPTH_MAX} levels"),
        ));
    }
    Ok(match (a, b) {
        (J::Object(x), J::Object(y)) => {
            for (k, vb) in y {
                match x.get(k) {
                    Some(va) if contains_nested(va, vb, depth)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        (J::Array(x), J::Array(y)) => {
            for vb in y {
                let mut found = false;
                for va in x {
                    if contains_nested(va, vb, depth)? {
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Ok(false);
                }
            }
            true
        }
        // Top level only: '[1,2]' @> '1'.
        (J::Array(x), scalar) if depth == 0 && !scalar.is_object() => {
            x.iter().any(|va| scalar_eq(va, scalar))
        }
        (x, y) => scalar_eq(x, y),
    })
}

/// Containment below the top level: containers must match in kind (an array does not
/// contain a bare scalar there).
fn contains_nested(a: &J, b: &J, depth: usize) -> Result<bool> {
    match (a, b) {
        (J::Object(_), J::Object(_)) | (J::Array(_), J::Array(_)) => contains(a, b, depth + 1),
        _ => Ok(scalar_eq(a, b)),
    }
}

fn scalar_eq(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p == q,
            _ => x == y,
        },
        (J::Object(_) | J::Array(_), _) | (_, J::Object(_) | J::Array(_)) => false,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_follows_postgres() {
        let c = |a: J, b: J| contains(&a, &b, 0).unwrap();
        assert!(c(json!({"a": 1, "b": [1, 2, 3]}), json!({"b": [3, 1]})));
        assert!(c(json!({"a": {"x": 1, "y": 2}}), json!({"a": {"y": 2}})));
        assert!(!c(json!({"a": 1}), json!({"a": 2})));
        assert!(!c(json!({"a": [1]}), json!({"a": 1})));
        assert!(c(json!([1, 2]), json!(1)));
        assert!(c(json!([1, [2, 3]]), json!([[3]])));
        assert!(!c(json!([1, 2]), json!([[1]])));
        assert!(c(json!("x"), json!("x")));
        assert!(c(json!(1.0), json!(1)));
        assert!(c(json!({}), json!({})));
        assert!(!c(json!([]), json!({})));
    }

    #[test]
    fn text_arrays_parse() {
        assert_eq!(parse_text_array("{a,b}").unwrap(), ["a", "b"]);
        assert_eq!(parse_text_array("{ \"a,b\" , 0 }").unwrap(), ["a,b", "0"]);
        assert!(parse_text_array("{}").unwrap().is_empty());
        assert!(parse_text_array("a,b").is_err());
        assert!(parse_text_array("{a,,b}").is_err());
    }

    #[test]
    fn extraction() {
        let d = json!({"a": [10, {"b": null}], "s": "x"});
        assert_eq!(
            element(field(&d, "a").unwrap(), -1),
            Some(&json!({"b": null}))
        );
        assert_eq!(
            call(
                "jsonb_extract_path_text",
                &[Value::Jsonb(d.clone()), Value::Text("{a,1,b}".into())]
            )
            .unwrap(),
            Value::Null
        );
        assert_eq!(
            call(
                "jsonb_object_field_text",
                &[Value::Jsonb(d.clone()), Value::Text("s".into())]
            )
            .unwrap(),
            Value::Text("x".into())
        );
        assert_eq!(
            call(
                "jsonb_object_field",
                &[Value::Jsonb(d), Value::Text("s".into())]
            )
            .unwrap(),
            Value::Jsonb(json!("x"))
        );
    }
}
