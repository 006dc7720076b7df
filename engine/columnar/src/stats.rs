//! Per-chunk statistics (row count; per column: null count, min, max) and the chunk header
//! that carries them, so a scan can skip a chunk from its header alone.
//!
//! Header format v1: `"MH" | version u8 | rows u32 | columns u32 | per column: nulls u32,
//! has_minmax u8, [min scalar, max scalar] | crc32 u32`; a scalar is `tag u8` then i64 / f64
//! bits / (u32 length, bytes).

use std::cmp::Ordering;

use crate::column::{Column, Scalar, Values};
use crate::error::{corrupt, ColumnarError, Result};
use crate::kernels::CmpOp;
use crate::reader::Reader;
use crate::CHUNK_ROWS_MAX;

/// Longest text/bytes value kept as a min or max; longer bounds are not kept at all (a
/// truncated max would need care to stay an upper bound, and long keys bloat headers).
pub const STAT_BYTES_MAX: usize = 64;
/// Columns in one table, at most (bounds header decoding).
pub const COLUMNS_MAX: usize = 1600;
const MAGIC: &[u8; 2] = b"MH";
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnStats {
    pub null_count: u32,
    /// Min and max of the non-NULL values; `None` when all are NULL or bounds were not kept.
    pub min_max: Option<(Scalar, Scalar)>,
}

impl ColumnStats {
    pub fn of(col: &Column) -> ColumnStats {
        let null_count = col.null_count() as u32;
        let mut min: Option<Scalar> = None;
        let mut max: Option<Scalar> = None;
        let mut consider = |s: Scalar| {
            if min
                .as_ref()
                .is_none_or(|m| s.cmp_same(m) == Some(Ordering::Less))
            {
                min = Some(s.clone());
            }
            if max
                .as_ref()
                .is_none_or(|m| s.cmp_same(m) == Some(Ordering::Greater))
            {
                max = Some(s);
            }
        };
        match &col.values {
            Values::Int(v) => {
                let valid = v.iter().enumerate().filter(|(i, _)| col.is_valid(*i));
                let (lo, hi) = valid.fold(
                    (None, None),
                    |(lo, hi): (Option<i64>, Option<i64>), (_, x)| {
                        (
                            Some(lo.map_or(*x, |l| l.min(*x))),
                            Some(hi.map_or(*x, |h| h.max(*x))),
                        )
                    },
                );
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    consider(Scalar::Int(lo));
                    consider(Scalar::Int(hi));
                }
            }
            _ => {
                for i in 0..col.len() {
                    if col.is_valid(i) {
                        consider(col.get(i));
                    }
                }
            }
        }
        let too_long =
            |s: &Option<Scalar>| matches!(s, Some(Scalar::Bytes(b)) if b.len() > STAT_BYTES_MAX);
        let min_max = match (min, max) {
            (lo, hi) if too_long(&lo) || too_long(&hi) => None,
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        ColumnStats {
            null_count,
            min_max,
        }
    }

    /// Whether some row of a chunk with these stats (and `rows` rows) may satisfy
    /// `column op constant`. False only when provably none can.
    pub fn may_match(&self, rows: u32, op: CmpOp, constant: &Scalar) -> bool {
        if self.null_count >= rows || matches!(constant, Scalar::Null) {
            return false; // a comparison with NULL is never true
        }
        let Some((min, max)) = &self.min_max else {
            return true;
        };
        let (Some(c_min), Some(c_max)) = (constant.cmp_same(min), constant.cmp_same(max)) else {
            return true; // different types: no claim
        };
        match op {
            CmpOp::Eq => c_min != Ordering::Less && c_max != Ordering::Greater,
            CmpOp::NotEq => !(c_min == Ordering::Equal && c_max == Ordering::Equal),
            CmpOp::Lt => c_min == Ordering::Greater,
            CmpOp::LtEq => c_min != Ordering::Less,
            CmpOp::Gt => c_max == Ordering::Less,
            CmpOp::GtEq => c_max != Ordering::Greater,
        }
    }
}

/// The header of one chunk: its row count and every column's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMeta {
    pub rows: u32,
    pub columns: Vec<ColumnStats>,
}

impl ChunkMeta {
    pub fn of(columns: &[Column]) -> ChunkMeta {
        let rows = columns.first().map_or(0, Column::len);
        assert!(rows <= CHUNK_ROWS_MAX);
        assert!(columns.iter().all(|c| c.len() == rows), "ragged chunk");
        ChunkMeta {
            rows: rows as u32,
            columns: columns.iter().map(ColumnStats::of).collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&(self.columns.len() as u32).to_le_bytes());
        for c in &self.columns {
            out.extend_from_slice(&c.null_count.to_le_bytes());
            match &c.min_max {
                None => out.push(0),
                Some((lo, hi)) => {
                    out.push(1);
                    put_scalar(lo, &mut out);
                    put_scalar(hi, &mut out);
                }
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(blob: &[u8]) -> Result<ChunkMeta> {
        if blob.len() < 4 {
            return Err(corrupt(0, "short chunk header"));
        }
        let (data, tail) = blob.split_at(blob.len() - 4);
        let expected = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let found = crc32fast::hash(data);
        if expected != found {
            return Err(ColumnarError::Checksum { expected, found });
        }
        let mut r = Reader::new(data);
        if r.take(2)? != MAGIC {
            return Err(corrupt(0, "bad header magic"));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(ColumnarError::Version {
                expected: VERSION,
                found: version,
            });
        }
        let rows = r.count(CHUNK_ROWS_MAX, "rows")? as u32;
        let n = r.count(COLUMNS_MAX, "columns")?;
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            let null_count = r.u32()?;
            let min_max = match r.u8()? {
                0 => None,
                _ => Some((get_scalar(&mut r)?, get_scalar(&mut r)?)),
            };
            columns.push(ColumnStats {
                null_count,
                min_max,
            });
        }
        r.finish()?;
        Ok(ChunkMeta { rows, columns })
    }
}

fn put_scalar(s: &Scalar, out: &mut Vec<u8>) {
    match s {
        Scalar::Null => out.push(0),
        Scalar::Int(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Scalar::Float(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Scalar::Bytes(b) => {
            out.push(3);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn get_scalar(r: &mut Reader<'_>) -> Result<Scalar> {
    let at = r.pos;
    Ok(match r.u8()? {
        0 => Scalar::Null,
        1 => Scalar::Int(r.i64()?),
        2 => Scalar::Float(f64::from_bits(r.u64()?)),
        3 => {
            let n = r.count(STAT_BYTES_MAX, "bound length")?;
            Scalar::Bytes(r.take(n)?.to_vec())
        }
        t => return Err(corrupt(at, format!("scalar tag {t}"))),
    })
}
