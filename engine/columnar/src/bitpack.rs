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
    // Eight spare bytes so every value is OR-ed in as one unaligned 64-bit word (plus a
    // ninth byte when it straddles): the per-bit loop this replaced dominated merges.
    out.resize(start + packed_len(values.len(), width) + 9, 0);
    if width > 0 {
        let buf = &mut out[start..];
        let mut bit = 0usize;
        for &v in values {
            debug_assert!(
                width == 64 || v >> width == 0,
                "value wider than {width} bits"
            );
            let byte = bit / 8;
            let shift = bit % 8;
            let mut word = [0u8; 8];
            word.copy_from_slice(&buf[byte..byte + 8]);
            let merged = u64::from_le_bytes(word) | (v << shift);
            buf[byte..byte + 8].copy_from_slice(&merged.to_le_bytes());
            if shift + width as usize > 64 {
                buf[byte + 8] |= (v >> (64 - shift)) as u8;
            }
            bit += width as usize;
        }
    }
    out.truncate(start + packed_len(values.len(), width));
}

/// The `width`-bit value at bit `bit` of `buf` (little-endian bit order), reading whole
/// words where the buffer allows and zero-padding past its end.
#[inline]
fn extract(buf: &[u8], bit: usize, width: u8, mask: u64) -> u64 {
    let byte = bit / 8;
    let shift = bit % 8;
    let word = match buf.get(byte..byte + 8) {
        Some(w) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a)
        }
        None => {
            let mut a = [0u8; 8];
            let tail = buf.get(byte..).unwrap_or(&[]);
            a[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(a)
        }
    };
    let mut v = word >> shift;
    if shift + width as usize > 64 {
        v |= u64::from(buf.get(byte + 8).copied().unwrap_or(0)) << (64 - shift);
    }
    v & mask
}

pub(crate) fn unpack(r: &mut Reader<'_>, count: usize, width: u8) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(count);
    unpack_with(r, count, width, |v| out.push(v))?;
    Ok(out)
}

/// Unpacks `count` values, handing each to `f` (decoders map them without an
/// intermediate vector).
pub(crate) fn unpack_with(
    r: &mut Reader<'_>,
    count: usize,
    width: u8,
    mut f: impl FnMut(u64),
) -> Result<()> {
    if width > 64 {
        return Err(corrupt(r.pos, format!("bit width {width}")));
    }
    let buf = r.take(packed_len(count, width))?;
    if width == 0 {
        (0..count).for_each(|_| f(0));
        return Ok(());
    }
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let w = width as usize;
    for i in 0..count {
        f(extract(buf, i * w, width, mask));
    }
    Ok(())
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
