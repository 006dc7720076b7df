//! A digest value: fixed-capacity bytes tagged with their algorithm (no heap allocation).

use crate::{Algorithm, IntegrityError};

/// The longest digest (SHA-256).
pub const DIGEST_BYTES_MAX: usize = 32;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: [u8; DIGEST_BYTES_MAX],
}

impl Digest {
    pub(crate) fn new(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        assert_eq!(bytes.len(), algorithm.digest_bytes());
        let mut out = [0u8; DIGEST_BYTES_MAX];
        out[..bytes.len()].copy_from_slice(bytes);
        Digest {
            algorithm,
            bytes: out,
        }
    }

    /// A stored digest, checked for its algorithm's length.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Result<Digest, IntegrityError> {
        if bytes.len() != algorithm.digest_bytes() {
            return Err(IntegrityError::DigestLength {
                algorithm,
                expected: algorithm.digest_bytes(),
                found: bytes.len(),
            });
        }
        Ok(Digest::new(algorithm, bytes))
    }

    /// A CRC32 as the formats store it (a u32).
    pub fn from_crc32(crc: u32) -> Digest {
        Digest::new(Algorithm::Crc32, &crc.to_be_bytes())
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.digest_bytes()]
    }

    pub fn to_hex(&self) -> String {
        self.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The standard base64 form (S3's `Content-MD5` header carries an MD5 this way).
    pub fn to_base64(&self) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(self.as_bytes().len().div_ceil(3) * 4);
        for chunk in self.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// The CRC32 value, for CRC32 digests.
    pub fn as_crc32(&self) -> Option<u32> {
        (self.algorithm == Algorithm::Crc32).then(|| {
            u32::from_be_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
        })
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_hex())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
