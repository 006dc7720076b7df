//! Value encodings of one column chunk. Each is a pure function pair; `choose` tries every
//! encoding that applies to the physical type and keeps the smallest output, so a chunk of
//! sorted timestamps ends up delta-encoded, a low-cardinality text column dictionary-encoded,
//! a flag column bit-packed at one bit, and a column of repeats run-length encoded.

use std::collections::HashMap;

use crate::bitpack::{pack, unpack, unpack_with, width_for};
use crate::column::{PhysType, Values};
use crate::error::{corrupt, Result};
use crate::reader::Reader;
use crate::CHUNK_ROWS_MAX;

/// Bytes of one text/bytea value, at most (a chunk value is a KV value; the engine caps those).
pub const VALUE_BYTES_MAX: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Plain,
    Dictionary,
    RunLength,
    /// Integers only: first value, then frame-of-reference bit-packed differences.
    Delta,
    /// Integers only: frame of reference (the minimum) and bit-packed offsets.
    BitPack,
}

impl Encoding {
    pub const ALL: [Encoding; 5] = [
        Encoding::Plain,
        Encoding::BitPack,
        Encoding::Delta,
        Encoding::RunLength,
        Encoding::Dictionary,
    ];

    pub fn tag(self) -> u8 {
        match self {
            Encoding::Plain => 0,
            Encoding::Dictionary => 1,
            Encoding::RunLength => 2,
            Encoding::Delta => 3,
            Encoding::BitPack => 4,
        }
    }

    pub fn from_tag(t: u8) -> Option<Encoding> {
        Encoding::ALL.into_iter().find(|e| e.tag() == t)
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::Dictionary => "dictionary",
            Encoding::RunLength => "rle",
            Encoding::Delta => "delta",
            Encoding::BitPack => "bitpack",
        }
    }

    pub fn applies_to(self, phys: PhysType) -> bool {
        match self {
            Encoding::Delta | Encoding::BitPack => phys == PhysType::Int,
            _ => true,
        }
    }
}

/// Encodes `values` with `enc`; `None` when the encoding does not apply to the type.
pub fn encode(values: &Values, enc: Encoding) -> Option<Vec<u8>> {
    assert!(values.len() <= CHUNK_ROWS_MAX, "chunk too long");
    if !enc.applies_to(values.phys()) {
        return None;
    }
    let mut out = Vec::new();
    match (values, enc) {
        (Values::Int(v), Encoding::Plain) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        (Values::Int(v), Encoding::BitPack) => put_for(v, &mut out),
        (Values::Int(v), Encoding::Delta) => {
            if let Some(first) = v.first() {
                out.extend_from_slice(&first.to_le_bytes());
                let deltas: Vec<i64> = v.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
                put_for(&deltas, &mut out);
            }
        }
        (Values::Float(v), Encoding::Plain) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        (Values::Bytes(v), Encoding::Plain) => v.iter().for_each(|b| put_bytes(b, &mut out)),
        (_, Encoding::RunLength) => put_rle(values, &mut out),
        (_, Encoding::Dictionary) => put_dict(values, &mut out),
        _ => return None,
    }
    Some(out)
}

/// Decodes `count` values of type `phys` encoded with `enc`, consuming all of `bytes`.
pub fn decode(bytes: &[u8], phys: PhysType, enc: Encoding, count: usize) -> Result<Values> {
    if count > CHUNK_ROWS_MAX {
        return Err(corrupt(0, format!("row count {count}")));
    }
    if !enc.applies_to(phys) {
        return Err(corrupt(0, format!("{} on {phys:?}", enc.name())));
    }
    let mut r = Reader::new(bytes);
    let values = match (phys, enc) {
        (PhysType::Int, Encoding::Plain) => {
            let mut v = Vec::with_capacity(count);
            for _ in 0..count {
                v.push(r.i64()?);
            }
            Values::Int(v)
        }
        (PhysType::Int, Encoding::BitPack) => Values::Int(get_for(&mut r, count)?),
        (PhysType::Int, Encoding::Delta) => {
            let mut v = Vec::with_capacity(count);
            if count > 0 {
                let mut cur = r.i64()?;
                v.push(cur);
                for d in get_for(&mut r, count - 1)? {
                    cur = cur.wrapping_add(d);
                    v.push(cur);
                }
            }
            Values::Int(v)
        }
        (PhysType::Float, Encoding::Plain) => {
            let mut v = Vec::with_capacity(count);
            for _ in 0..count {
                v.push(f64::from_bits(r.u64()?));
            }
            Values::Float(v)
        }
        (PhysType::Bytes, Encoding::Plain) => {
            let mut v = Vec::with_capacity(count);
            for _ in 0..count {
                v.push(get_bytes(&mut r)?);
            }
            Values::Bytes(v)
        }
        (_, Encoding::RunLength) => get_rle(&mut r, phys, count)?,
        (_, Encoding::Dictionary) => get_dict(&mut r, phys, count)?,
        _ => return Err(corrupt(0, format!("{} on {phys:?}", enc.name()))),
    };
    r.finish()?;
    Ok(values)
}

