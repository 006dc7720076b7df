//! Row values as stored in the KV engine: a format byte, the column count, then one tagged
//! field per column (layout in docs/sql.md). Not order-preserving; keys use `keys`.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::{Result, SqlError};
use crate::types::Value;

pub const ROW_FORMAT_V1: u8 = 1;

pub fn encode_row(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + values.len() * 9);
    out.push(ROW_FORMAT_V1);
    out.extend_from_slice(&(values.len() as u16).to_le_bytes());
    for v in values {
        match v {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
            Value::Int16(x) => {
                out.push(2);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Int32(x) => {
                out.push(3);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Int64(x) => {
                out.push(4);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Float32(x) => {
                out.push(5);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Float64(x) => {
                out.push(6);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Numeric(d) => put_bytes(&mut out, 7, d.to_string().as_bytes()),
            Value::Text(s) => put_bytes(&mut out, 8, s.as_bytes()),
            Value::Bytea(b) => put_bytes(&mut out, 9, b),
            Value::Date(d) => {
                out.push(10);
                out.extend_from_slice(&d.to_le_bytes());
            }
            Value::Timestamp(t) => {
                out.push(11);
                out.extend_from_slice(&t.to_le_bytes());
            }
            Value::Jsonb(j) => put_bytes(&mut out, 12, j.to_string().as_bytes()),
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| SqlError::internal("corrupt row: truncated"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?
            .try_into()
            .map_err(|_| SqlError::internal("corrupt row: short field"))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = u32::from_le_bytes(self.arr()?) as usize;
        self.take(n)
    }
    fn text(&mut self) -> Result<String> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_string)
            .map_err(|_| SqlError::internal("corrupt row: bad utf-8"))
    }
}

/// Decodes a row; a row shorter than `columns` is padded with NULL.
pub fn decode_row(b: &[u8], columns: usize) -> Result<Vec<Value>> {
    let mut r = Reader { b, pos: 0 };
    let format = r.arr::<1>()?[0];
    if format != ROW_FORMAT_V1 {
        return Err(SqlError::internal(format!("unknown row format {format}")));
    }
    let n = u16::from_le_bytes(r.arr()?) as usize;
    let mut out = Vec::with_capacity(columns.max(n));
    for _ in 0..n {
        let tag = r.arr::<1>()?[0];
        out.push(match tag {
            0 => Value::Null,
            1 => Value::Bool(r.arr::<1>()?[0] != 0),
            2 => Value::Int16(i16::from_le_bytes(r.arr()?)),
            3 => Value::Int32(i32::from_le_bytes(r.arr()?)),
            4 => Value::Int64(i64::from_le_bytes(r.arr()?)),
            5 => Value::Float32(f32::from_le_bytes(r.arr()?)),
            6 => Value::Float64(f64::from_le_bytes(r.arr()?)),
            7 => Value::Numeric(
                Decimal::from_str(&r.text()?)
                    .map_err(|_| SqlError::internal("corrupt row: bad numeric"))?,
            ),
            8 => Value::Text(r.text()?),
            9 => Value::Bytea(r.bytes()?.to_vec()),
            10 => Value::Date(i32::from_le_bytes(r.arr()?)),
            11 => Value::Timestamp(i64::from_le_bytes(r.arr()?)),
            12 => Value::Jsonb(
                serde_json::from_str(&r.text()?)
                    .map_err(|_| SqlError::internal("corrupt row: bad json"))?,
            ),
            t => return Err(SqlError::internal(format!("corrupt row: tag {t}"))),
        });
    }
    while out.len() < columns {
        out.push(Value::Null);
    }
    Ok(out)
}

/// Decodes into `out` (cleared first, so one buffer serves a whole scan) only the columns
/// whose `needed` flag is set; the others become NULL without being parsed or allocated.
/// A row shorter than `needed` is padded with NULL.
pub fn decode_row_into(b: &[u8], needed: &[bool], out: &mut Vec<Value>) -> Result<()> {
    out.clear();
    let mut r = Reader { b, pos: 0 };
    let format = r.arr::<1>()?[0];
    if format != ROW_FORMAT_V1 {
        return Err(SqlError::internal(format!("unknown row format {format}")));
    }
    let n = u16::from_le_bytes(r.arr()?) as usize;
    for i in 0..n {
        if !needed.get(i).copied().unwrap_or(false) {
            skip_field(&mut r)?;
            out.push(Value::Null);
            continue;
        }
        out.push(match r.arr::<1>()?[0] {
            0 => Value::Null,
            1 => Value::Bool(r.arr::<1>()?[0] != 0),
            2 => Value::Int16(i16::from_le_bytes(r.arr()?)),
            3 => Value::Int32(i32::from_le_bytes(r.arr()?)),
            4 => Value::Int64(i64::from_le_bytes(r.arr()?)),
            5 => Value::Float32(f32::from_le_bytes(r.arr()?)),
            6 => Value::Float64(f64::from_le_bytes(r.arr()?)),
            10 => Value::Date(i32::from_le_bytes(r.arr()?)),
            11 => Value::Timestamp(i64::from_le_bytes(r.arr()?)),
            _ => {
                // The variable-length kinds: the general decoder parses them.
                r.pos -= 1;
                let start = r.pos;
                skip_field(&mut r)?;
                let one = one_field_row(&b[start..r.pos]);
                decode_row(&one, 1)?.pop().unwrap_or(Value::Null)
            }
        });
    }
    while out.len() < needed.len() {
        out.push(Value::Null);
    }
    Ok(())
}

/// A one-column row holding `field` (a tag and its payload), for `decode_row`.
fn one_field_row(field: &[u8]) -> Vec<u8> {
    let mut one = Vec::with_capacity(3 + field.len());
    one.push(ROW_FORMAT_V1);
    one.extend_from_slice(&1u16.to_le_bytes());
    one.extend_from_slice(field);
    one
}

/// Steps over one field without decoding it.
fn skip_field(r: &mut Reader<'_>) -> Result<()> {
    let len = match r.arr::<1>()?[0] {
        0 => 0,
        1 => 1,
        2 => 2,
        3 | 5 | 10 => 4,
        4 | 6 | 11 => 8,
        7 | 8 | 9 | 12 => u32::from_le_bytes(r.arr()?) as usize,
        t => return Err(SqlError::internal(format!("corrupt row: tag {t}"))),
    };
    r.take(len).map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip() {
        let row = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int16(-3),
            Value::Int32(7),
            Value::Int64(1 << 50),
            Value::Float32(1.5),
            Value::Float64(-2.25),
            Value::Numeric(Decimal::from_str("12.340").unwrap()),
            Value::Text("héllo".into()),
            Value::Bytea(vec![0, 1, 255]),
            Value::Date(-3),
            Value::Timestamp(123_456),
            Value::Jsonb(serde_json::json!({"a": [1, 2]})),
        ];
        let enc = encode_row(&row);
        assert_eq!(decode_row(&enc, row.len()).unwrap(), row);
        assert!(decode_row(&enc[..enc.len() - 1], row.len()).is_err());
        assert!(decode_row(&[9], 1).is_err());
    }

    #[test]
    fn partial_decode_matches_full_decode_on_needed_columns() {
        let row = vec![
            Value::Text("skipped".into()),
            Value::Int32(7),
            Value::Numeric(Decimal::from_str("12.340").unwrap()),
            Value::Null,
            Value::Jsonb(serde_json::json!({"a": 1})),
            Value::Float64(2.5),
        ];
        let enc = encode_row(&row);
        let mut out = vec![Value::Int32(99)];
        for mask in 0u32..64 {
            let needed: Vec<bool> = (0..7).map(|i| mask & (1 << i) != 0).collect();
            decode_row_into(&enc, &needed, &mut out).unwrap();
            assert_eq!(out.len(), 7);
            for (i, v) in out.iter().enumerate() {
                let want = if needed[i] {
                    row.get(i).cloned().unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                assert_eq!(v, &want, "column {i}, mask {mask:b}");
            }
        }
        assert!(decode_row_into(&enc[..enc.len() - 1], &[true; 6], &mut out).is_err());
        assert!(decode_row_into(&enc[..enc.len() - 1], &[false; 6], &mut out).is_err());
    }
}
