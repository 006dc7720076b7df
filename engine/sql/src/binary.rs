//! PostgreSQL binary wire formats of the supported types (what `send`/`recv` functions do).

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::{state, Result, SqlError};
use crate::types::{SqlType, Value};

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;

pub fn to_binary(v: &Value) -> Option<Vec<u8>> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => vec![u8::from(*b)],
        Value::Int16(x) => x.to_be_bytes().to_vec(),
        Value::Int32(x) => x.to_be_bytes().to_vec(),
        Value::Int64(x) => x.to_be_bytes().to_vec(),
        Value::Float32(x) => x.to_be_bytes().to_vec(),
        Value::Float64(x) => x.to_be_bytes().to_vec(),
        Value::Numeric(d) => numeric_to_binary(d),
        Value::Text(s) => s.as_bytes().to_vec(),
        Value::Bytea(b) => b.clone(),
        Value::Date(d) => d.to_be_bytes().to_vec(),
        Value::Timestamp(t) => t.to_be_bytes().to_vec(),
        Value::Jsonb(j) => {
            let mut out = vec![1u8];
            out.extend_from_slice(j.to_string().as_bytes());
            out
        }
    })
}

fn bad(ty: &SqlType) -> SqlError {
    SqlError::new(
        state::INVALID_BINARY_REPRESENTATION,
        format!("incorrect binary data format for type {}", ty.pg_name()),
    )
}

fn fixed<const N: usize>(ty: &SqlType, b: &[u8]) -> Result<[u8; N]> {
    b.try_into().map_err(|_| bad(ty))
}

pub fn from_binary(ty: &SqlType, b: &[u8]) -> Result<Value> {
    Ok(match ty {
        SqlType::Bool => Value::Bool(fixed::<1>(ty, b)?[0] != 0),
        SqlType::Int16 => Value::Int16(i16::from_be_bytes(fixed(ty, b)?)),
        SqlType::Int32 => Value::Int32(i32::from_be_bytes(fixed(ty, b)?)),
        SqlType::Int64 => Value::Int64(i64::from_be_bytes(fixed(ty, b)?)),
        SqlType::Float32 => Value::Float32(f32::from_be_bytes(fixed(ty, b)?)),
        SqlType::Float64 => Value::Float64(f64::from_be_bytes(fixed(ty, b)?)),
        SqlType::Numeric => Value::Numeric(numeric_from_binary(b).ok_or_else(|| bad(ty))?),
        SqlType::Date => Value::Date(i32::from_be_bytes(fixed(ty, b)?)),
        SqlType::Timestamp => Value::Timestamp(i64::from_be_bytes(fixed(ty, b)?)),
        SqlType::Bytea => Value::Bytea(b.to_vec()),
        SqlType::Jsonb => {
            let (ver, rest) = b.split_first().ok_or_else(|| bad(ty))?;
            if *ver != 1 {
                return Err(bad(ty));
            }
            let s = std::str::from_utf8(rest).map_err(|_| bad(ty))?;
            Value::Jsonb(serde_json::from_str(s).map_err(|_| bad(ty))?)
        }
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Unknown => {
            let s = std::str::from_utf8(b).map_err(|_| {
                SqlError::new("22021", "invalid byte sequence for encoding \"UTF8\"")
            })?;
            crate::cast::cast(Value::Text(s.to_string()), ty, false)?
        }
    })
}

/// PostgreSQL's numeric send format: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric_to_binary(d: &Decimal) -> Vec<u8> {
    let dscale = d.scale() as u16;
    let s = d.abs().to_string();
    let (int_part, frac_part) = s.split_once('.').unwrap_or((&s, ""));
    let int_part = int_part.trim_start_matches('0');
    // Pad the integer part on the left and the fraction on the right to groups of four.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let int_digits = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_digits = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let mut groups: Vec<u16> = Vec::new();
    for chunk in int_digits
        .as_bytes()
        .chunks(4)
        .chain(frac_digits.as_bytes().chunks(4))
    {
        let g = chunk
            .iter()
            .fold(0u16, |acc, c| acc * 10 + u16::from(c - b'0'));
        groups.push(g);
    }
    let mut weight = (int_digits.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign = if d.is_sign_negative() && !d.is_zero() {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as u16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

fn numeric_from_binary(b: &[u8]) -> Option<Decimal> {
    let word = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])) };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    if sign == NUMERIC_NAN || b.len() != 8 + 2 * ndigits {
        return None;
    }
    let mut int_s = String::new();
    let mut frac_s = String::new();
    for i in 0..ndigits {
        let g = word(8 + 2 * i)?;
        let pos = weight as i32 - i as i32;
        if pos >= 0 {
            int_s.push_str(&format!("{g:04}"));
        } else {
            if frac_s.is_empty() {
                // Leading zero groups between the point and the first stored digit.
                for _ in 0..(-pos - 1) {
                    frac_s.push_str("0000");
                }
            }
            frac_s.push_str(&format!("{g:04}"));
        }
    }
    // Trailing zero groups of the integer part that were not stored.
    if weight >= 0 {
        let stored_int = (0..ndigits)
            .filter(|i| weight as i32 - *i as i32 >= 0)
            .count();
        for _ in stored_int..=(weight as usize) {
            int_s.push_str("0000");
        }
    }
    if int_s.is_empty() {
        int_s.push('0');
    }
    while frac_s.len() < dscale {
        frac_s.push('0');
    }
    frac_s.truncate(dscale);
    let text = if frac_s.is_empty() {
        int_s
    } else {
        format!("{int_s}.{frac_s}")
    };
    let mut d = Decimal::from_str(&text).ok()?;
    if sign == NUMERIC_NEG {
        d.set_sign_negative(true);
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numeric_round_trip() {
        for s in [
            "0",
            "1",
            "-1.5",
            "12345.6789",
            "10000",
            "0.0001",
            "-0.00012",
            "99999999.00",
        ] {
            let d = Decimal::from_str(s).unwrap();
            let b = numeric_to_binary(&d);
            assert_eq!(numeric_from_binary(&b).unwrap(), d, "{s}");
            assert_eq!(
                numeric_from_binary(&b).unwrap().to_string(),
                d.to_string(),
                "{s}"
            );
        }
        // PostgreSQL's encoding of 12345.6789: 3 digits, weight 1, scale 4: 1 2345 6789.
        let b = numeric_to_binary(&Decimal::from_str("12345.6789").unwrap());
        assert_eq!(
            b,
            vec![0, 3, 0, 1, 0, 0, 0, 4, 0, 1, 0x09, 0x29, 0x1a, 0x85]
        );
    }

    #[test]
    fn ints_and_errors() {
        let v = Value::Int32(-7);
        let b = to_binary(&v).unwrap();
        assert_eq!(from_binary(&SqlType::Int32, &b).unwrap(), v);
        assert_eq!(
            from_binary(&SqlType::Int32, &[1, 2]).unwrap_err().sqlstate,
            "22P03"
        );
    }
}
