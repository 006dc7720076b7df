//! SQL types and values: PostgreSQL type identities (OIDs, lengths, names) and the value
//! representation the executor computes with.

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::error::{state, Result, SqlError};

/// A column or expression type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SqlType {
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric,
    Text,
    Varchar(Option<u32>),
    Char(Option<u32>),
    Bool,
    Date,
    Timestamp,
    Bytea,
    Jsonb,
    /// The type of a bare NULL or an untyped parameter.
    Unknown,
}

impl SqlType {
    pub fn pg_oid(&self) -> u32 {
        match self {
            SqlType::Int16 => 21,
            SqlType::Int32 => 23,
            SqlType::Int64 => 20,
            SqlType::Float32 => 700,
            SqlType::Float64 => 701,
            SqlType::Numeric => 1700,
            SqlType::Text => 25,
            SqlType::Varchar(_) => 1043,
            SqlType::Char(_) => 1042,
            SqlType::Bool => 16,
            SqlType::Date => 1082,
            SqlType::Timestamp => 1114,
            SqlType::Bytea => 17,
            SqlType::Jsonb => 3802,
            SqlType::Unknown => 705,
        }
    }

    pub fn pg_typlen(&self) -> i16 {
        match self {
            SqlType::Int16 => 2,
            SqlType::Int32 | SqlType::Float32 | SqlType::Date => 4,
            SqlType::Int64 | SqlType::Float64 | SqlType::Timestamp => 8,
            SqlType::Bool => 1,
            SqlType::Unknown => -2,
            _ => -1,
        }
    }

    pub fn pg_name(&self) -> &'static str {
        match self {
            SqlType::Int16 => "smallint",
            SqlType::Int32 => "integer",
            SqlType::Int64 => "bigint",
            SqlType::Float32 => "real",
            SqlType::Float64 => "double precision",
            SqlType::Numeric => "numeric",
            SqlType::Text => "text",
            SqlType::Varchar(_) => "character varying",
            SqlType::Char(_) => "character",
            SqlType::Bool => "boolean",
            SqlType::Date => "date",
            SqlType::Timestamp => "timestamp without time zone",
            SqlType::Bytea => "bytea",
            SqlType::Jsonb => "jsonb",
            SqlType::Unknown => "unknown",
        }
    }

    /// The type as written in DDL, with its length (for `\d`).
    pub fn display_name(&self) -> String {
        match self {
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Char(Some(n)) => format!("character({n})"),
            other => other.pg_name().to_string(),
        }
    }

    pub fn is_integer(&self) -> bool {
        matches!(self, SqlType::Int16 | SqlType::Int32 | SqlType::Int64)
    }

    pub fn is_float(&self) -> bool {
        matches!(self, SqlType::Float32 | SqlType::Float64)
    }

    pub fn is_numeric_family(&self) -> bool {
        self.is_integer() || self.is_float() || *self == SqlType::Numeric
    }

    pub fn is_text(&self) -> bool {
        matches!(
            self,
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Unknown
        )
    }

    /// Parses a type name as written in SQL (`int`, `varchar(10)`, `double precision`, ...).
    pub fn parse(name: &str) -> Result<SqlType> {
        let lower = name.trim().to_ascii_lowercase();
        let (base, arg) = match lower.find('(') {
            Some(i) => {
                let inner = lower[i + 1..].trim_end_matches(')').trim();
                (lower[..i].trim().to_string(), Some(inner.to_string()))
            }
            None => (lower.clone(), None),
        };
        let len = |a: &Option<String>| -> Result<Option<u32>> {
            match a {
                None => Ok(None),
                Some(s) => s
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| SqlError::syntax(format!("bad type length in {name}"))),
            }
        };
        Ok(match base.as_str() {
            "smallint" | "int2" => SqlType::Int16,
            "int" | "integer" | "int4" => SqlType::Int32,
            "bigint" | "int8" => SqlType::Int64,
            "real" | "float4" => SqlType::Float32,
            "float" | "double" | "double precision" | "float8" => SqlType::Float64,
            "numeric" | "decimal" => SqlType::Numeric,
            "text" | "string" => SqlType::Text,
            "varchar" | "character varying" => SqlType::Varchar(len(&arg)?),
            "char" | "character" | "bpchar" => SqlType::Char(Some(len(&arg)?.unwrap_or(1))),
            "bool" | "boolean" => SqlType::Bool,
            "date" => SqlType::Date,
            "timestamp" | "timestamp without time zone" | "datetime" => SqlType::Timestamp,
            "bytea" => SqlType::Bytea,
            "jsonb" | "json" => SqlType::Jsonb,
            _ => {
                return Err(SqlError::new(
                    state::UNDEFINED_OBJECT,
                    format!("type \"{name}\" does not exist"),
                ))
            }
        })
    }
}

