//! The point-lookup filter: an `xorf::BinaryFuse16` over a 64-bit hash of every key (false
//! positive rate about 0.0015%, about 18 bits per key).
//!
//! ```text
//! filter := seed u64 | segment_length u32 | segment_length_mask u32
//!         | segment_count_length u32 | fingerprint_count u64 | fingerprint u16 * count
//! ```
//!
//! The shape is checked before a filter read from disk is used (see `decode`): xorf indexes
//! the fingerprints without bounds it could trust.

use std::path::Path;

use xorf::{BinaryFuse16, Descriptor, Filter as _};

use crate::bytes::{put_u32, put_u64, Reader};
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
/// hashes (two keys colliding in 64 bits) are removed first: binary fuse construction fails
/// on them. Why BinaryFuse16 and not Xor16: Xor16's construction needs about 130 bytes per key
/// while it runs (a compaction over millions of keys peaked at hundreds of MiB); this one needs
/// about 36 (the hashes plus five arrays of about 1.13 × keys), and the filter is 10% smaller.
pub(crate) fn build(file: &Path, mut hashes: Vec<u64>) -> Result<BinaryFuse16> {
    hashes.sort_unstable();
    hashes.dedup();
    BinaryFuse16::try_from(hashes.as_slice()).map_err(|reason| TableError::FilterBuild {
        file: file.to_path_buf(),
        keys: hashes.len() as u64,
        reason,
    })
}

pub(crate) fn encode(filter: &BinaryFuse16) -> Vec<u8> {
    let d = &filter.descriptor;
    let mut out = Vec::with_capacity(FILTER_HEADER_BYTES + filter.fingerprints.len() * 2);
    put_u64(&mut out, d.seed);
    put_u32(&mut out, d.segment_length);
    put_u32(&mut out, d.segment_length_mask);
    put_u32(&mut out, d.segment_count_length);
    put_u64(&mut out, filter.fingerprints.len() as u64);
    for fp in filter.fingerprints.iter() {
        out.extend_from_slice(&fp.to_le_bytes());
    }
    out
}

/// seed u64 | segment_length u32 | segment_length_mask u32 | segment_count_length u32 | count u64
const FILTER_HEADER_BYTES: usize = 8 + 4 + 4 + 4 + 8;

pub(crate) fn decode(file: &Path, offset: u64, raw: &[u8]) -> Result<BinaryFuse16> {
    let bad = |reason: String| TableError::corrupt(file, offset, format!("filter: {reason}"));
    let mut r = Reader::new(raw);
    let (Some(seed), Some(length), Some(mask), Some(count_length), Some(count)) =
        (r.u64(), r.u32(), r.u32(), r.u32(), r.u64())
    else {
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
    // The lookup indexes `h0 < count_length`, then `h0 + length` and `h0 + 2 * length`, each
    // XORed with a value `<= mask`: every index stays below `count_length + 2 * length` only
    // if `length` is a power of two, `mask = length - 1` and `count_length` is a multiple of
    // `length`. A filter read from disk is checked against exactly that before it is used.
    let shape_ok = length.is_power_of_two()
        && mask == length - 1
        && count_length % length == 0
        && u64::from(count_length) + 2 * u64::from(length) == count as u64
        && count as u64 <= u64::from(u32::MAX);
    if !shape_ok {
        return Err(bad(format!(
            "{count} fingerprints for segment length {length}, mask {mask:#x}, \
             segment count length {count_length}"
        )));
    }
    let fingerprints: Box<[u16]> = raw[FILTER_HEADER_BYTES..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(BinaryFuse16 {
        descriptor: Descriptor {
            seed,
            segment_length: length,
            segment_length_mask: mask,
            segment_count_length: count_length,
        },
        fingerprints,
    })
}

pub(crate) fn may_contain(filter: &BinaryFuse16, key: &[u8]) -> bool {
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
        let f = build(Path::new("f"), hashes).unwrap();
        let back = decode(Path::new("f"), 0, &encode(&f)).unwrap();
        assert!(keys.iter().all(|k| may_contain(&back, k)));
        let false_positives = (0..10_000u32)
            .filter(|i| may_contain(&back, format!("absent{i}").as_bytes()))
            .count();
        assert!(false_positives < 10, "{false_positives}");
    }

    #[test]
    fn every_small_size_builds_and_round_trips() {
        // Binary fuse sizing has special cases for tiny inputs (segment length 4, one
        // segment): a segment with 1..=64 keys is common (a small flush).
        for n in 0..=64u32 {
            let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("s{i}").into_bytes()).collect();
            let hashes = keys.iter().map(|k| key_hash64(k)).collect();
            let f = build(Path::new("f"), hashes).unwrap();
            let back = decode(Path::new("f"), 0, &encode(&f)).unwrap();
            assert!(keys.iter().all(|k| may_contain(&back, k)), "n = {n}");
        }
    }

    #[test]
    fn empty_filter_works_and_bad_shapes_are_refused() {
        let f = build(Path::new("f"), Vec::new()).unwrap();
        let raw = encode(&f);
        let back = decode(Path::new("f"), 0, &raw).unwrap();
        let _ = may_contain(&back, b"x");
        let mut bad = raw.clone();
        bad[8] ^= 1; // segment length no longer a power of two matching the count
        assert!(decode(Path::new("f"), 0, &bad).is_err());
        for cut in 0..raw.len() {
            assert!(decode(Path::new("f"), 0, &raw[..cut]).is_err());
        }
    }
}