/// The smallest encoding of `values` and its bytes (ties go to the earlier, simpler one).
pub fn choose(values: &Values) -> (Encoding, Vec<u8>) {
    let mut best: Option<(Encoding, Vec<u8>)> = None;
    for enc in Encoding::ALL {
        if let Some(bytes) = encode(values, enc) {
            if best.as_ref().is_none_or(|(_, b)| bytes.len() < b.len()) {
                best = Some((enc, bytes));
            }
        }
    }
    // Plain applies to every type, so there is always a candidate.
    best.unwrap_or((Encoding::Plain, Vec::new()))
}

/// Frame of reference: min, bit width, then (v - min) packed.
fn put_for(v: &[i64], out: &mut Vec<u8>) {
    let min = v.iter().copied().min().unwrap_or(0);
    let max = v.iter().copied().max().unwrap_or(0);
    let range = (i128::from(max) - i128::from(min)) as u64;
    let width = width_for(range);
    out.extend_from_slice(&min.to_le_bytes());
    out.push(width);
    let offsets: Vec<u64> = v.iter().map(|x| x.wrapping_sub(min) as u64).collect();
    pack(&offsets, width, out);
}

fn get_for(r: &mut Reader<'_>, count: usize) -> Result<Vec<i64>> {
    let min = r.i64()?;
    let width = r.u8()?;
    let mut out = Vec::with_capacity(count);
    unpack_with(r, count, width, |o| out.push(min.wrapping_add(o as i64)))?;
    Ok(out)
}

fn put_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn get_bytes(r: &mut Reader<'_>) -> Result<Vec<u8>> {
    let len = r.count(VALUE_BYTES_MAX, "value length")?;
    Ok(r.take(len)?.to_vec())
}

/// Distinct values of a column, in first-seen order, and each row's code.
fn dictionary(values: &Values) -> (Values, Vec<u64>) {
    fn build<K: std::hash::Hash + Eq, T: Clone>(
        v: &[T],
        key: impl Fn(&T) -> K,
    ) -> (Vec<T>, Vec<u64>) {
        let mut index: HashMap<K, u64> = HashMap::new();
        let mut dict = Vec::new();
        let codes = v
            .iter()
            .map(|x| {
                *index.entry(key(x)).or_insert_with(|| {
                    dict.push(x.clone());
                    dict.len() as u64 - 1
                })
            })
            .collect();
        (dict, codes)
    }
    match values {
        Values::Int(v) => {
            let (d, c) = build(v, |x| *x);
            (Values::Int(d), c)
        }
        // Keyed by the exact bits so -0.0 and NaN payloads survive the round trip.
        Values::Float(v) => {
            let (d, c) = build(v, |x| x.to_bits());
            (Values::Float(d), c)
        }
        Values::Bytes(v) => {
            let (d, c) = build(v, |x| x.clone());
            (Values::Bytes(d), c)
        }
    }
}

/// Values stored compactly in a dictionary or run list: ints frame-of-reference packed,
/// floats as bits, bytes length-prefixed.
fn put_list(values: &Values, out: &mut Vec<u8>) {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    match values {
        Values::Int(v) => put_for(v, out),
        Values::Float(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        Values::Bytes(v) => v.iter().for_each(|b| put_bytes(b, out)),
    }
}

fn get_list(r: &mut Reader<'_>, phys: PhysType) -> Result<Values> {
    let n = r.count(CHUNK_ROWS_MAX, "list length")?;
    Ok(match phys {
        PhysType::Int => Values::Int(get_for(r, n)?),
        PhysType::Float => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(f64::from_bits(r.u64()?));
            }
            Values::Float(v)
        }
        PhysType::Bytes => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(get_bytes(r)?);
            }
            Values::Bytes(v)
        }
    })
}

