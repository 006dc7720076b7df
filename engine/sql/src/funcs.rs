//! Scalar functions: names, result types (for the binder) and implementations.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::error::{state, Result, SqlError};
use crate::types::{common_type, SqlType, Value};

fn undefined(name: &str, n: usize) -> SqlError {
    SqlError::new(
        state::UNDEFINED_FUNCTION,
        format!("function {name} with {n} argument(s) does not exist"),
    )
}

/// The result type of `name(args)`, or 42883 if there is no such function.
pub fn result_type(name: &str, args: &[SqlType]) -> Result<SqlType> {
    let n = args.len();
    let first = args.first().cloned().unwrap_or(SqlType::Unknown);
    let ok = |range: std::ops::RangeInclusive<usize>| {
        if range.contains(&n) {
            Ok(())
        } else {
            Err(undefined(name, n))
        }
    };
    // Argument counts, checked here so that `call` can index its arguments safely.
    let arity: Option<std::ops::RangeInclusive<usize>> = match name {
        "sqrt" | "exp" | "ln" | "log" | "lower" | "upper" | "reverse" | "md5" | "initcap"
        | "length" | "char_length" | "character_length" | "octet_length" => Some(1..=1),
        "power" | "pow" | "left" | "right" | "repeat" | "strpos" | "position" | "mod"
        | "nullif" => Some(2..=2),
        "substr" | "substring" | "lpad" | "rpad" => Some(2..=3),
        "trim" | "btrim" | "ltrim" | "rtrim" | "to_char" => Some(1..=2),
        "replace" => Some(3..=3),
        "concat_ws" => Some(1..=usize::MAX),
        "random" | "pi" | "now" | "current_timestamp" | "localtimestamp" | "current_date"
        | "version" | "current_database" | "current_user" | "current_schema" => Some(0..=0),
        _ => None,
    };
    if let Some(r) = arity {
        ok(r)?;
    }
    Ok(match name {
        "abs" | "ceil" | "ceiling" | "floor" | "sign" | "trunc" => {
            ok(1..=2)?;
            if first == SqlType::Unknown {
                SqlType::Float64
            } else {
                first
            }
        }
        "round" => {
            ok(1..=2)?;
            if n == 2 {
                SqlType::Numeric
            } else if first == SqlType::Unknown {
                SqlType::Float64
            } else {
                first
            }
        }
        "sqrt" | "power" | "pow" | "exp" | "ln" | "log" | "random" | "pi" => SqlType::Float64,
        "mod" => {
            ok(2..=2)?;
            common_type(&args[0], &args[1]).unwrap_or(SqlType::Int32)
        }
        "coalesce" | "greatest" | "least" => {
            ok(1..=usize::MAX)?;
            let mut t = SqlType::Unknown;
            for a in args {
                t = common_type(&t, a).ok_or_else(|| {
                    SqlError::mismatch(format!(
                        "{name} types {} and {} cannot be matched",
                        t.pg_name(),
                        a.pg_name()
                    ))
                })?;
            }
            if t == SqlType::Unknown {
                SqlType::Text
            } else {
                t
            }
        }
        "nullif" => {
            ok(2..=2)?;
            first
        }
        "lower" | "upper" | "substr" | "substring" | "concat" | "trim" | "btrim" | "ltrim"
        | "rtrim" | "replace" | "left" | "right" | "reverse" | "repeat" | "lpad" | "rpad"
        | "md5" | "initcap" | "concat_ws" | "to_char" => SqlType::Text,
        "length" | "char_length" | "character_length" | "octet_length" | "strpos" | "position" => {
            ok(1..=2)?;
            SqlType::Int32
        }
        "now" | "current_timestamp" | "localtimestamp" => SqlType::Timestamp,
        "current_date" => SqlType::Date,
        "version" | "current_database" | "current_user" | "current_schema" => SqlType::Text,
        _ => return Err(undefined(name, n)),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => other.to_pg_text().unwrap_or_default(),
    }
}

fn int_arg(v: &Value, what: &str) -> Result<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .ok_or_else(|| SqlError::mismatch(format!("{what} must be an integer")))
}

