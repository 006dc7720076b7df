//! The stored form of a document: a 16-byte header, then an rkyv archive of the original
//! JSON text and its tape (see `tape`).
//!
//! ```text
//! 0   4  magic "MDOC"
//! 4   1  format version (1)
//! 5   3  zero
//! 8   4  CRC-32 (IEEE, crc32fast) of the archive bytes, little endian
//! 12  4  archive length in bytes, little endian
//! 16  .. rkyv archive of `DocForm` { text, nodes }
//! ```
//!
//! Why text plus tape: the original text comes back byte for byte (numbers as written, member
//! order, duplicate members, escapes, whitespace), and the tape lets a reader find a path
//! without parsing: both are read in place from the archive (zero copy), after the checksum.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::error::{DocError, Result};
use crate::tape::{self, Node};

pub const MAGIC: &[u8; 4] = b"MDOC";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 16;
/// Why 16: the archive's alignment; a header of this size keeps the archive aligned inside
/// an allocation, so reads need no copy.
const ARCHIVE_ALIGN: usize = 16;

#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DocForm {
    pub text: String,
    pub nodes: Vec<Node>,
}

/// Encodes a JSON text into its stored form. Fails on invalid JSON.
pub fn encode(text: &str) -> Result<Vec<u8>> {
    let nodes = tape::parse(text)?;
    encode_parsed(text, nodes)
}

pub(crate) fn encode_parsed(text: &str, nodes: Vec<Node>) -> Result<Vec<u8>> {
    let form = DocForm {
        text: text.to_string(),
        nodes,
    };
    let archive =
        rkyv::to_bytes::<rancor::Error>(&form).map_err(|e| DocError::Encode(e.to_string()))?;
    let len = u32::try_from(archive.len()).map_err(|_| DocError::TooLarge {
        len: archive.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(HEADER_BYTES + archive.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&crc32fast::hash(&archive).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&archive);
    assert_eq!(out.len(), HEADER_BYTES + archive.len());
    Ok(out)
}

/// Checks the header and checksum of a stored document and hands `f` a view of it. The
/// archive is read in place when it is aligned (always, with the allocators we run on);
/// otherwise it is copied once into an aligned buffer.
pub fn with_view<R>(stored: &[u8], f: impl FnOnce(DocView<'_>) -> R) -> Result<R> {
    let archive = checked_archive(stored)?;
    if (archive.as_ptr() as usize).is_multiple_of(ARCHIVE_ALIGN) {
        let form = access(archive)?;
        return Ok(f(DocView { form }));
    }
    let mut copy = AlignedVec::<ARCHIVE_ALIGN>::with_capacity(archive.len());
    copy.extend_from_slice(archive);
    let form = access(&copy)?;
    Ok(f(DocView { form }))
}

/// The original JSON text of a stored document (checksum verified).
pub fn decode_text(stored: &[u8]) -> Result<String> {
    with_view(stored, |v| v.text().to_string())
}

fn access(bytes: &[u8]) -> Result<&ArchivedDocForm> {
    rkyv::access::<ArchivedDocForm, rancor::Error>(bytes)
        .map_err(|e| DocError::Corrupt(format!("archive does not validate: {e}")))
}

fn checked_archive(stored: &[u8]) -> Result<&[u8]> {
    if stored.len() < HEADER_BYTES || &stored[..4] != MAGIC {
        return Err(DocError::Corrupt(
            "not a document record (bad magic)".into(),
        ));
    }
    if stored[4] != FORMAT_VERSION {
        return Err(DocError::Corrupt(format!(
            "document format version {} (this build reads {FORMAT_VERSION})",
            stored[4]
        )));
    }
    let word = |at: usize| {
        u32::from_le_bytes([stored[at], stored[at + 1], stored[at + 2], stored[at + 3]])
    };
    let expected = word(8);
    let len = word(12) as usize;
    let archive = &stored[HEADER_BYTES..];
    if archive.len() != len {
        return Err(DocError::Corrupt(format!(
            "archive length {} but the header says {len}",
            archive.len()
        )));
    }
    let found = crc32fast::hash(archive);
    if found != expected {
        return Err(DocError::Checksum { expected, found });
    }
    Ok(archive)
}

/// A read-only view of a stored document, borrowed from its bytes.
#[derive(Clone, Copy)]
pub struct DocView<'a> {
    form: &'a ArchivedDocForm,
}

/// One value inside a [`DocView`].
#[derive(Clone, Copy)]
pub struct ValueRef<'a> {
    view: DocView<'a>,
    index: usize,
}

/// A scalar as filters and indexes compare it (typed order: null < bool < number < string).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

impl<'a> DocView<'a> {
    pub fn text(&self) -> &'a str {
        self.form.text.as_str()
    }

    pub fn node_count(&self) -> usize {
        self.form.nodes.len()
    }

    pub fn root(&self) -> Option<ValueRef<'a>> {
        (self.node_count() > 0).then_some(ValueRef {
            view: *self,
            index: 0,
        })
    }

    /// The value at `path`, if the document has one there.
    pub fn get(&self, path: &crate::path::Path) -> Option<ValueRef<'a>> {
        let mut v = self.root()?;
        for seg in path.segments() {
            v = v.child(seg)?;
        }
        Some(v)
    }

    fn node(&self, i: usize) -> Option<Node> {
        let n = self.form.nodes.get(i)?;
        Some(Node {
            kind: n.kind,
            start: n.start.to_native(),
            end: n.end.to_native(),
            skip: n.skip.to_native(),
        })
    }

    fn slice(&self, n: &Node) -> Option<&'a str> {
        self.text().get(n.start as usize..n.end as usize)
    }
}