/// A SQL value. Integers keep their width so results carry the right type OIDs.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Numeric(Decimal),
    Text(String),
    Bytea(Vec<u8>),
    /// Days since 2000-01-01.
    Date(i32),
    /// Microseconds since 2000-01-01 00:00:00.
    Timestamp(i64),
    Jsonb(serde_json::Value),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The natural type of this value (Unknown for NULL).
    pub fn sql_type(&self) -> SqlType {
        match self {
            Value::Null => SqlType::Unknown,
            Value::Bool(_) => SqlType::Bool,
            Value::Int16(_) => SqlType::Int16,
            Value::Int32(_) => SqlType::Int32,
            Value::Int64(_) => SqlType::Int64,
            Value::Float32(_) => SqlType::Float32,
            Value::Float64(_) => SqlType::Float64,
            Value::Numeric(_) => SqlType::Numeric,
            Value::Text(_) => SqlType::Text,
            Value::Bytea(_) => SqlType::Bytea,
            Value::Date(_) => SqlType::Date,
            Value::Timestamp(_) => SqlType::Timestamp,
            Value::Jsonb(_) => SqlType::Jsonb,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int16(v) => Some(i64::from(*v)),
            Value::Int32(v) => Some(i64::from(*v)),
            Value::Int64(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float32(v) => Some(f64::from(*v)),
            Value::Float64(v) => Some(*v),
            Value::Numeric(d) => d.to_string().parse().ok(),
            other => other.as_i64().map(|i| i as f64),
        }
    }

    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Numeric(d) => Some(*d),
            other => other.as_i64().map(Decimal::from),
        }
    }

    /// PostgreSQL's text output format; None for NULL.
    pub fn to_pg_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Value::Int16(v) => v.to_string(),
            Value::Int32(v) => v.to_string(),
            Value::Int64(v) => v.to_string(),
            Value::Float32(v) => format_float(f64::from(*v), true),
            Value::Float64(v) => format_float(*v, false),
            Value::Numeric(d) => d.to_string(),
            Value::Text(s) => s.clone(),
            Value::Bytea(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            Value::Date(d) => crate::datetime::format_date(*d),
            Value::Timestamp(t) => crate::datetime::format_timestamp(*t),
            Value::Jsonb(j) => j.to_string(),
        })
    }

    /// Parses PostgreSQL's text input format for `ty`.
    pub fn from_pg_text(ty: &SqlType, s: &str) -> Result<Value> {
        crate::cast::parse_text(ty, s)
    }

    /// PostgreSQL's binary format; None for NULL.
    pub fn to_pg_binary(&self) -> Option<Vec<u8>> {
        crate::binary::to_binary(self)
    }

    pub fn from_pg_binary(ty: &SqlType, b: &[u8]) -> Result<Value> {
        crate::binary::from_binary(ty, b)
    }
}

/// Floats as PostgreSQL 12+ prints them: shortest round-trip digits.
fn format_float(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let s = if single {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    };
    // Rust never uses exponents; PostgreSQL does beyond 1e15 / below 1e-4.
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e15).contains(&abs) {
        let e = if single {
            format!("{:e}", v as f32)
        } else {
            format!("{v:e}")
        };
        if let Some((m, exp)) = e.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            return format!("{m}e{sign}{digits}");
        }
    }
    s
}

/// Compares two non-null values of comparable types (numbers across widths, text with text).
/// Returns None when the types cannot be compared.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Null, _) | (_, Null) => None,
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Text(x), Text(y)) => Some(x.cmp(y)),
        (Bytea(x), Bytea(y)) => Some(x.cmp(y)),
        (Date(x), Date(y)) => Some(x.cmp(y)),
        (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        (Date(x), Timestamp(y)) => Some((i64::from(*x) * crate::datetime::USEC_PER_DAY).cmp(y)),
        (Timestamp(x), Date(y)) => Some(x.cmp(&(i64::from(*y) * crate::datetime::USEC_PER_DAY))),
        (Jsonb(x), Jsonb(y)) => Some(x.to_string().cmp(&y.to_string())),
        _ => {
            if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                return Some(x.cmp(&y));
            }
            let float =
                matches!(a, Float32(_) | Float64(_)) || matches!(b, Float32(_) | Float64(_));
            if !float {
                if let (Some(x), Some(y)) = (a.as_decimal(), b.as_decimal()) {
                    return Some(x.cmp(&y));
                }
            }
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => Some(total_f64(x, y)),
                _ => None,
            }
        }
    }
}

/// PostgreSQL orders NaN above every other float and equal to itself.
fn total_f64(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// A total order for sorting: NULL sorts after everything (PostgreSQL's default for ASC);
/// incomparable types order by type tag so the sort stays total.
pub fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => compare(a, b).unwrap_or_else(|| type_rank(a).cmp(&type_rank(b))),
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => 2,
        Value::Float32(_) | Value::Float64(_) | Value::Numeric(_) => 2,
        Value::Text(_) => 3,
        Value::Bytea(_) => 4,
        Value::Date(_) | Value::Timestamp(_) => 5,
        Value::Jsonb(_) => 6,
    }
}

/// The common type two operands are promoted to for comparison and arithmetic
/// (PostgreSQL's numeric tower: int2 < int4 < int8 < numeric < float4 < float8).
pub fn common_type(a: &SqlType, b: &SqlType) -> Option<SqlType> {
    use SqlType::*;
    if a == b {
        return Some(a.clone());
    }
    if *a == Unknown {
        return Some(b.clone());
    }
    if *b == Unknown {
        return Some(a.clone());
    }
    let rank = |t: &SqlType| match t {
        Int16 => Some(1),
        Int32 => Some(2),
        Int64 => Some(3),
        Numeric => Some(4),
        Float32 => Some(5),
        Float64 => Some(6),
        _ => None,
    };
    if let (Some(x), Some(y)) = (rank(a), rank(b)) {
        return Some(if x >= y { a.clone() } else { b.clone() });
    }
    if a.is_text() && b.is_text() {
        return Some(Text);
    }
    match (a, b) {
        (Date, Timestamp) | (Timestamp, Date) => Some(Timestamp),
        _ => None,
    }
}
