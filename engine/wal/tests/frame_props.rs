#![allow(clippy::unwrap_used)]
//! Properties of the record framing: encode/decode round trip, and decoding arbitrary or
//! damaged bytes never panics and never returns records that were not written.

use mantis_storage::BLOCK_SIZE;
use mantis_wal::frame::{
    decode_payload, encode_chunk, inspect_payload, ChunkHeader, CHUNK_HEADER_BYTES,
};
use proptest::prelude::*;

fn records() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..3000)),
        1..12,
    )
}

fn decode_all(buf: &[u8]) -> Option<(ChunkHeader, Vec<mantis_wal::WalRecord>)> {
    let h = ChunkHeader::decode(buf).ok()?;
    let end = CHUNK_HEADER_BYTES.checked_add(h.payload_len as usize)?;
    let payload = buf.get(CHUNK_HEADER_BYTES..end)?;
    let _ = inspect_payload(&h, payload);
    decode_payload(&h, payload).ok().map(|r| (h, r))
}

proptest! {
    #[test]
    fn round_trip(recs in records(), seg in 1u64..u64::MAX / 4, off in 0u64..1000) {
        let first = seg + off;
        let refs: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, p.as_slice())).collect();
        let buf = encode_chunk(seg, first, &refs);
        prop_assert_eq!(buf.len() % BLOCK_SIZE, 0);
        let (h, out) = decode_all(&buf).unwrap();
        prop_assert_eq!(h.segment_first_lsn, seg);
        prop_assert_eq!(h.first_lsn, first);
        prop_assert_eq!(h.chunk_len_bytes() as usize, buf.len());
        prop_assert_eq!(out.len(), recs.len());
        for (i, (r, (k, p))) in out.iter().zip(&recs).enumerate() {
            prop_assert_eq!(r.lsn, first + i as u64);
            prop_assert_eq!(r.kind, *k);
            prop_assert_eq!(&r.payload, p);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..9000)) {
        let _ = decode_all(&bytes);
    }

    #[test]
    fn damaged_chunks_are_rejected(recs in records(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let refs: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, p.as_slice())).collect();
        let mut buf = encode_chunk(1, 1, &refs);
        let h = ChunkHeader::decode(&buf).unwrap();
        // Damage inside header or records (the padding carries nothing).
        let used = CHUNK_HEADER_BYTES + h.payload_len as usize;
        let i = at.index(used);
        buf[i] ^= 1 << bit;
        prop_assert!(decode_all(&buf).is_none(), "flip at {} accepted", i);
    }
}

/// A forged header (valid CRC) with absurd lengths is refused without reading past the end.
#[test]
fn forged_lengths_are_refused() {
    let h = ChunkHeader {
        segment_first_lsn: 1,
        first_lsn: 1,
        record_count: 3,
        payload_len: u32::MAX,
        payload_crc: 0,
        checksum: mantis_wal::ChecksumAlgorithm::Crc32,
    };
    let mut buf = h.encode().to_vec();
    buf.resize(BLOCK_SIZE, 0xff);
    assert!(decode_all(&buf).is_none());
    let h = ChunkHeader {
        record_count: 0,
        payload_len: 17,
        ..h
    };
    assert!(ChunkHeader::decode(&h.encode()).is_err());
}
