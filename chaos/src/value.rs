//! Self-checking values: every value names its key (by CRC), its version and whether it was
//! written with a TTL, and carries a CRC32 over all of that and its payload, so a torn, mixed-up
//! or misplaced value is recognised on read.
//!
//! Layout: `mc1 <key_crc:08x> <version> <ttl:0|1> <payload_len> <crc:08x>|<payload>`.

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

const MAGIC: &str = "mc1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub version: u64,
    pub ttl: bool,
}

fn crc(key: &[u8], version: u64, ttl: bool, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(&version.to_le_bytes());
    h.update(&[u8::from(ttl)]);
    h.update(payload);
    h.finalize()
}

/// The value for `key` at `version`: `payload_bytes` of pseudo-random bytes derived from both.
pub fn encode(key: &[u8], version: u64, ttl: bool, payload_bytes: usize) -> Vec<u8> {
    let mut payload = vec![0u8; payload_bytes];
    SmallRng::seed_from_u64(version ^ u64::from(crc32fast::hash(key)) << 32)
        .fill_bytes(&mut payload);
    let header = format!(
        "{MAGIC} {:08x} {version} {} {payload_bytes} {:08x}|",
        crc32fast::hash(key),
        u8::from(ttl),
        crc(key, version, ttl, &payload)
    );
    let mut v = header.into_bytes();
    v.extend_from_slice(&payload);
    v
}

/// Checks a value read back for `key`. `Err` says why it is torn or foreign.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Decoded, String> {
    let bar = value
        .iter()
        .take(128)
        .position(|&b| b == b'|')
        .ok_or_else(|| format!("no header in a {}-byte value", value.len()))?;
    let header = std::str::from_utf8(&value[..bar]).map_err(|_| "header not UTF-8".to_string())?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, key_crc, version, ttl, len, sum] = fields[..] else {
        return Err(format!("header {header:?} has {} fields", fields.len()));
    };
    if magic != MAGIC {
        return Err(format!("magic {magic:?}"));
    }
    let parse_hex = |s: &str| u32::from_str_radix(s, 16).map_err(|_| format!("hex {s:?}"));
    if parse_hex(key_crc)? != crc32fast::hash(key) {
        return Err("value belongs to another key".into());
    }
    let version: u64 = version
        .parse()
        .map_err(|_| format!("version {version:?}"))?;
    let ttl = ttl == "1";
    let len: usize = len.parse().map_err(|_| format!("length {len:?}"))?;
    let payload = &value[bar + 1..];
    if payload.len() != len {
        return Err(format!(
            "version {version}: payload {} bytes, header says {len}",
            payload.len()
        ));
    }
    if parse_hex(sum)? != crc(key, version, ttl, payload) {
        return Err(format!("version {version}: checksum mismatch"));
    }
    Ok(Decoded { version, ttl })
}

/// The engine's key → shard hash (FNV-1a 64, `mantis_engine::key_hash`; the shard is
/// `hash % shards`). Copied rather than linked so the harness does not build the engine; the
/// client-fault scenario checks a prediction made with it against the server.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn shard_of(key: &[u8], shards: usize) -> usize {
    (key_hash(key) % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_tears() {
        let v = encode(b"k1", 42, true, 1000);
        assert_eq!(
            decode(b"k1", &v).unwrap(),
            Decoded {
                version: 42,
                ttl: true
            }
        );
        assert!(decode(b"k2", &v).is_err(), "foreign key accepted");
        assert!(
            decode(b"k1", &v[..v.len() - 1]).is_err(),
            "short value accepted"
        );
        let mut flipped = v.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decode(b"k1", &flipped).is_err(), "flipped value accepted");
        let empty = encode(b"k", 1, false, 0);
        assert_eq!(decode(b"k", &empty).unwrap().version, 1);
    }
}
