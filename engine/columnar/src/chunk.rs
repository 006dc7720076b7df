//! One column of one chunk as a self-checking blob (format version 1, little-endian):
//!
//! ```text
//! magic "MC" | version u8 = 1 | phys u8 | encoding u8 | codec u8 | flags u8 (bit 0: validity)
//! rows u32 | raw_len u32 | stored_len u32
//! body: stored_len bytes = codec(validity bitmap (rows bits, if flagged) ++ encoded values)
//! crc32 u32 over everything before it (IEEE, crc32fast)
//! ```
//! The checksum is verified before any field is trusted; decoding is bounds-checked anyway.

use crate::bitpack::{pack, packed_len, unpack};
use crate::column::{Column, PhysType};
use crate::encoding::{self, Encoding};
use crate::error::{corrupt, ColumnarError, Result};
use crate::reader::Reader;
use crate::vector::{DictColumn, Vector};
use crate::CHUNK_ROWS_MAX;

pub const CHUNK_FORMAT_VERSION: u8 = 1;
const MAGIC: &[u8; 2] = b"MC";
const HEADER_BYTES: usize = 2 + 5 + 12;
const FLAG_VALIDITY: u8 = 1;
/// Raw (uncompressed) body bytes of one column chunk, at most: bounds the allocation a
/// decoder makes from a stored length.
pub const CHUNK_RAW_BYTES_MAX: usize = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Lz4,
}

impl Codec {
    fn tag(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
        }
    }
}

/// What `encode_column` chose, for EXPLAIN and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    pub encoding: Encoding,
    pub codec: Codec,
    pub raw_bytes: usize,
    pub stored_bytes: usize,
}

/// Encodes a column chunk with the smallest encoding, compressing with LZ4 when that makes
/// the body smaller.
pub fn encode_column(col: &Column) -> (Vec<u8>, ChunkInfo) {
    let (enc, bytes) = encoding::choose(&col.values);
    encode_column_with(col, enc, bytes)
}

/// Encodes with a given encoding (tests; `None` when it does not apply to the type).
pub fn encode_column_as(col: &Column, enc: Encoding) -> Option<Vec<u8>> {
    let bytes = encoding::encode(&col.values, enc)?;
    Some(encode_column_with(col, enc, bytes).0)
}

fn encode_column_with(col: &Column, enc: Encoding, encoded: Vec<u8>) -> (Vec<u8>, ChunkInfo) {
    let rows = col.len();
    assert!(rows <= CHUNK_ROWS_MAX, "chunk of {rows} rows");
    let mut raw = Vec::with_capacity(encoded.len() + rows / 8 + 1);
    if let Some(v) = &col.validity {
        let bits: Vec<u64> = v.iter().map(|ok| u64::from(*ok)).collect();
        pack(&bits, 1, &mut raw);
    }
    raw.extend_from_slice(&encoded);
    let compressed = lz4_flex::compress(&raw);
    let (codec, body) = if compressed.len() < raw.len() {
        (Codec::Lz4, compressed)
    } else {
        (Codec::None, raw.clone())
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len() + 4);
    out.extend_from_slice(MAGIC);
    out.push(CHUNK_FORMAT_VERSION);
    out.push(col.phys().tag());
    out.push(enc.tag());
    out.push(codec.tag());
    out.push(if col.validity.is_some() {
        FLAG_VALIDITY
    } else {
        0
    });
    out.extend_from_slice(&(rows as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let info = ChunkInfo {
        encoding: enc,
        codec,
        raw_bytes: raw.len(),
        stored_bytes: out.len(),
    };
    (out, info)
}

/// A verified chunk, opened: its type, encoding, rows, validity and raw (decompressed)
/// encoded values.
struct Opened {
    phys: PhysType,
    enc: Encoding,
    rows: usize,
    validity: Option<Vec<bool>>,
    raw: Vec<u8>,
    values_at: usize,
}

/// Verifies the checksum, reads the header and decompresses the body.
fn open(blob: &[u8]) -> Result<Opened> {
    if blob.len() < HEADER_BYTES + 4 {
        return Err(corrupt(0, format!("chunk of {} bytes", blob.len())));
    }
    let (data, tail) = blob.split_at(blob.len() - 4);
    let expected = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let found = crc32fast::hash(data);
    if expected != found {
        return Err(ColumnarError::Checksum { expected, found });
    }
    let mut r = Reader::new(data);
    if r.take(2)? != MAGIC {
        return Err(corrupt(0, "bad magic"));
    }
    let version = r.u8()?;
    if version != CHUNK_FORMAT_VERSION {
        return Err(ColumnarError::Version {
            expected: CHUNK_FORMAT_VERSION,
            found: version,
        });
    }
    let phys = PhysType::from_tag(r.u8()?).ok_or_else(|| corrupt(3, "physical type"))?;
    let enc = Encoding::from_tag(r.u8()?).ok_or_else(|| corrupt(4, "encoding"))?;
    let codec = r.u8()?;
    let flags = r.u8()?;
    let rows = r.count(CHUNK_ROWS_MAX, "rows")?;
    let raw_len = r.count(CHUNK_RAW_BYTES_MAX, "raw length")?;
    let stored_len = r.count(CHUNK_RAW_BYTES_MAX, "stored length")?;
    let body = r.take(stored_len)?;
    r.finish()?;
    let raw = match codec {
        0 => body.to_vec(),
        1 => lz4_flex::decompress(body, raw_len)
            .map_err(|e| corrupt(HEADER_BYTES, format!("lz4: {e}")))?,
        other => return Err(corrupt(5, format!("codec {other}"))),
    };
    if raw.len() != raw_len {
        return Err(corrupt(HEADER_BYTES, "raw length mismatch"));
    }
    let mut body = Reader::new(&raw);
    let validity = if flags & FLAG_VALIDITY != 0 {
        let bits = unpack(&mut body, rows, 1)?;
        Some(bits.into_iter().map(|b| b == 1).collect())
    } else {
        None
    };
    let values_at = if validity.is_some() {
        packed_len(rows, 1)
    } else {
        0
    };
    Ok(Opened {
        phys,
        enc,
        rows,
        validity,
        raw,
        values_at,
    })
}

/// Verifies the checksum and decodes a column chunk.
pub fn decode_column(blob: &[u8]) -> Result<Column> {
    let o = open(blob)?;
    let values = encoding::decode(&o.raw[o.values_at..], o.phys, o.enc, o.rows)?;
    if values.len() != o.rows {
        return Err(corrupt(HEADER_BYTES, "value count mismatch"));
    }
    Ok(Column {
        values,
        validity: o.validity,
    })
}

/// Verifies the checksum and decodes a column chunk for the kernels: a dictionary-encoded
/// text/bytes chunk stays as its dictionary and codes (no value per row is built), any
/// other chunk is decoded into a flat column.
pub fn decode_vector(blob: &[u8]) -> Result<Vector> {
    let o = open(blob)?;
    if o.enc == Encoding::Dictionary && o.phys == PhysType::Bytes {
        let (dict, codes) = encoding::decode_dict(&o.raw[o.values_at..], o.phys, o.rows)?;
        return Ok(Vector::Dict(DictColumn::new(dict, codes, o.validity)));
    }
    let values = encoding::decode(&o.raw[o.values_at..], o.phys, o.enc, o.rows)?;
    if values.len() != o.rows {
        return Err(corrupt(HEADER_BYTES, "value count mismatch"));
    }
    Ok(Vector::Flat(Column {
        values,
        validity: o.validity,
    }))
}
