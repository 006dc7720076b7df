//! The footer: the last [`FOOTER_BYTES`] of every segment file (which is padded to 4 KiB,
//! with zeros between the last meta block and the footer).
//!
//! ```text
//!   0 data_len u64        bytes of blocks before the padding
//!   8 index  offset u64 | len u32 | crc u32
//!  24 filter offset u64 | len u32 | crc u32
//!  40 props  offset u64 | len u32 | crc u32
//!  56 block_count u64
//!  64 entry_count u64
//!  72 checksum algorithm u8   of every block trailer (v3; 1 CRC32, 2 MD5, 3 SHA-256; zero in v2 = CRC32)
//!  73 reserved, 39 zero bytes
//! 112 format_version u32
//! 116 footer_crc u32     CRC32 of bytes 0..116
//! 120 magic u64          SEGMENT_MAGIC, big-endian: the file ends with "MSEGMENT"
//! ```
//!
//! The footer size and the positions of version, CRC and magic are fixed across format
//! versions, so a reader can always tell "not a segment" from "damaged" from "too new".

use std::path::Path;

use mantis_integrity::Algorithm;
use mantis_storage::format::{SEGMENT_FORMAT_VERSION, SEGMENT_FORMAT_VERSION_MIN, SEGMENT_MAGIC};

use crate::bytes::{put_u32, put_u64, Reader};
use crate::error::{Result, TableError};
use crate::index::BlockHandle;

pub const FOOTER_BYTES: usize = 128;
const ALGORITHM_AT: usize = 72;
const VERSION_AT: usize = 112;
const CRC_AT: usize = 116;
const MAGIC_AT: usize = 120;

/// A meta block's place and checksum, as the footer records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetaHandle {
    pub(crate) handle: BlockHandle,
    pub(crate) crc: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) data_len: u64,
    pub(crate) index: MetaHandle,
    pub(crate) filter: MetaHandle,
    pub(crate) props: MetaHandle,
    pub(crate) block_count: u64,
    pub(crate) entry_count: u64,
    /// What guards every block of the file (the footer itself is always CRC32).
    pub(crate) checksum: Algorithm,
}

