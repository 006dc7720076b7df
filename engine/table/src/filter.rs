//! The point-lookup filter: an `xorf::Xor16` over a 64-bit hash of every key (false positive
//! rate about 0.002%, about 20 bits per key).
//!
//! ```text
//! filter := seed u64 | block_length u64 | fingerprint_count u64 | fingerprint u16 * count
//! ```
//!
//! `fingerprint_count` must equal `3 * block_length`: xorf indexes the fingerprints with
//! hashes reduced modulo `block_length`, so a filter read from disk is checked before use.

use std::path::Path;

use xorf::{Filter as _, Xor16};

use crate::bytes::{put_u64, Reader};
use crate::error::{Result, TableError};

/// The 64-bit key hash the filter is built on. Part of the format: it must never change for
/// a given `SEGMENT_FORMAT_VERSION`. Words of 8 bytes (little-endian, the last one zero
/// padded) are mixed with two odd constants, seeded with the length; murmur3's fmix64
/// finishes.
pub fn key_hash64(key: &[u8]) -> u64 {
    const P1: u64 = 0x9e37_79b9_7f4a_7c15;
    const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let mut h = P2 ^ (key.len() as u64).wrapping_mul(P1);
    for chunk in key.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        h = (h ^ w.wrapping_mul(P1)).rotate_left(31).wrapping_mul(P2);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Builds the filter from the key hashes collected by the writer (any order). Duplicate
/// hashes (two keys colliding in 64 bits) are removed first: xorf loops forever on them.
pub(crate) fn build(mut hashes: Vec<u64>) -> Xor16 {
    hashes.sort_unstable();
    hashes.dedup();
    Xor16::from(hashes.as_slice())
}

pub(crate) fn encode(filter: &Xor16) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + filter.fingerprints.len() * 2);
    put_u64(&mut out, filter.seed);
    put_u64(&mut out, filter.block_length as u64);
    put_u64(&mut out, filter.fingerprints.len() as u64);
    for fp in filter.fingerprints.iter() {
        out.extend_from_slice(&fp.to_le_bytes());
    }
    out
}

pub(crate) fn decode(file: &Path, offset: u64, raw: &[u8]) -> Result<Xor16> {
    let bad = |reason: String| TableError::corrupt(file, offset, format!("filter: {reason}"));
    let mut r = Reader::new(raw);
    let (Some(seed), Some(block_length), Some(count)) = (r.u64(), r.u64(), r.u64()) else {
        return Err(bad("header overruns the block".into()));
    };
    let fits = usize::try_from(count)
        .ok()
        .filter(|&n| n.checked_mul(2) == Some(r.remaining()));
    let Some(count) = fits else {
        return Err(bad(format!(
            "{count} fingerprints in {} bytes",
            r.remaining()
        )));
    };
    if block_length == 0 || block_length.checked_mul(3) != Some(count as u64) {
        return Err(bad(format!(
            "{count} fingerprints for block length {block_length}"
        )));
    }
    let fingerprints: Box<[u16]> = raw[24..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(Xor16 {
        seed,
        block_length: block_length as usize,
        fingerprints,
    })
}

pub(crate) fn may_contain(filter: &Xor16, key: &[u8]) -> bool {
    filter.contains(&key_hash64(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_length_sensitive() {
        // Pinned values: changing the hash silently breaks every existing segment's filter.
        assert_ne!(key_hash64(b"a"), key_hash64(b"a\0"));
        assert_ne!(key_hash64(b"ab"), key_hash64(b"ba"));
        // Values from an independent implementation (docs/formats.md, "Segment files").
        assert_eq!(key_hash64(b"mantis"), 0xe71e_4fac_a0dc_70aa);
        assert_eq!(key_hash64(b""), 0x0ff2_e696_99c4_857e);
        assert_eq!(key_hash64(b"0123456789"), 0x3a75_1918_e770_62ac);
    }

    #[test]
    fn filter_round_trips_without_false_negatives() {
        let keys: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| format!("k{i}").into_bytes())
            .collect();
        let mut hashes: Vec<u64> = keys.iter().map(|k| key_hash64(k)).collect();
        hashes.push(hashes[0]); // a duplicate must not hang the build
        let f = build(hashes);
        let back = decode(Path::new("f"), 0, &encode(&f)).unwrap();
        assert!(keys.iter().all(|k| may_contain(&back, k)));
        let false_positives = (0..10_000u32)
            .filter(|i| may_contain(&back, format!("absent{i}").as_bytes()))
            .count();
        assert!(false_positives < 10, "{false_positives}");
    }

    #[test]
    fn empty_filter_works_and_bad_shapes_are_refused() {
        let f = build(Vec::new());
        let raw = encode(&f);
        let back = decode(Path::new("f"), 0, &raw).unwrap();
        let _ = may_contain(&back, b"x");
        let mut bad = raw.clone();
        bad[8] ^= 1; // block length no longer matches the count
        assert!(decode(Path::new("f"), 0, &bad).is_err());
        for cut in 0..raw.len() {
            assert!(decode(Path::new("f"), 0, &raw[..cut]).is_err());
        }
    }
}
