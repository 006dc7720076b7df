//! Key layout of SQL data in the KV engine, and the order-preserving encoding of values in
//! keys (byte order of the encoding = SQL order of the values), so that primary-key and index
//! ranges are key ranges. Byte-by-byte description in docs/sql.md.

use rust_decimal::prelude::ToPrimitive;

use crate::types::Value;

/// Every SQL key starts with these bytes, apart from the KV model's own keys.
pub const SQL_PREFIX: &[u8] = &[0xFE, b'S'];
pub const TAG_CATALOG: u8 = b'c';
pub const TAG_VERSION: u8 = b'v';
pub const TAG_ROW: u8 = b'r';
pub const TAG_INDEX: u8 = b'i';
pub const TAG_META: u8 = b'm';

const T_NULL_FIRST: u8 = 0x01;
const T_FALSE: u8 = 0x02;
const T_TRUE: u8 = 0x03;
const T_NUM: u8 = 0x10;
const T_TEXT: u8 = 0x20;
const T_BYTES: u8 = 0x21;
const T_DATE: u8 = 0x30;
const T_TIMESTAMP: u8 = 0x31;
const T_JSON: u8 = 0x40;
/// NULL sorts last, as in PostgreSQL's ascending order.
const T_NULL: u8 = 0xF0;

pub fn catalog_key(name: &str) -> Vec<u8> {
    let mut k = SQL_PREFIX.to_vec();
    k.push(TAG_CATALOG);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn catalog_prefix() -> Vec<u8> {
    let mut k = SQL_PREFIX.to_vec();
    k.push(TAG_CATALOG);
    k
}

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = SQL_PREFIX.to_vec();
    k.push(TAG_META);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The catalog-version key number `n`; one is chosen per shard so that each shard checks a
/// key it owns.
pub fn version_key(n: u32) -> Vec<u8> {
    let mut k = SQL_PREFIX.to_vec();
    k.push(TAG_VERSION);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The prefix of every row of table `table_id`.
pub fn row_prefix(table_id: u32) -> Vec<u8> {
    let mut k = SQL_PREFIX.to_vec();
    k.push(TAG_ROW);
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

pub fn row_key(table_id: u32, pk: &[Value]) -> Vec<u8> {
    let mut k = row_prefix(table_id);
    for v in pk {
        encode_value(&mut k, v);
    }
    k
}

pub fn index_prefix(index_id: u32) -> Vec<u8> {
    let mut k = SQL_PREFIX.to_vec();
    k.push(TAG_INDEX);
    k.extend_from_slice(&index_id.to_be_bytes());
    k
}

/// The smallest key strictly greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Appends the order-preserving encoding of `v`. All numbers share one tag and compare by
/// value across widths (ints exactly; numerics and floats through an f64 image followed by
/// the exact integer when there is one, so equal integers of any type encode identically).
pub fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(T_NULL),
        Value::Bool(false) => out.push(T_FALSE),
        Value::Bool(true) => out.push(T_TRUE),
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => {
            out.push(T_NUM);
            let i = v.as_i64().unwrap_or(0);
            out.extend_from_slice(&f64_key(i as f64));
            out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float32(_) | Value::Float64(_) | Value::Numeric(_) => {
            out.push(T_NUM);
            let f = v.as_f64().unwrap_or(f64::NAN);
            out.extend_from_slice(&f64_key(f));
            // An integral value encodes exactly like the integer, so 1 = 1.0 in keys.
            let exact = match v {
                Value::Numeric(d) if d.fract().is_zero() => d.to_i64(),
                _ if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
                _ => None,
            };
            match exact {
                Some(i) => out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes()),
                None => {
                    // Non-integral: the decimal text breaks ties between equal f64 images.
                    out.extend_from_slice(&[0xFF; 8]);
                    escape_bytes(out, v.to_pg_text().unwrap_or_default().as_bytes());
                }
            }
        }
        Value::Text(s) => {
            out.push(T_TEXT);
            escape_bytes(out, s.as_bytes());
        }
        Value::Bytea(b) => {
            out.push(T_BYTES);
            escape_bytes(out, b);
        }
        Value::Date(d) => {
            out.push(T_DATE);
            out.extend_from_slice(&((*d as u32) ^ (1 << 31)).to_be_bytes());
        }
        Value::Timestamp(t) => {
            out.push(T_TIMESTAMP);
            out.extend_from_slice(&((*t as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Jsonb(j) => {
            out.push(T_JSON);
            escape_bytes(out, j.to_string().as_bytes());
        }
    }
}

/// A key image of NULL that sorts first (used for range starts).
pub fn null_first_marker() -> u8 {
    T_NULL_FIRST
}

/// The encoding of a whole tuple, used as a hash key for grouping, DISTINCT and set ops.
pub fn tuple_key(values: &[Value]) -> Vec<u8> {
    let mut k = Vec::with_capacity(values.len() * 10);
    for v in values {
        encode_value(&mut k, v);
    }
    k
}

fn f64_key(f: f64) -> [u8; 8] {
    let f = if f == 0.0 { 0.0 } else { f }; // -0.0 and 0.0 are equal in SQL
    let bits = f.to_bits();
    let flipped = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    flipped.to_be_bytes()
}

/// 0x00 is escaped as 0x00 0xFF and the string ends with 0x00 0x01, so a prefix sorts before
/// its extensions and the encoding stays self-delimiting.
fn escape_bytes(out: &mut Vec<u8>, b: &[u8]) {
    for &byte in b {
        out.push(byte);
        if byte == 0 {
            out.push(0xFF);
        }
    }
    out.push(0x00);
    out.push(0x01);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&mut out, v);
        out
    }

    #[test]
    fn order_is_preserved() {
        let ordered = [
            Value::Int64(i64::MIN),
            Value::Int32(-5),
            Value::Float64(-4.5),
            Value::Int16(0),
            Value::Numeric(Decimal::from_str("0.5").unwrap()),
            Value::Int32(1),
            Value::Float64(1.25),
            Value::Int64(1 << 40),
        ];
        for w in ordered.windows(2) {
            assert!(enc(&w[0]) < enc(&w[1]), "{:?} < {:?}", w[0], w[1]);
        }
        assert!(enc(&Value::Text("ab".into())) < enc(&Value::Text("abc".into())));
        assert!(enc(&Value::Text("a\0".into())) > enc(&Value::Text("a".into())));
        assert!(enc(&Value::Int32(5)) < enc(&Value::Null));
        assert_eq!(enc(&Value::Int32(3)), enc(&Value::Int64(3)));
        assert_eq!(enc(&Value::Float64(3.0)), enc(&Value::Int64(3)));
        assert_eq!(
            enc(&Value::Numeric(Decimal::from_str("3.00").unwrap())),
            enc(&Value::Int64(3))
        );
    }

    #[test]
    fn prefix_end_works() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