impl Footer {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_BYTES);
        put_u64(&mut out, self.data_len);
        for m in [self.index, self.filter, self.props] {
            put_u64(&mut out, m.handle.offset);
            put_u32(&mut out, m.handle.len);
            put_u32(&mut out, m.crc);
        }
        put_u64(&mut out, self.block_count);
        put_u64(&mut out, self.entry_count);
        out.push(self.checksum.id());
        out.resize(VERSION_AT, 0);
        put_u32(&mut out, SEGMENT_FORMAT_VERSION);
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        out.extend_from_slice(&SEGMENT_MAGIC.to_be_bytes());
        assert_eq!(out.len(), FOOTER_BYTES);
        out
    }

    /// Checks magic, then CRC, then version (in that order: a damaged footer is reported as
    /// damaged, not as a version from the future). `offset` is where the footer starts.
    pub(crate) fn decode(file: &Path, offset: u64, raw: &[u8]) -> Result<Footer> {
        if raw.len() != FOOTER_BYTES {
            return Err(TableError::corrupt(file, offset, "footer truncated"));
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&raw[MAGIC_AT..]);
        let magic = u64::from_be_bytes(magic);
        if magic != SEGMENT_MAGIC {
            return Err(TableError::BadMagic {
                file: file.to_path_buf(),
                offset: offset + MAGIC_AT as u64,
                found: magic,
            });
        }
        let mut r = Reader::new(&raw[VERSION_AT..MAGIC_AT]);
        let (version, expected) = (r.u32().unwrap_or(0), r.u32().unwrap_or(0));
        let found = crc32fast::hash(&raw[..CRC_AT]);
        if found != expected {
            return Err(TableError::ChecksumMismatch {
                file: file.to_path_buf(),
                offset,
                expected,
                found,
            });
        }
        if !(SEGMENT_FORMAT_VERSION_MIN..=SEGMENT_FORMAT_VERSION).contains(&version) {
            return Err(TableError::UnsupportedVersion {
                file: file.to_path_buf(),
                found: version,
                supported: SEGMENT_FORMAT_VERSION,
            });
        }
        let checksum = match (version, raw[ALGORITHM_AT]) {
            // Version 2 had no algorithm byte: zero there, and every block is CRC32.
            (2, 0) => Algorithm::Crc32,
            (2, other) => {
                return Err(TableError::corrupt(
                    file,
                    offset + ALGORITHM_AT as u64,
                    format!("version 2 footer with algorithm byte {other}"),
                ))
            }
            (_, id) => Algorithm::from_id(id).map_err(|e| {
                TableError::corrupt(file, offset + ALGORITHM_AT as u64, e.to_string())
            })?,
        };
        Self::decode_fields(raw, checksum)
            .ok_or_else(|| TableError::corrupt(file, offset, "footer fields unreadable"))
    }

    fn decode_fields(raw: &[u8], checksum: Algorithm) -> Option<Footer> {
        let mut r = Reader::new(raw);
        let data_len = r.u64()?;
        let mut metas = [MetaHandle {
            handle: BlockHandle { offset: 0, len: 0 },
            crc: 0,
        }; 3];
        for m in &mut metas {
            m.handle.offset = r.u64()?;
            m.handle.len = r.u32()?;
            m.crc = r.u32()?;
        }
        let block_count = r.u64()?;
        let entry_count = r.u64()?;
        let [index, filter, props] = metas;
        Some(Footer {
            data_len,
            index,
            filter,
            props,
            block_count,
            entry_count,
            checksum,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        let m = |offset, len, crc| MetaHandle {
            handle: BlockHandle { offset, len },
            crc,
        };
        Footer {
            data_len: 500,
            index: m(100, 200, 1),
            filter: m(300, 150, 2),
            props: m(450, 50, 3),
            block_count: 4,
            entry_count: 40,
            checksum: Algorithm::Sha256,
        }
    }

    #[test]
    fn footer_round_trips_and_ends_with_the_magic() {
        let raw = sample().encode();
        assert_eq!(&raw[MAGIC_AT..], b"MSEGMENT");
        assert_eq!(Footer::decode(Path::new("f"), 0, &raw).unwrap(), sample());
    }

    #[test]
    fn damage_is_classified() {
        let raw = sample().encode();
        let p = Path::new("f");
        for bit in 0..FOOTER_BYTES * 8 {
            let mut bad = raw.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let err = Footer::decode(p, 4096, &bad).err().unwrap();
            if bit / 8 >= MAGIC_AT {
                assert!(matches!(err, TableError::BadMagic { .. }), "{err}");
            } else {
                assert!(
                    matches!(err, TableError::ChecksumMismatch { offset: 4096, .. }),
                    "{err}"
                );
            }
        }
        // A footer from a future version with a valid CRC.
        let next = SEGMENT_FORMAT_VERSION + 1;
        let mut future = raw.clone();
        future[VERSION_AT..CRC_AT].copy_from_slice(&next.to_le_bytes());
        let crc = crc32fast::hash(&future[..CRC_AT]);
        future[CRC_AT..MAGIC_AT].copy_from_slice(&crc.to_le_bytes());
        let err = Footer::decode(p, 0, &future).err().unwrap();
        assert!(
            matches!(err, TableError::UnsupportedVersion { found, .. } if found == next),
            "{err}"
        );
    }

    fn with_version_and_algorithm(raw: &[u8], version: u32, algorithm: u8) -> Vec<u8> {
        let mut out = raw.to_vec();
        out[ALGORITHM_AT] = algorithm;
        out[VERSION_AT..CRC_AT].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&out[..CRC_AT]);
        out[CRC_AT..MAGIC_AT].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Segments written before the algorithm byte (format 2) read as CRC32.
    #[test]
    fn version_2_footers_mean_crc32() {
        let p = Path::new("f");
        let v2 = with_version_and_algorithm(&sample().encode(), 2, 0);
        let f = Footer::decode(p, 0, &v2).unwrap();
        assert_eq!(f.checksum, Algorithm::Crc32);
        assert_eq!(f.entry_count, 40);
        let odd = with_version_and_algorithm(&v2, 2, 3);
        assert!(matches!(
            Footer::decode(p, 0, &odd).err().unwrap(),
            TableError::Corrupt { .. }
        ));
        let unknown = with_version_and_algorithm(&v2, 3, 9);
        assert!(matches!(
            Footer::decode(p, 0, &unknown).err().unwrap(),
            TableError::Corrupt { offset: 72, .. }
        ));
        for a in Algorithm::ALL {
            let f = Footer {
                checksum: a,
                ..sample()
            };
            assert_eq!(Footer::decode(p, 0, &f.encode()).unwrap().checksum, a);
        }
    }
}
