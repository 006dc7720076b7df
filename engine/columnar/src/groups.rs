//! Group ids of a chunk's rows without a hash lookup per row: when every GROUP BY column is
//! dictionary-coded or an integer column of narrow range within the chunk, each row gets a
//! dense *local code* (mixed radix over the columns' codes, NULL its own code), and each
//! local code is resolved to a group once per chunk. Otherwise `None`, and the caller hashes
//! each row's key bytes.

use crate::column::{Column, Values};
use crate::vector::Vector;

/// Distinct local codes one chunk may use on the dense path, at most: the slot table is
/// this many u32 (256 KiB), small next to a decoded chunk.
pub const LOCAL_CODES_MAX: usize = 1 << 16;

/// Per selected row, its local code under one column, and how many codes the column uses.
fn column_codes(col: &Vector, rows: &[u32]) -> Option<(Vec<u32>, usize)> {
    match col {
        Vector::Dict(d) => {
            let null = d.dict.len() as u32;
            let codes = rows
                .iter()
                .map(|r| {
                    let r = *r as usize;
                    if d.is_valid(r) {
                        d.codes[r]
                    } else {
                        null
                    }
                })
                .collect();
            Some((codes, d.dict.len() + 1))
        }
        Vector::Flat(c) => int_codes(c, rows),
    }
}

fn int_codes(c: &Column, rows: &[u32]) -> Option<(Vec<u32>, usize)> {
    let Values::Int(v) = &c.values else {
        return None;
    };
    let valid = |r: usize| c.is_valid(r);
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for &r in rows {
        let r = r as usize;
        if valid(r) {
            lo = lo.min(v[r]);
            hi = hi.max(v[r]);
        }
    }
    if lo > hi {
        // Every selected row is NULL: one code.
        return Some((vec![0; rows.len()], 1));
    }
    let range = (i128::from(hi) - i128::from(lo)) as u128;
    if range >= LOCAL_CODES_MAX as u128 {
        return None;
    }
    let null = range as u32 + 1;
    let codes = rows
        .iter()
        .map(|r| {
            let r = *r as usize;
            if valid(r) {
                v[r].wrapping_sub(lo) as u32
            } else {
                null
            }
        })
        .collect();
    Some((codes, range as usize + 2))
}

/// Each selected row's local code over all `cols`, and the number of codes, when the dense
/// path applies.
pub fn local_codes(cols: &[&Vector], rows: &[u32]) -> Option<(Vec<u32>, usize)> {
    let mut out = vec![0u32; rows.len()];
    let mut card = 1usize;
    for c in cols {
        let (codes, k) = column_codes(c, rows)?;
        card = card.checked_mul(k).filter(|n| *n <= LOCAL_CODES_MAX)?;
        let k = k as u32;
        for (o, c) in out.iter_mut().zip(codes) {
            *o = *o * k + c;
        }
    }
    Some((out, card))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::column::{PhysType, Scalar};

    #[test]
    fn equal_keys_share_a_code_and_distinct_keys_do_not() {
        let a = Column::from_scalars(
            PhysType::Int,
            &[Scalar::Int(5), Scalar::Null, Scalar::Int(7), Scalar::Int(5)],
        )
        .unwrap();
        let b = Column::from_scalars(
            PhysType::Int,
            &[
                Scalar::Int(1),
                Scalar::Int(1),
                Scalar::Int(1),
                Scalar::Int(2),
            ],
        )
        .unwrap();
        let (va, vb) = (Vector::Flat(a), Vector::Flat(b));
        let (codes, card) = local_codes(&[&va, &vb], &[0, 1, 2, 3]).unwrap();
        assert!(codes.iter().all(|c| (*c as usize) < card));
        let mut seen = codes.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4);
        let (again, _) = local_codes(&[&va], &[0, 3, 1]).unwrap();
        assert_eq!(again[0], again[1]);
        assert_ne!(again[0], again[2]);
        let wide =
            Column::from_scalars(PhysType::Int, &[Scalar::Int(0), Scalar::Int(1 << 40)]).unwrap();
        assert!(local_codes(&[&Vector::Flat(wide)], &[0, 1]).is_none());
    }
}
