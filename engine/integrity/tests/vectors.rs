//! Published test vectors: RFC 1321 (MD5), FIPS 180-2 / NIST examples (SHA-256), and the
//! CRC-32/ISO-HDLC check value ("123456789" → cbf43926) plus well-known strings.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use mantis_integrity::{crc32, Algorithm, Digest, IntegrityError};
use proptest::prelude::*;

const MD5_RFC1321: &[(&str, &str)] = &[
    ("", "d41d8cd98f00b204e9800998ecf8427e"),
    ("a", "0cc175b9c0f1b6a831c399e269772661"),
    ("abc", "900150983cd24fb0d6963f7d28e17f72"),
    ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
    (
        "abcdefghijklmnopqrstuvwxyz",
        "c3fcd3d76192e4007dfb496cca67e13b",
    ),
    (
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "d174ab98d277d9f5a5611c2c9f419d9f",
    ),
    (
        "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        "57edf4a22be3c955ac49da2e2107b67a",
    ),
];

const SHA256_NIST: &[(&str, &str)] = &[
    (
        "",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    (
        "abc",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ),
    (
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
];

const CRC32_VECTORS: &[(&str, u32)] = &[
    ("", 0x0000_0000),
    ("123456789", 0xcbf4_3926),
    ("a", 0xe8b7_be43),
    ("abc", 0x3524_41c2),
    ("The quick brown fox jumps over the lazy dog", 0x414f_a339),
];

#[test]
fn md5_rfc1321_vectors() {
    for (input, hex) in MD5_RFC1321 {
        assert_eq!(
            Algorithm::Md5.digest(input.as_bytes()).to_hex(),
            *hex,
            "{input:?}"
        );
    }
}

#[test]
fn sha256_nist_vectors() {
    for (input, hex) in SHA256_NIST {
        assert_eq!(
            Algorithm::Sha256.digest(input.as_bytes()).to_hex(),
            *hex,
            "{input:?}"
        );
    }
}

#[test]
fn sha256_million_a() {
    // FIPS 180-2 appendix B.3, fed in uneven pieces through the streaming interface.
    let mut h = Algorithm::Sha256.hasher();
    let piece = [b'a'; 997];
    let mut left = 1_000_000usize;
    while left > 0 {
        let n = left.min(piece.len());
        h.update(&piece[..n]);
        left -= n;
    }
    assert_eq!(
        h.finalize().to_hex(),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

#[test]
fn crc32_vectors() {
    for (input, want) in CRC32_VECTORS {
        let d = Algorithm::Crc32.digest(input.as_bytes());
        assert_eq!(d.as_crc32(), Some(*want), "{input:?}");
        assert_eq!(d.to_hex(), format!("{want:08x}"));
        assert_eq!(crc32(input.as_bytes()), *want);
        assert_eq!(d, Digest::from_crc32(*want));
    }
}

#[test]
fn content_md5_base64() {
    // S3 documents Content-MD5 as base64 of the raw MD5: "" → 1B2M2Y8AsgTpgAmY7PhCfg==.
    assert_eq!(
        Algorithm::Md5.digest(b"").to_base64(),
        "1B2M2Y8AsgTpgAmY7PhCfg=="
    );
    assert_eq!(
        Algorithm::Crc32.digest(b"123456789").to_base64(),
        "y/Q5Jg=="
    );
}

#[test]
fn ids_and_names_round_trip() {
    for a in Algorithm::ALL {
        assert_eq!(Algorithm::from_id(a.id()).unwrap(), a);
        assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        assert_eq!(a.digest(b"x").as_bytes().len(), a.digest_bytes());
    }
    assert_eq!(
        Algorithm::from_id(0),
        Err(IntegrityError::UnknownAlgorithmId(0))
    );
    assert!("sha1".parse::<Algorithm>().is_err());
    assert_eq!("SHA-256".parse::<Algorithm>().unwrap(), Algorithm::Sha256);
}

#[test]
fn verify_names_both_digests() {
    let good = Algorithm::Sha256.digest(b"payload");
    Algorithm::Sha256
        .verify(b"payload", &good, || "unused".into())
        .unwrap();
    let err = Algorithm::Sha256
        .verify(b"paylaod", &good, || "file f offset 4096".into())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("file f offset 4096") && text.contains(&good.to_hex()),
        "{text}"
    );
    assert!(Digest::from_bytes(Algorithm::Md5, &[0; 3]).is_err());
}

proptest! {
    #[test]
    fn streaming_equals_one_shot(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                 cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        for a in Algorithm::ALL {
            let mut h = a.hasher();
            let mut rest: &[u8] = &data;
            for c in &cuts {
                let n = if rest.is_empty() { 0 } else { c % (rest.len() + 1) };
                h.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
            }
            h.update(rest);
            prop_assert_eq!(h.finalize(), a.digest(&data));
        }
    }
}