fn put_dict(values: &Values, out: &mut Vec<u8>) {
    let (dict, codes) = dictionary(values);
    put_list(&dict, out);
    let width = width_for(dict.len().saturating_sub(1) as u64);
    out.push(width);
    pack(&codes, width, out);
}

fn get_dict(r: &mut Reader<'_>, phys: PhysType, count: usize) -> Result<Values> {
    let (dict, codes) = get_dict_codes(r, phys, count)?;
    Ok(gather(&dict, codes.iter().map(|c| *c as usize)))
}

/// The dictionary and the checked per-row codes of a dictionary-encoded chunk.
fn get_dict_codes(r: &mut Reader<'_>, phys: PhysType, count: usize) -> Result<(Values, Vec<u32>)> {
    let dict = get_list(r, phys)?;
    let width = r.u8()?;
    let at = r.pos;
    let mut codes = Vec::with_capacity(count);
    let mut bad = None;
    unpack_with(r, count, width, |c| {
        if c as usize >= dict.len() {
            bad = Some(c);
        }
        codes.push(c as u32);
    })?;
    if let Some(bad) = bad {
        return Err(corrupt(
            at,
            format!("code {bad} past a {}-entry dictionary", dict.len()),
        ));
    }
    Ok((dict, codes))
}

/// Decodes a dictionary-encoded chunk body (`count` rows) into its dictionary and codes,
/// without building one value per row: filters and GROUP BY then work on the codes.
pub fn decode_dict(bytes: &[u8], phys: PhysType, count: usize) -> Result<(Values, Vec<u32>)> {
    if count > CHUNK_ROWS_MAX {
        return Err(corrupt(0, format!("row count {count}")));
    }
    let mut r = Reader::new(bytes);
    let out = get_dict_codes(&mut r, phys, count)?;
    r.finish()?;
    Ok(out)
}

/// `src[i]` for each index, as a new vector.
fn gather(src: &Values, idx: impl Iterator<Item = usize>) -> Values {
    match src {
        Values::Int(v) => Values::Int(idx.map(|i| v[i]).collect()),
        Values::Float(v) => Values::Float(idx.map(|i| v[i]).collect()),
        Values::Bytes(v) => Values::Bytes(idx.map(|i| v[i].clone()).collect()),
    }
}

/// Runs: (first row index of each run), as the run values plus packed run lengths.
fn put_rle(values: &Values, out: &mut Vec<u8>) {
    let n = values.len();
    let same = |a: usize, b: usize| match values {
        Values::Int(v) => v[a] == v[b],
        Values::Float(v) => v[a].to_bits() == v[b].to_bits(),
        Values::Bytes(v) => v[a] == v[b],
    };
    let mut starts = Vec::new();
    let mut lens: Vec<u64> = Vec::new();
    for i in 0..n {
        if i > 0 && same(i - 1, i) {
            if let Some(l) = lens.last_mut() {
                *l += 1;
            }
        } else {
            starts.push(i);
            lens.push(1);
        }
    }
    put_list(&gather(values, starts.into_iter()), out);
    let width = width_for(lens.iter().copied().max().unwrap_or(0));
    out.push(width);
    pack(&lens, width, out);
}

fn get_rle(r: &mut Reader<'_>, phys: PhysType, count: usize) -> Result<Values> {
    let runs = get_list(r, phys)?;
    let width = r.u8()?;
    let at = r.pos;
    let lens = unpack(r, runs.len(), width)?;
    let total = lens.iter().fold(0u64, |a, l| a.saturating_add(*l));
    if total != count as u64 {
        return Err(corrupt(
            at,
            format!("runs cover {total} rows, chunk has {count}"),
        ));
    }
    let idx = lens
        .iter()
        .enumerate()
        .flat_map(|(run, len)| std::iter::repeat_n(run, *len as usize));
    Ok(gather(&runs, idx))
}