impl<'a> ValueRef<'a> {
    pub fn kind(&self) -> u8 {
        self.view
            .node(self.index)
            .map_or(tape::KIND_NULL, |n| n.kind)
    }

    /// The value's own text as written (strings without their quotes).
    pub fn raw(&self) -> &'a str {
        self.view
            .node(self.index)
            .and_then(|n| self.view.slice(&n))
            .unwrap_or("")
    }

    /// The value as JSON text, exactly as written (strings with their quotes).
    pub fn json_text(&self) -> &'a str {
        let (s, e) = self.json_span();
        self.view.text().get(s..e).unwrap_or("")
    }

    /// The byte range of the value's JSON text (strings: with their quotes).
    pub fn json_span(&self) -> (usize, usize) {
        let (s, e) = self.span();
        match self.kind() {
            tape::KIND_STRING | tape::KIND_STRING_ESCAPED => (s.saturating_sub(1), e + 1),
            _ => (s, e),
        }
    }

    /// The byte range of the value's text in the document (strings: between the quotes).
    pub fn span(&self) -> (usize, usize) {
        self.view
            .node(self.index)
            .map_or((0, 0), |n| (n.start as usize, n.end as usize))
    }

    /// Children in order: for objects (key, value) pairs, for arrays (None, value).
    pub fn children(&self) -> Vec<(Option<ValueRef<'a>>, ValueRef<'a>)> {
        let mut out = Vec::new();
        let Some(n) = self.view.node(self.index) else {
            return out;
        };
        let object = n.kind == tape::KIND_OBJECT;
        if n.kind != tape::KIND_ARRAY && !object {
            return out;
        }
        let mut i = self.index + 1;
        while i < n.skip as usize {
            let key = if object {
                let k = ValueRef {
                    view: self.view,
                    index: i,
                };
                i += 1;
                Some(k)
            } else {
                None
            };
            let Some(child) = self.view.node(i) else {
                break;
            };
            out.push((
                key,
                ValueRef {
                    view: self.view,
                    index: i,
                },
            ));
            // A corrupt skip that does not move forward must not loop forever.
            i = (child.skip as usize).max(i + 1);
        }
        out
    }

    /// The member (objects; the last one of duplicates, as most JSON readers do) or element
    /// (arrays, by decimal index) named `seg`.
    pub fn child(&self, seg: &str) -> Option<ValueRef<'a>> {
        match self.kind() {
            tape::KIND_OBJECT => self
                .children()
                .into_iter()
                .rev()
                .find(|(k, _)| k.is_some_and(|k| k.string_eq(seg)))
                .map(|(_, v)| v),
            tape::KIND_ARRAY => {
                let i: usize = parse_index(seg)?;
                self.children().into_iter().nth(i).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    fn string_eq(&self, s: &str) -> bool {
        match self.kind() {
            tape::KIND_STRING => self.raw() == s,
            tape::KIND_STRING_ESCAPED => tape::unescape(self.raw()) == s,
            _ => false,
        }
    }

    /// The scalar value, or None for arrays and objects.
    pub fn scalar(&self) -> Option<Scalar> {
        Some(match self.kind() {
            tape::KIND_NULL => Scalar::Null,
            tape::KIND_FALSE => Scalar::Bool(false),
            tape::KIND_TRUE => Scalar::Bool(true),
            tape::KIND_NUMBER => Scalar::Number(number_value(self.raw())),
            tape::KIND_STRING => Scalar::String(self.raw().to_string()),
            tape::KIND_STRING_ESCAPED => Scalar::String(tape::unescape(self.raw())),
            _ => return None,
        })
    }
}

/// A number literal as a double: out-of-range magnitudes become ±infinity (their text is
/// kept exactly; only comparisons see the double), and -0 compares as 0.
pub fn number_value(raw: &str) -> f64 {
    let v: f64 = raw.parse().unwrap_or(0.0);
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// A decimal array index without sign or leading zeros.
pub fn parse_index(seg: &str) -> Option<usize> {
    if seg.is_empty() || (seg.len() > 1 && seg.starts_with('0')) {
        return None;
    }
    if !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seg.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let t = "{\"a\": 1.0, \"b\": [1e400, \"\\u00e9\"]}";
        let stored = encode(t).unwrap();
        assert_eq!(decode_text(&stored).unwrap(), t);
        let mut bad = stored.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x10;
        assert!(matches!(decode_text(&bad), Err(DocError::Checksum { .. })));
    }

    #[test]
    fn navigates_paths() {
        let t = r#"{"a": {"b": [10, {"c": "x\"y"}]}, "a2": 1, "a2": 2}"#;
        let stored = encode(t).unwrap();
        with_view(&stored, |v| {
            let p = crate::path::Path::parse("a.b.1.c").unwrap();
            assert_eq!(
                v.get(&p).unwrap().scalar(),
                Some(Scalar::String("x\"y".into()))
            );
            let p = crate::path::Path::parse("a2").unwrap();
            assert_eq!(v.get(&p).unwrap().scalar(), Some(Scalar::Number(2.0)));
            let p = crate::path::Path::parse("a.b.2").unwrap();
            assert!(v.get(&p).is_none());
        })
        .unwrap();
    }
}