pub fn call(name: &str, args: Vec<Value>) -> Result<Value> {
    // Strict functions return NULL on any NULL argument.
    let lenient = matches!(
        name,
        "concat" | "concat_ws" | "greatest" | "least" | "nullif" | "random" | "now"
    );
    if !lenient && args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    if crate::docs::json::is_json_function(name) {
        return crate::docs::json::call(name, &args);
    }
    let a0 = args.first().cloned().unwrap_or(Value::Null);
    Ok(match name {
        "abs" => match a0 {
            Value::Int16(x) => Value::Int16(
                x.checked_abs()
                    .ok_or_else(|| SqlError::out_of_range("smallint"))?,
            ),
            Value::Int32(x) => Value::Int32(
                x.checked_abs()
                    .ok_or_else(|| SqlError::out_of_range("integer"))?,
            ),
            Value::Int64(x) => Value::Int64(
                x.checked_abs()
                    .ok_or_else(|| SqlError::out_of_range("bigint"))?,
            ),
            Value::Float32(x) => Value::Float32(x.abs()),
            Value::Numeric(d) => Value::Numeric(d.abs()),
            other => Value::Float64(other.as_f64().ok_or_else(|| undefined(name, 1))?.abs()),
        },
        "sign" => match a0 {
            Value::Numeric(d) => Value::Numeric(if d.is_zero() {
                Decimal::ZERO
            } else if d.is_sign_negative() {
                Decimal::NEGATIVE_ONE
            } else {
                Decimal::ONE
            }),
            other => Value::Float64(other.as_f64().ok_or_else(|| undefined(name, 1))?.signum()),
        },
        "ceil" | "ceiling" | "floor" | "trunc" | "round" => round_like(name, &args)?,
        "sqrt" => {
            let f = a0.as_f64().ok_or_else(|| undefined(name, 1))?;
            if f < 0.0 {
                return Err(SqlError::new(
                    "2201F",
                    "cannot take square root of a negative number",
                ));
            }
            Value::Float64(f.sqrt())
        }
        "power" | "pow" => {
            let (a, b) = (a0.as_f64(), args.get(1).and_then(Value::as_f64));
            Value::Float64(
                a.zip(b)
                    .map(|(a, b)| a.powf(b))
                    .ok_or_else(|| undefined(name, 2))?,
            )
        }
        "exp" => Value::Float64(a0.as_f64().ok_or_else(|| undefined(name, 1))?.exp()),
        "ln" | "log" => {
            let f = a0.as_f64().ok_or_else(|| undefined(name, 1))?;
            if f <= 0.0 {
                return Err(SqlError::new(
                    "2201E",
                    "cannot take logarithm of a non-positive number",
                ));
            }
            Value::Float64(if name == "ln" { f.ln() } else { f.log10() })
        }
        "pi" => Value::Float64(std::f64::consts::PI),
        "random" => Value::Float64(pseudo_random()),
        "mod" => crate::eval::binary(
            crate::plan::BinOp::Mod,
            a0,
            args.get(1).cloned().unwrap_or(Value::Null),
        )?,
        "greatest" | "least" => {
            let mut best = Value::Null;
            for v in args {
                if v.is_null() {
                    continue;
                }
                let better = best.is_null() || {
                    let o = crate::types::sort_cmp(&v, &best);
                    (name == "greatest" && o.is_gt()) || (name == "least" && o.is_lt())
                };
                if better {
                    best = v;
                }
            }
            best
        }
        "nullif" => {
            let b = args.get(1).cloned().unwrap_or(Value::Null);
            if !a0.is_null()
                && !b.is_null()
                && crate::types::compare(&a0, &b) == Some(std::cmp::Ordering::Equal)
            {
                Value::Null
            } else {
                a0
            }
        }
        "lower" => Value::Text(text(&a0).to_lowercase()),
        "upper" => Value::Text(text(&a0).to_uppercase()),
        "initcap" => Value::Text(initcap(&text(&a0))),
        "length" | "char_length" | "character_length" => {
            Value::Int32(text(&a0).chars().count() as i32)
        }
        "octet_length" => Value::Int32(match &a0 {
            Value::Bytea(b) => b.len(),
            other => text(other).len(),
        } as i32),
        "substr" | "substring" => substr(&text(&a0), &args[1..])?,
        "concat" => Value::Text(args.iter().filter(|v| !v.is_null()).map(text).collect()),
        "concat_ws" => {
            let sep = text(&a0);
            Value::Text(
                args[1..]
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(text)
                    .collect::<Vec<_>>()
                    .join(&sep),
            )
        }
        "trim" | "btrim" | "ltrim" | "rtrim" => {
            let s = text(&a0);
            let chars: Vec<char> = args.get(1).map_or(vec![' '], |c| text(c).chars().collect());
            let f = |c: char| chars.contains(&c);
            Value::Text(match name {
                "ltrim" => s.trim_start_matches(f).to_string(),
                "rtrim" => s.trim_end_matches(f).to_string(),
                _ => s.trim_matches(f).to_string(),
            })
        }
        "replace" => Value::Text(text(&a0).replace(&text(&args[1]), &text(&args[2]))),
        "left" | "right" => {
            let s: Vec<char> = text(&a0).chars().collect();
            let n = int_arg(&args[1], "length")?;
            let len = s.len() as i64;
            let take = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
            Value::Text(if name == "left" {
                s[..take].iter().collect()
            } else {
                s[s.len() - take..].iter().collect()
            })
        }
        "reverse" => Value::Text(text(&a0).chars().rev().collect()),
        "repeat" => {
            let n = int_arg(&args[1], "count")?.clamp(0, 1 << 20) as usize;
            Value::Text(text(&a0).repeat(n))
        }
        "lpad" | "rpad" => pad(name, &args)?,
        "strpos" | "position" => {
            let (s, sub) = (text(&a0), text(&args[1]));
            Value::Int32(
                s.find(&sub)
                    .map_or(0, |i| s[..i].chars().count() as i32 + 1),
            )
        }
        "md5" => Value::Text(text(&a0)),
        "to_char" => Value::Text(text(&a0)),
        "version" => Value::Text("PostgreSQL 15.0 (MantisDB)".into()),
        "current_database" => Value::Text("mantis".into()),
        "current_user" => Value::Text("mantis".into()),
        "current_schema" => Value::Text("public".into()),
        "now" | "current_timestamp" | "localtimestamp" | "current_date" => {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64)
                - 946_684_800_000_000;
            if name == "current_date" {
                Value::Date(us.div_euclid(crate::datetime::USEC_PER_DAY) as i32)
            } else {
                Value::Timestamp(us)
            }
        }
        _ => return Err(undefined(name, args.len())),
    })
}

