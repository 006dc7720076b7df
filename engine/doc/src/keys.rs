//! Where documents, index entries and catalogs live in the key space.
//!
//! ```text
//! document      FE 'D' 'd' collection 00 id                       -> stored form (form.rs)
//! index entry   FE 'D' 'i' collection 00 path 00 typed-value id   -> empty
//! catalog       FE 'D' 'c' collection                             -> JSON list of indexes
//! ```
//!
//! A document and its index entries live on the shard of the document key's hash (chosen
//! here, not by each key's own hash), so one per-shard batch changes both atomically. The
//! catalog is written to every shard, so a write reads its collection's indexes locally.
//!
//! Typed values sort null < bool < number < string, and within a type by value: a tag byte,
//! then booleans as 0/1, numbers as order-preserving IEEE-754 bits, strings with 00 escaped as
//! 00 FF and ended by 00 01 (self-delimiting: the id follows).

use crate::form::Scalar;

pub const PREFIX: &[u8] = &[0xFE, b'D'];
pub const TAG_NULL: u8 = 0x10;
pub const TAG_BOOL: u8 = 0x20;
pub const TAG_NUMBER: u8 = 0x30;
pub const TAG_STRING: u8 = 0x40;

pub fn doc_prefix(collection: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.push(b'd');
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k
}

pub fn doc_key(collection: &str, id: &str) -> Vec<u8> {
    let mut k = doc_prefix(collection);
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn catalog_key(collection: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.push(b'c');
    k.extend_from_slice(collection.as_bytes());
    k
}

pub fn index_prefix(collection: &str, path: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.push(b'i');
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k.extend_from_slice(path.as_bytes());
    k.push(0);
    k
}

pub fn index_key(collection: &str, path: &str, value: &Scalar, id: &str) -> Vec<u8> {
    let mut k = index_prefix(collection, path);
    encode_scalar(value, &mut k);
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn type_tag(v: &Scalar) -> u8 {
    match v {
        Scalar::Null => TAG_NULL,
        Scalar::Bool(_) => TAG_BOOL,
        Scalar::Number(_) => TAG_NUMBER,
        Scalar::String(_) => TAG_STRING,
    }
}

pub fn encode_scalar(v: &Scalar, out: &mut Vec<u8>) {
    out.push(type_tag(v));
    match v {
        Scalar::Null => {}
        Scalar::Bool(b) => out.push(u8::from(*b)),
        Scalar::Number(x) => {
            // -0 and 0 are one value; NaN cannot come from JSON.
            let x = if *x == 0.0 { 0.0 } else { *x };
            let bits = x.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Scalar::String(s) => {
            for &b in s.as_bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0, 1]);
        }
    }
}

/// Splits what follows an index prefix into its encoded value's length and the id.
pub fn split_index_suffix(suffix: &[u8]) -> Option<(usize, &[u8])> {
    let len = match *suffix.first()? {
        TAG_NULL => 1,
        TAG_BOOL => 2,
        TAG_NUMBER => 9,
        TAG_STRING => {
            let mut i = 1;
            loop {
                match (suffix.get(i)?, suffix.get(i + 1)) {
                    (0, Some(1)) => break i + 2,
                    (0, Some(0xFF)) => i += 2,
                    (0, _) => return None,
                    _ => i += 1,
                }
            }
        }
        _ => return None,
    };
    Some((len, suffix.get(len..)?))
}

/// The smallest key greater than every key starting with `prefix` (None: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            Just(Scalar::Null),
            any::<bool>().prop_map(Scalar::Bool),
            any::<f64>()
                .prop_filter("no NaN", |x| !x.is_nan())
                .prop_map(Scalar::Number),
            "\\PC{0,6}|a\0b|a\0|\0".prop_map(Scalar::String),
        ]
    }

    fn order(a: &Scalar, b: &Scalar) -> std::cmp::Ordering {
        crate::filter::compare_scalars(a, b)
    }

    proptest! {
        #[test]
        fn encoding_preserves_typed_order(a in scalar(), b in scalar(), ida in "[a-z]{0,3}", idb in "[a-z]{0,3}") {
            let ka = index_key("c", "p", &a, &ida);
            let kb = index_key("c", "p", &b, &idb);
            let want = order(&a, &b).then_with(|| ida.as_bytes().cmp(idb.as_bytes()));
            prop_assert_eq!(ka.cmp(&kb), want);
            let p = index_prefix("c", "p");
            let (len, id) = split_index_suffix(&ka[p.len()..]).unwrap();
            prop_assert_eq!(id, ida.as_bytes());
            prop_assert!(len >= 1);
        }
    }
}
