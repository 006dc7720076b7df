//! SQL values ↔ column scalars. Integers, booleans, dates and timestamps are `Int`; real and
//! double are `Float`; text, bytea, numeric (by its text) and jsonb (by its text) are `Bytes`.

use std::str::FromStr;

use mantis_columnar::{PhysType, Scalar};
use rust_decimal::Decimal;

use crate::error::{state, Result, SqlError};
use crate::types::{SqlType, Value};

pub fn phys_of(ty: &SqlType) -> PhysType {
    match ty {
        SqlType::Int16
        | SqlType::Int32
        | SqlType::Int64
        | SqlType::Bool
        | SqlType::Date
        | SqlType::Timestamp => PhysType::Int,
        SqlType::Float32 | SqlType::Float64 => PhysType::Float,
        _ => PhysType::Bytes,
    }
}

/// Whether the scalar order of the type's physical form is the SQL order (so min/max stats,
/// comparisons and MIN/MAX may run on scalars). Not for numeric/jsonb (stored as text) nor
/// char(n) (blank-padded comparison).
pub fn ordered(ty: &SqlType) -> bool {
    !matches!(
        ty,
        SqlType::Numeric | SqlType::Jsonb | SqlType::Char(_) | SqlType::Unknown
    )
}

pub fn to_scalar(v: &Value) -> Scalar {
    match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Int(i64::from(*b)),
        Value::Int16(x) => Scalar::Int(i64::from(*x)),
        Value::Int32(x) => Scalar::Int(i64::from(*x)),
        Value::Int64(x) => Scalar::Int(*x),
        Value::Date(d) => Scalar::Int(i64::from(*d)),
        Value::Timestamp(t) => Scalar::Int(*t),
        Value::Float32(f) => Scalar::Float(f64::from(*f)),
        Value::Float64(f) => Scalar::Float(*f),
        Value::Numeric(d) => Scalar::Bytes(d.to_string().into_bytes()),
        Value::Text(s) => Scalar::Bytes(s.as_bytes().to_vec()),
        Value::Bytea(b) => Scalar::Bytes(b.clone()),
        Value::Jsonb(j) => Scalar::Bytes(j.to_string().into_bytes()),
    }
}

fn corrupt(ty: &SqlType, what: &str) -> SqlError {
    SqlError::new(
        state::DATA_CORRUPTED,
        format!("columnar value of type {}: {what}", ty.pg_name()),
    )
}

/// The SQL value of a scalar read from a column of type `ty`.
pub fn to_value(s: Scalar, ty: &SqlType) -> Result<Value> {
    let out_of_range = || corrupt(ty, "out of range");
    Ok(match (s, ty) {
        (Scalar::Null, _) => Value::Null,
        (Scalar::Int(i), SqlType::Bool) => Value::Bool(i != 0),
        (Scalar::Int(i), SqlType::Int16) => {
            Value::Int16(i16::try_from(i).map_err(|_| out_of_range())?)
        }
        (Scalar::Int(i), SqlType::Int32) => {
            Value::Int32(i32::try_from(i).map_err(|_| out_of_range())?)
        }
        (Scalar::Int(i), SqlType::Int64) => Value::Int64(i),
        (Scalar::Int(i), SqlType::Date) => {
            Value::Date(i32::try_from(i).map_err(|_| out_of_range())?)
        }
        (Scalar::Int(i), SqlType::Timestamp) => Value::Timestamp(i),
        (Scalar::Float(f), SqlType::Float32) => Value::Float32(f as f32),
        (Scalar::Float(f), SqlType::Float64) => Value::Float64(f),
        (Scalar::Bytes(b), SqlType::Bytea) => Value::Bytea(b),
        (Scalar::Bytes(b), SqlType::Numeric) => {
            let s = String::from_utf8(b).map_err(|_| corrupt(ty, "not UTF-8"))?;
            Value::Numeric(Decimal::from_str(&s).map_err(|_| corrupt(ty, "not a number"))?)
        }
        (Scalar::Bytes(b), SqlType::Jsonb) => {
            Value::Jsonb(serde_json::from_slice(&b).map_err(|_| corrupt(ty, "not JSON"))?)
        }
        (Scalar::Bytes(b), _) => {
            Value::Text(String::from_utf8(b).map_err(|_| corrupt(ty, "not UTF-8"))?)
        }
        (s, _) => return Err(corrupt(ty, &format!("unexpected {s:?}"))),
    })
}

/// The constant of `column op constant` as a scalar comparable with the column's values
/// in SQL semantics, or `None` when the comparison cannot run on scalars.
pub fn constant_for(col_ty: &SqlType, v: &Value) -> Option<Scalar> {
    if !ordered(col_ty) {
        return None;
    }
    match (col_ty, v) {
        (_, Value::Null) => Some(Scalar::Null),
        (SqlType::Bool, Value::Bool(b)) => Some(Scalar::Int(i64::from(*b))),
        (SqlType::Date, Value::Date(d)) => Some(Scalar::Int(i64::from(*d))),
        (SqlType::Timestamp, Value::Timestamp(t)) => Some(Scalar::Int(*t)),
        (
            SqlType::Int16 | SqlType::Int32 | SqlType::Int64,
            Value::Int16(_) | Value::Int32(_) | Value::Int64(_),
        ) => v.as_i64().map(Scalar::Int),
        (SqlType::Int16 | SqlType::Int32 | SqlType::Int64, Value::Numeric(d))
            if d.fract().is_zero() =>
        {
            v.as_i64().map(Scalar::Int)
        }
        (
            SqlType::Int16 | SqlType::Int32 | SqlType::Int64,
            Value::Float32(_) | Value::Float64(_),
        ) => v.as_f64().map(Scalar::Float),
        (
            SqlType::Float32 | SqlType::Float64,
            Value::Int16(_)
            | Value::Int32(_)
            | Value::Int64(_)
            | Value::Float32(_)
            | Value::Float64(_)
            | Value::Numeric(_),
        ) => v.as_f64().map(Scalar::Float),
        (SqlType::Text | SqlType::Varchar(_), Value::Text(s)) => {
            Some(Scalar::Bytes(s.as_bytes().to_vec()))
        }
        (SqlType::Bytea, Value::Bytea(b)) => Some(Scalar::Bytes(b.clone())),
        _ => None,
    }
}
