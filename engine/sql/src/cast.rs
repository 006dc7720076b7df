//! Casts between SQL types with PostgreSQL's rules: range checks (22003), text parsing (22P02),
//! length limits on assignment (22001) and truncation on explicit casts.

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::error::{state, Result, SqlError};
use crate::types::{SqlType, Value};

/// Parses PostgreSQL text input for `ty`.
pub fn parse_text(ty: &SqlType, s: &str) -> Result<Value> {
    let t = s.trim();
    Ok(match ty {
        SqlType::Int16 => Value::Int16(parse_int(t, "smallint")?),
        SqlType::Int32 => Value::Int32(parse_int(t, "integer")?),
        SqlType::Int64 => Value::Int64(parse_int(t, "bigint")?),
        SqlType::Float32 => Value::Float32(parse_float(t, "real")? as f32),
        SqlType::Float64 => Value::Float64(parse_float(t, "double precision")?),
        SqlType::Numeric => Value::Numeric(parse_decimal(t)?),
        SqlType::Bool => Value::Bool(parse_bool(t)?),
        SqlType::Date => Value::Date(crate::datetime::parse_date(t)?),
        SqlType::Timestamp => Value::Timestamp(crate::datetime::parse_timestamp(t)?),
        SqlType::Bytea => Value::Bytea(parse_bytea(s)?),
        SqlType::Jsonb => Value::Jsonb(
            serde_json::from_str(s)
                .map_err(|e| SqlError::invalid_text("json", s).with_detail(e.to_string()))?,
        ),
        SqlType::Text | SqlType::Unknown => Value::Text(s.to_string()),
        SqlType::Varchar(n) | SqlType::Char(n) => fit_length(s.to_string(), ty, *n, false)?,
    })
}

fn parse_int<T: TryFrom<i64>>(t: &str, name: &str) -> Result<T> {
    let v: i64 = match t.parse::<i64>() {
        Ok(v) => v,
        Err(_) => {
            // Digits that overflow i64 are out of range, anything else is bad syntax.
            let digits = t.trim_start_matches(['-', '+']);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SqlError::new(
                    state::NUMERIC_OUT_OF_RANGE,
                    format!("value \"{t}\" is out of range for type {name}"),
                ));
            }
            return Err(SqlError::invalid_text(name, t));
        }
    };
    T::try_from(v).map_err(|_| {
        SqlError::new(
            state::NUMERIC_OUT_OF_RANGE,
            format!("value \"{t}\" is out of range for type {name}"),
        )
    })
}

fn parse_float(t: &str, name: &str) -> Result<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Ok(f64::NAN),
        "infinity" | "inf" | "+infinity" => return Ok(f64::INFINITY),
        "-infinity" | "-inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    t.parse::<f64>()
        .map_err(|_| SqlError::invalid_text(name, t))
}

pub fn parse_decimal(t: &str) -> Result<Decimal> {
    Decimal::from_str(t)
        .or_else(|_| Decimal::from_scientific(t))
        .map_err(|_| {
            if t.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
                && !t.is_empty()
            {
                SqlError::out_of_range("numeric")
            } else {
                SqlError::invalid_text("numeric", t)
            }
        })
}

fn parse_bool(t: &str) -> Result<bool> {
    match t.to_ascii_lowercase().as_str() {
        "t" | "true" | "yes" | "y" | "on" | "1" => Ok(true),
        "f" | "false" | "no" | "n" | "off" | "0" => Ok(false),
        _ => Err(SqlError::invalid_text("boolean", t)),
    }
}

fn parse_bytea(s: &str) -> Result<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return Err(SqlError::invalid_text("bytea", s));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&hex[i..i + 2], 16)
                    .map_err(|_| SqlError::invalid_text("bytea", s))
            })
            .collect()
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

