//! Bit-packing of unsigned integers at a fixed width (0..=64 bits), little-endian bit order.

use crate::error::{corrupt, Result};
use crate::reader::Reader;

/// Bits needed to hold `max`.
pub fn width_for(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// Bytes that `count` values of `width` bits occupy.
pub fn packed_len(count: usize, width: u8) -> usize {
    (count * width as usize).div_ceil(8)
}

pub fn pack(values: &[u64], width: u8, out: &mut Vec<u8>) {
    assert!(width <= 64);
    let start = out.len();
    out.resize(start + packed_len(values.len(), width), 0);
    if width == 0 {
        return;
    }
    let buf = &mut out[start..];
    let mut bit = 0usize;
    for &v in values {
        debug_assert!(
            width == 64 || v >> width == 0,
            "value wider than {width} bits"
        );
        let mut remaining = width as usize;
        let mut v = v;
        while remaining > 0 {
            let byte = bit / 8;
            let shift = bit % 8;
            let n = (8 - shift).min(remaining);
            let mask = if n == 8 { 0xFF } else { (1u64 << n) - 1 };
            buf[byte] |= ((v & mask) as u8) << shift;
            v = if n == 64 { 0 } else { v >> n };
            remaining -= n;
            bit += n;
        }
    }
}

pub(crate) fn unpack(r: &mut Reader<'_>, count: usize, width: u8) -> Result<Vec<u64>> {
    if width > 64 {
        return Err(corrupt(r.pos, format!("bit width {width}")));
    }
    let buf = r.take(packed_len(count, width))?;
    let mut out = Vec::with_capacity(count);
    if width == 0 {
        out.resize(count, 0);
        return Ok(out);
    }
    let mut bit = 0usize;
    for _ in 0..count {
        let mut v = 0u64;
        let mut got = 0usize;
        while got < width as usize {
            let byte = bit / 8;
            let shift = bit % 8;
            let n = (8 - shift).min(width as usize - got);
            let part = (u64::from(buf[byte]) >> shift) & ((1u64 << n) - 1);
            v |= part << got;
            got += n;
            bit += n;
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_all_widths() {
        for width in 0..=64u8 {
            let max = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            let vals: Vec<u64> = (0..37u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & max)
                .collect();
            let mut out = Vec::new();
            pack(&vals, width, &mut out);
            assert_eq!(out.len(), packed_len(vals.len(), width));
            let mut r = Reader::new(&out);
            assert_eq!(
                unpack(&mut r, vals.len(), width).unwrap(),
                vals,
                "width {width}"
            );
        }
        assert_eq!(width_for(0), 0);
        assert_eq!(width_for(1), 1);
        assert_eq!(width_for(255), 8);
        assert_eq!(width_for(u64::MAX), 64);
    }
}
