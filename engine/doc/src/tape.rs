//! A strict JSON (RFC 8259) parser that keeps the text and records where every value is.
//!
//! The output is a tape: one [`Node`] per value in document order, each with the byte range
//! of its text and, for containers, the index just past its subtree (so a reader skips a
//! whole member in one step). Object members are two nodes: the key (a string) then the value.
//! Nothing of the text is rewritten, which is how the original JSON is recovered byte for byte.

use crate::error::{DocError, Result};

/// Nesting deeper than this is refused: the parser recurses once per level, and a shard's
/// stack must not depend on what a client sends.
pub const DEPTH_MAX: usize = 512;

pub const KIND_NULL: u8 = 0;
pub const KIND_FALSE: u8 = 1;
pub const KIND_TRUE: u8 = 2;
pub const KIND_NUMBER: u8 = 3;
/// A string without escapes: its text is its value.
pub const KIND_STRING: u8 = 4;
/// A string with at least one backslash escape: decode before comparing.
pub const KIND_STRING_ESCAPED: u8 = 5;
pub const KIND_ARRAY: u8 = 6;
pub const KIND_OBJECT: u8 = 7;

/// One value of the tape. Strings cover the text between the quotes; every other value
/// covers its whole text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Node {
    pub kind: u8,
    pub start: u32,
    pub end: u32,
    /// Index of the first node after this value's subtree.
    pub skip: u32,
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
}

/// Parses `text` (one JSON value, surrounding whitespace allowed) into its tape.
pub fn parse(text: &str) -> Result<Vec<Node>> {
    if u32::try_from(text.len()).is_err() {
        return Err(DocError::TooLarge {
            len: text.len(),
            max: u32::MAX as usize,
        });
    }
    let mut p = Parser {
        text: text.as_bytes(),
        pos: 0,
        nodes: Vec::new(),
    };
    p.ws();
    p.value(0)?;
    p.ws();
    if p.pos != p.text.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    assert!(!p.nodes.is_empty(), "a parsed value has at least one node");
    assert_eq!(p.nodes[0].skip as usize, p.nodes.len());
    Ok(p.nodes)
}

impl Parser<'_> {
    fn err(&self, reason: &str) -> DocError {
        DocError::BadJson {
            offset: self.pos,
            reason: reason.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn push(&mut self, kind: u8, start: usize, end: usize) -> usize {
        let i = self.nodes.len();
        // Lengths were checked against u32 in `parse`.
        self.nodes.push(Node {
            kind,
            start: start as u32,
            end: end as u32,
            skip: (i + 1) as u32,
        });
        i
    }

    fn value(&mut self, depth: usize) -> Result<()> {
        match self.peek() {
            None => Err(self.err("unexpected end of input, expected a value")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true", KIND_TRUE),
            Some(b'f') => self.literal(b"false", KIND_FALSE),
            Some(b'n') => self.literal(b"null", KIND_NULL),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8], kind: u8) -> Result<()> {
        if !self.text[self.pos..].starts_with(word) {
            return Err(self.err("invalid literal"));
        }
        let start = self.pos;
        self.pos += word.len();
        self.push(kind, start, self.pos);
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<()> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("a number needs digits")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("a fraction needs digits"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("an exponent needs digits"));
            }
        }
        self.push(KIND_NUMBER, start, self.pos);
        Ok(())
    }

    fn string(&mut self) -> Result<()> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self.text.get(self.pos + 1..self.pos + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("\\u needs four hex digits"));
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.err("control character in string")),
                Some(_) => self.pos += 1,
            }
        }
        let kind = if escaped {
            KIND_STRING_ESCAPED
        } else {
            KIND_STRING
        };
        self.push(kind, start, self.pos);
        self.pos += 1; // the closing quote
        Ok(())
    }

    fn check_depth(&self, depth: usize) -> Result<()> {
        if depth > DEPTH_MAX {
            return Err(DocError::TooDeep {
                offset: self.pos,
                max: DEPTH_MAX,
            });
        }
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<()> {
        self.check_depth(depth)?;
        let start = self.pos;
        let me = self.push(KIND_ARRAY, start, start);
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.value(depth)?;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.ws();
                    }
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or ']'")),
                }
            }
        }
        self.close(me);
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<()> {
        self.check_depth(depth)?;
        let start = self.pos;
        let me = self.push(KIND_OBJECT, start, start);
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a member name"));
                }
                self.string()?;
                self.ws();
                if self.peek() != Some(b':') {
                    return Err(self.err("expected ':'"));
                }
                self.pos += 1;
                self.ws();
                self.value(depth)?;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.ws();
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or '}'")),
                }
            }
        }
        self.close(me);
        Ok(())
    }

    fn close(&mut self, me: usize) {
        let (end, skip) = (self.pos as u32, self.nodes.len() as u32);
        let n = &mut self.nodes[me];
        n.end = end;
        n.skip = skip;
    }
}

/// Decodes the text of a string node (between the quotes). Lone surrogates become U+FFFD:
/// JSON allows them, Rust strings cannot hold them, and the stored text keeps them anyway.
pub fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hi = hex4(&mut chars);
                if (0xD800..0xDC00).contains(&hi) {
                    let mut look = chars.clone();
                    if look.next() == Some('\\') && look.next() == Some('u') {
                        let lo = hex4(&mut look);
                        if (0xDC00..0xE000).contains(&lo) {
                            chars = look;
                            let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                            continue;
                        }
                    }
                }
                out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0);
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        for bad in [
            "",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "'x'",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "[1 2]",
            "nul",
            "1 2",
            "{\"a\" 1}",
            "+1",
            "NaN",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn tape_covers_values() {
        let t = r#" {"a": [1, "x\n"], "b": null} "#;
        let nodes = parse(t).unwrap();
        assert_eq!(nodes.len(), 7);
        assert_eq!(nodes[0].kind, KIND_OBJECT);
        assert_eq!(nodes[0].skip, 7);
        assert_eq!(&t[nodes[1].start as usize..nodes[1].end as usize], "a");
        assert_eq!(nodes[2].kind, KIND_ARRAY);
        assert_eq!(nodes[2].skip, 5);
        assert_eq!(nodes[4].kind, KIND_STRING_ESCAPED);
        assert_eq!(
            unescape("x\\n\\u00e9\\ud83d\\ude00\\ud800"),
            "x\né😀\u{FFFD}"
        );
    }

    #[test]
    fn depth_is_bounded() {
        let ok = "[".repeat(DEPTH_MAX) + &"]".repeat(DEPTH_MAX);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(DEPTH_MAX + 1) + &"]".repeat(DEPTH_MAX + 1);
        assert!(matches!(parse(&deep), Err(DocError::TooDeep { .. })));
    }
}