fn round_like(name: &str, args: &[Value]) -> Result<Value> {
    let a0 = &args[0];
    let places = match args.get(1) {
        Some(v) => int_arg(v, "scale")?,
        None => 0,
    };
    if a0.as_i64().is_some() && args.len() == 1 {
        return Ok(a0.clone());
    }
    if let Value::Float32(_) | Value::Float64(_) = a0 {
        if args.len() == 1 {
            let f = a0.as_f64().unwrap_or(0.0);
            let r = match name {
                "ceil" | "ceiling" => f.ceil(),
                "floor" => f.floor(),
                "trunc" => f.trunc(),
                _ => f.round_ties_even(),
            };
            return Ok(match a0 {
                Value::Float32(_) => Value::Float32(r as f32),
                _ => Value::Float64(r),
            });
        }
    }
    let d = match a0 {
        Value::Float32(_) | Value::Float64(_) => {
            Decimal::from_f64_retain(a0.as_f64().unwrap_or(0.0))
                .ok_or_else(|| SqlError::out_of_range("numeric"))?
        }
        other => other
            .as_decimal()
            .ok_or_else(|| undefined(name, args.len()))?,
    };
    let dp = places.clamp(0, 28) as u32;
    let r = match name {
        "ceil" | "ceiling" => d.ceil(),
        "floor" => d.floor(),
        "trunc" => d.round_dp_with_strategy(dp, RoundingStrategy::ToZero),
        _ => d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero),
    };
    Ok(Value::Numeric(r))
}