/// Applies a length limit: an error on assignment (22001), truncation on explicit casts.
/// CHAR(n) pads with spaces, like PostgreSQL's bpchar.
fn fit_length(s: String, ty: &SqlType, n: Option<u32>, explicit: bool) -> Result<Value> {
    let Some(n) = n else {
        return Ok(Value::Text(s));
    };
    let n = n as usize;
    let count = s.chars().count();
    let mut s = s;
    if count > n {
        let (head, tail): (String, String) = {
            let idx = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
            (s[..idx].to_string(), s[idx..].to_string())
        };
        // PostgreSQL lets trailing spaces be cut silently.
        if !explicit && tail.chars().any(|c| c != ' ') {
            return Err(SqlError::new(
                state::STRING_TOO_LONG,
                format!("value too long for type {}", ty.display_name()),
            ));
        }
        s = head;
    } else if matches!(ty, SqlType::Char(_)) && count < n {
        s.extend(std::iter::repeat_n(' ', n - count));
    }
    Ok(Value::Text(s))
}

/// Converts `v` to `ty`. `explicit` is a CAST written by the user (truncates strings);
/// otherwise it is an assignment (rejects strings that are too long).
pub fn cast(v: Value, ty: &SqlType, explicit: bool) -> Result<Value> {
    if v.is_null() || *ty == SqlType::Unknown {
        return Ok(v);
    }
    let fail = |v: &Value| {
        SqlError::new(
            "42846",
            format!(
                "cannot cast type {} to {}",
                v.sql_type().pg_name(),
                ty.pg_name()
            ),
        )
    };
    Ok(match (ty, v) {
        (t, Value::Jsonb(j)) if t.is_numeric_family() || *t == SqlType::Bool => {
            return jsonb_scalar(j, t, explicit)
        }
        (SqlType::Int16, v) => Value::Int16(to_int(&v, "smallint")?.ok_or_else(|| fail(&v))?),
        (SqlType::Int32, v) => Value::Int32(to_int(&v, "integer")?.ok_or_else(|| fail(&v))?),
        (SqlType::Int64, v) => Value::Int64(to_int(&v, "bigint")?.ok_or_else(|| fail(&v))?),
        (SqlType::Float32, Value::Text(s)) => parse_text(ty, &s)?,
        (SqlType::Float64, Value::Text(s)) => parse_text(ty, &s)?,
        (SqlType::Float32, v) => Value::Float32(v.as_f64().ok_or_else(|| fail(&v))? as f32),
        (SqlType::Float64, v) => Value::Float64(v.as_f64().ok_or_else(|| fail(&v))?),
        (SqlType::Numeric, Value::Text(s)) => Value::Numeric(parse_decimal(s.trim())?),
        (SqlType::Numeric, v @ (Value::Float32(_) | Value::Float64(_))) => {
            let f = v.as_f64().unwrap_or(0.0);
            Value::Numeric(
                Decimal::from_f64_retain(f)
                    .ok_or_else(|| SqlError::out_of_range("numeric"))?
                    .normalize(),
            )
        }
        (SqlType::Numeric, v) => Value::Numeric(v.as_decimal().ok_or_else(|| fail(&v))?),
        (SqlType::Bool, Value::Bool(b)) => Value::Bool(b),
        (SqlType::Bool, Value::Text(s)) => Value::Bool(parse_bool(s.trim())?),
        (SqlType::Bool, v @ (Value::Int32(_) | Value::Int64(_) | Value::Int16(_))) => {
            Value::Bool(v.as_i64() != Some(0))
        }
        (SqlType::Text, v) => Value::Text(to_text(v)),
        (SqlType::Varchar(n) | SqlType::Char(n), v) => fit_length(to_text(v), ty, *n, explicit)?,
        (SqlType::Date, Value::Date(d)) => Value::Date(d),
        (SqlType::Date, Value::Timestamp(t)) => {
            Value::Date(t.div_euclid(crate::datetime::USEC_PER_DAY) as i32)
        }
        (SqlType::Timestamp, Value::Timestamp(t)) => Value::Timestamp(t),
        (SqlType::Timestamp, Value::Date(d)) => {
            Value::Timestamp(i64::from(d) * crate::datetime::USEC_PER_DAY)
        }
        (SqlType::Bytea, Value::Bytea(b)) => Value::Bytea(b),
        (SqlType::Jsonb, Value::Jsonb(j)) => Value::Jsonb(j),
        (_, Value::Text(s)) => parse_text(ty, &s)?,
        (_, v) => return Err(fail(&v)),
    })
}

