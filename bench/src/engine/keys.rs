//! The benchmark's keys and values: generated from an index, so that no phase has to keep a
//! list of ten million keys in memory (that would count against the engine's memory budget).

/// A key is a 4-byte phase prefix and 16 hex digits: 20 bytes, YCSB-like.
pub const KEY_BYTES: usize = 20;

/// The splitmix64 finaliser: a bijection on u64, so distinct indexes give distinct keys, and
/// consecutive indexes land in random order in the key space (no sorted-insert best case).
pub fn mix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of index `i` in the key space named by `prefix` (4 bytes).
pub fn key(prefix: &[u8; 4], i: u64) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = Vec::with_capacity(KEY_BYTES);
    k.extend_from_slice(prefix);
    let m = mix64(i);
    for shift in (0..16).rev() {
        k.push(HEX[((m >> (shift * 4)) & 0xf) as usize]);
    }
    k
}

/// The value of index `i`: `len` bytes, starting with `i` (little endian) when there is room,
/// so a get can check it read the right record, and pseudo-random after it, so that block
/// compression cannot shrink the data set (a compressible set would fit a cache that a real
/// one would not).
pub fn value(i: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&i.to_le_bytes()[..len.min(8)]);
    let mut word = 0u64;
    while v.len() < len {
        let bytes = mix64(i.wrapping_mul(0x100).wrapping_add(word)).to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&bytes[..n]);
        word += 1;
    }
    v
}

pub fn value_matches(i: u64, len: usize, got: &[u8]) -> bool {
    got.len() == len && got == value(i, len).as_slice()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_distinct_fixed_size_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let k = key(b"load", i);
            assert_eq!(k.len(), KEY_BYTES);
            assert!(k.starts_with(b"load"));
            assert!(seen.insert(k));
        }
    }

    #[test]
    fn values_carry_their_index() {
        assert!(value_matches(7, 100, &value(7, 100)));
        assert!(!value_matches(8, 100, &value(7, 100)));
        assert!(!value_matches(7, 99, &value(7, 100)));
        assert_eq!(value(3, 4), vec![3, 0, 0, 0]);
        assert_eq!(value(3, 100).len(), 100);
        assert_ne!(value(3, 100)[8..], value(4, 100)[8..]);
    }
}
