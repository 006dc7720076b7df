//! JSON paths: member names and array indexes joined by `.`; `\.` and `\\` escape a dot or a
//! backslash inside a name. `a.b.0` is member `b` of member `a`, then element 0 (or member
//! "0" when that value is an object).

use crate::error::{DocError, Result};

/// Longest path text accepted, in bytes.
pub const PATH_BYTES_MAX: usize = 1024;
/// Most segments in one path.
pub const PATH_SEGMENTS_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    text: String,
    segments: Vec<String>,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path> {
        let bad = |reason: &str| DocError::BadPath {
            path: text.chars().take(80).collect(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(bad("empty path"));
        }
        if text.len() > PATH_BYTES_MAX {
            return Err(bad("path too long"));
        }
        if text.contains('\0') {
            return Err(bad("NUL in path"));
        }
        let mut segments = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('.' | '\\')) => cur.push(e),
                    _ => return Err(bad("'\\' escapes only '.' or '\\'")),
                },
                '.' => {
                    if cur.is_empty() {
                        return Err(bad("empty segment"));
                    }
                    segments.push(std::mem::take(&mut cur));
                }
                c => cur.push(c),
            }
        }
        if cur.is_empty() {
            return Err(bad("empty segment"));
        }
        segments.push(cur);
        if segments.len() > PATH_SEGMENTS_MAX {
            return Err(bad("too many segments"));
        }
        Ok(Path {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_refuses() {
        let p = Path::parse("a.b\\.c.0").unwrap();
        assert_eq!(p.segments().collect::<Vec<_>>(), ["a", "b.c", "0"]);
        for bad in ["", ".", "a.", ".a", "a..b", "a\\x", "a\\", "a\0b"] {
            assert!(Path::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = Path::parse(&s);
        }
    }
}