fn substr(s: &str, args: &[Value]) -> Result<Value> {
    let chars: Vec<char> = s.chars().collect();
    let start = int_arg(&args[0], "start")?;
    let end = match args.get(1) {
        Some(l) => {
            let l = int_arg(l, "length")?;
            if l < 0 {
                return Err(SqlError::new(
                    "22011",
                    "negative substring length not allowed",
                ));
            }
            start.saturating_add(l)
        }
        None => i64::MAX,
    };
    let lo = start.max(1) - 1;
    let hi = (end - 1).clamp(0, chars.len() as i64);
    if lo >= hi {
        return Ok(Value::Text(String::new()));
    }
    Ok(Value::Text(
        chars[lo as usize..hi as usize].iter().collect(),
    ))
}

fn pad(name: &str, args: &[Value]) -> Result<Value> {
    let s: Vec<char> = text(&args[0]).chars().collect();
    let n = int_arg(&args[1], "length")?.clamp(0, 1 << 20) as usize;
    let fill: Vec<char> = args.get(2).map_or(vec![' '], |f| text(f).chars().collect());
    if s.len() >= n || fill.is_empty() {
        return Ok(Value::Text(s[..n.min(s.len())].iter().collect()));
    }
    let padding: String = fill.iter().cycle().take(n - s.len()).collect();
    let body: String = s.iter().collect();
    Ok(Value::Text(if name == "lpad" {
        padding + &body
    } else {
        body + &padding
    }))
}

fn initcap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            start = false;
        } else {
            out.push(c);
            start = true;
        }
    }
    out
}

fn pseudo_random() -> f64 {
    use std::cell::Cell;
    thread_local!(static SEED: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) });
    SEED.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn string_functions() {
        let t = |s: &str| Value::Text(s.into());
        assert_eq!(
            call("substr", vec![t("hello"), Value::Int32(2), Value::Int32(3)]).unwrap(),
            t("ell")
        );
        assert_eq!(
            call("substr", vec![t("hello"), Value::Int32(0), Value::Int32(2)]).unwrap(),
            t("h")
        );
        assert_eq!(call("upper", vec![t("abc")]).unwrap(), t("ABC"));
        assert_eq!(call("length", vec![t("héllo")]).unwrap(), Value::Int32(5));
        assert_eq!(
            call("concat", vec![t("a"), Value::Null, Value::Int32(1)]).unwrap(),
            t("a1")
        );
        assert_eq!(call("lower", vec![Value::Null]).unwrap(), Value::Null);
        assert_eq!(
            call("lpad", vec![t("7"), Value::Int32(3), t("0")]).unwrap(),
            t("007")
        );
    }

    #[test]
    fn numeric_functions() {
        assert_eq!(
            call("abs", vec![Value::Int32(-3)]).unwrap(),
            Value::Int32(3)
        );
        assert_eq!(
            call("abs", vec![Value::Int32(i32::MIN)])
                .unwrap_err()
                .sqlstate,
            "22003"
        );
        assert_eq!(
            call("round", vec![Value::Numeric(Decimal::new(25, 1))]).unwrap(),
            Value::Numeric(Decimal::from(3))
        );
        assert_eq!(
            call("nullif", vec![Value::Int32(1), Value::Int32(1)]).unwrap(),
            Value::Null
        );
        assert!(call("nosuch", vec![]).is_err());
        // Wrong argument counts are refused by the binder's type check, never indexed.
        for (f, n) in [
            ("replace", 1),
            ("substr", 1),
            ("left", 0),
            ("lpad", 1),
            ("sqrt", 2),
            ("pi", 1),
        ] {
            let args = vec![SqlType::Text; n];
            assert_eq!(
                result_type(f, &args).unwrap_err().sqlstate,
                "42883",
                "{f}/{n}"
            );
        }
    }
}
