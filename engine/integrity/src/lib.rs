//! The checksum engine: CRC32 (IEEE, `crc32fast`), MD5 (`md-5`) and SHA-256 (`sha2`) behind one
//! interface, streaming ([`Hasher`]) and one-shot ([`Algorithm::digest`]).
//!
//! Which algorithm guards what is a format decision, recorded by [`Algorithm::id`] where a
//! format stores it (docs/integrity.md): blocks, WAL records and the manifest use CRC32 (cheap,
//! catches the random damage a disk does); backups and whole-file digests use SHA-256 (an
//! adversary cannot forge it); MD5 only where a protocol demands it (S3's `Content-MD5`).

mod digest;

pub use digest::{Digest, DIGEST_BYTES_MAX};

use md5::Digest as _;

/// A checksum algorithm. The discriminants are the ids stored on disk: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Crc32 = 1,
    Md5 = 2,
    Sha256 = 3,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("unknown checksum algorithm id {0}")]
    UnknownAlgorithmId(u8),
    #[error("unknown checksum algorithm name {0:?} (expected crc32, md5 or sha256)")]
    UnknownAlgorithmName(String),
    #[error("{algorithm} digest must be {expected} bytes, got {found}")]
    DigestLength {
        algorithm: Algorithm,
        expected: usize,
        found: usize,
    },
    #[error("{context}: {algorithm} mismatch: expected {expected}, found {found}")]
    Mismatch {
        context: String,
        algorithm: Algorithm,
        expected: Digest,
        found: Digest,
    },
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Crc32, Algorithm::Md5, Algorithm::Sha256];

    /// The id recorded in formats that store which algorithm guards them.
    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn from_id(id: u8) -> Result<Self, IntegrityError> {
        Self::ALL
            .into_iter()
            .find(|a| a.id() == id)
            .ok_or(IntegrityError::UnknownAlgorithmId(id))
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "crc32",
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// Digest length in bytes (CRC32 is stored big-endian, as its hex form reads).
    pub fn digest_bytes(self) -> usize {
        match self {
            Algorithm::Crc32 => 4,
            Algorithm::Md5 => 16,
            Algorithm::Sha256 => 32,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            Algorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// One-shot digest of `data`.
    pub fn digest(self, data: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(data);
        h.finalize()
    }

    /// Checks `data` against `expected`; the error names `context` (file, offset) and both
    /// digests.
    pub fn verify(
        self,
        data: &[u8],
        expected: &Digest,
        context: impl FnOnce() -> String,
    ) -> Result<(), IntegrityError> {
        let found = self.digest(data);
        if &found == expected {
            Ok(())
        } else {
            Err(IntegrityError::Mismatch {
                context: context(),
                algorithm: self,
                expected: expected.clone(),
                found,
            })
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = IntegrityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "crc32" => Ok(Algorithm::Crc32),
            "md5" => Ok(Algorithm::Md5),
            "sha256" => Ok(Algorithm::Sha256),
            _ => Err(IntegrityError::UnknownAlgorithmName(s.to_string())),
        }
    }
}

/// A streaming checksum: feed it pieces with [`Hasher::update`], then [`Hasher::finalize`].
/// An enum rather than a trait object: no allocation, and the hot CRC32 path is a direct call.
#[derive(Clone)]
pub enum Hasher {
    Crc32(crc32fast::Hasher),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Crc32(_) => Algorithm::Crc32,
            Hasher::Md5(_) => Algorithm::Md5,
            Hasher::Sha256(_) => Algorithm::Sha256,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> Digest {
        match self {
            Hasher::Crc32(h) => Digest::new(Algorithm::Crc32, &h.finalize().to_be_bytes()),
            Hasher::Md5(h) => Digest::new(Algorithm::Md5, &h.finalize()),
            Hasher::Sha256(h) => Digest::new(Algorithm::Sha256, &h.finalize()),
        }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The CRC32 of `data` as the u32 the block, WAL and manifest formats store.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}