/// PostgreSQL's casts of jsonb to numbers and booleans: only a JSON number (or boolean)
/// converts; any other JSON type is 22023 "cannot cast jsonb string to type numeric".
fn jsonb_scalar(j: serde_json::Value, ty: &SqlType, explicit: bool) -> Result<Value> {
    use serde_json::Value as J;
    let kind = match &j {
        J::Number(n) if ty.is_float() => return cast(Value::Text(n.to_string()), ty, explicit),
        // Through numeric, so integers round fractions as PostgreSQL does ('2.5' -> 3).
        J::Number(n) if ty.is_numeric_family() => {
            let exact = cast(Value::Text(n.to_string()), &SqlType::Numeric, explicit)?;
            return cast(exact, ty, explicit);
        }
        J::Bool(b) if *ty == SqlType::Bool => return Ok(Value::Bool(*b)),
        J::Null => "null",
        J::Bool(_) => "boolean",
        J::Number(_) => "numeric",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    };
    Err(SqlError::new(
        crate::error::state::INVALID_PARAMETER_VALUE,
        format!("cannot cast jsonb {kind} to type {}", ty.pg_name()),
    ))
}

fn to_text(v: Value) -> String {
    match v {
        Value::Text(s) => s,
        other => other.to_pg_text().unwrap_or_default(),
    }
}

/// Integer conversion with PostgreSQL's rounding of fractions (half away from zero).
fn to_int<T: TryFrom<i64>>(v: &Value, name: &str) -> Result<Option<T>> {
    let wide: i64 = match v {
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => v.as_i64().unwrap_or(0),
        Value::Float32(_) | Value::Float64(_) => {
            let f = v.as_f64().unwrap_or(0.0).round_ties_even();
            if !f.is_finite() || f < i64::MIN as f64 || f >= i64::MAX as f64 {
                return Err(SqlError::out_of_range(name));
            }
            f as i64
        }
        Value::Numeric(d) => d
            .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .to_i64()
            .ok_or_else(|| SqlError::out_of_range(name))?,
        Value::Text(s) => return parse_int(s.trim(), name).map(Some),
        Value::Bool(b) => i64::from(*b),
        _ => return Ok(None),
    };
    T::try_from(wide)
        .map(Some)
        .map_err(|_| SqlError::out_of_range(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges_and_lengths() {
        assert_eq!(
            cast(Value::Int64(40_000), &SqlType::Int16, true)
                .unwrap_err()
                .sqlstate,
            "22003"
        );
        assert_eq!(
            cast(Value::Float64(2.5), &SqlType::Int32, true).unwrap(),
            Value::Int32(2)
        );
        assert_eq!(
            cast(
                Value::Text("abcd".into()),
                &SqlType::Varchar(Some(3)),
                false
            )
            .unwrap_err()
            .sqlstate,
            "22001"
        );
        assert_eq!(
            cast(Value::Text("abcd".into()), &SqlType::Varchar(Some(3)), true).unwrap(),
            Value::Text("abc".into())
        );
        assert_eq!(
            cast(Value::Text("ab".into()), &SqlType::Char(Some(3)), false).unwrap(),
            Value::Text("ab ".into())
        );
        assert_eq!(
            parse_text(&SqlType::Int32, "x1").unwrap_err().sqlstate,
            "22P02"
        );
        assert_eq!(
            parse_text(&SqlType::Bool, "yes").unwrap(),
            Value::Bool(true)
        );
    }
}
