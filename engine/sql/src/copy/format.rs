//! PostgreSQL's COPY text and CSV formats, read incrementally: bytes arrive in CopyData
//! frames that cut records anywhere, so the splitter keeps the unfinished record and hands
//! out each complete one as its fields (`None` = NULL). One pass per byte, no SQL parsing.

use crate::error::{state, Result, SqlError};

/// Longest record accepted: an unfinished record beyond it is refused instead of buffered
/// without bound (PostgreSQL's own limit is 1 GB; a row here is at most a few MiB anyway).
pub const COPY_RECORD_BYTES_MAX: usize = 8 << 20;

/// SQLSTATE 22P04: the data is not in the declared format (PostgreSQL's bad_copy_file_format).
pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
/// SQLSTATE 22021: the bytes are not UTF-8.
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";

/// The options of one COPY statement that shape the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: u8,
    /// The spelling of NULL: `\N` in text, the empty unquoted field in CSV.
    pub null: String,
    /// CSV only: the first record is a header and is skipped.
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyFormat {
    pub fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    pub fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            delimiter: b',',
            null: String::new(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }
}

/// One record's fields, with the 1-based line number it started on.
pub type Record = (u64, Vec<Option<String>>);

/// Cuts a byte stream into records and records into fields.
pub struct Splitter {
    format: CopyFormat,
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned for the end of the current record.
    scanned: usize,
    /// CSV: the scan is inside a quoted field (a newline there is data).
    in_quotes: bool,
    /// CSV with an escape other than the quote: the next byte is escaped.
    escaped: bool,
    /// Lines consumed so far (a CSV record with quoted newlines spans several).
    lines: u64,
    /// `\.` was seen: the rest of the data is ignored, as PostgreSQL does.
    ended: bool,
    header_pending: bool,
}

fn bad_format(line: u64, message: impl Into<String>) -> SqlError {
    SqlError::new(BAD_COPY_FILE_FORMAT, message).with_detail(format!("line {line}"))
}

impl Splitter {
    pub fn new(format: CopyFormat) -> Splitter {
        Splitter {
            header_pending: format.header,
            format,
            buf: Vec::new(),
            scanned: 0,
            in_quotes: false,
            escaped: false,
            lines: 0,
            ended: false,
        }
    }

    /// Lines consumed so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Adds `data` and appends every record it completes to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Record>) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        // Out of `self` while records borrow it and `record` updates the state.
        let buf = std::mem::take(&mut self.buf);
        let r = self.split(&buf, out);
        self.buf = buf;
        let start = r?;
        if self.ended {
            self.buf.clear();
            self.scanned = 0;
            return Ok(());
        }
        self.buf.drain(..start);
        self.scanned -= start;
        if self.buf.len() > COPY_RECORD_BYTES_MAX {
            return Err(SqlError::new(
                state::PROGRAM_LIMIT_EXCEEDED,
                format!("COPY record longer than {COPY_RECORD_BYTES_MAX} bytes"),
            )
            .with_detail(format!("line {}", self.lines + 1)));
        }
        Ok(())
    }

    /// Hands out the complete records of `buf`; returns where the unfinished one starts.
    fn split(&mut self, buf: &[u8], out: &mut Vec<Record>) -> Result<usize> {
        let mut start = 0;
        while let Some(end) = self.record_end(buf, start) {
            let first_line = self.lines + 1;
            self.lines += bytecount(&buf[start..end], b'\n') + 1;
            let record = self.record(first_line, strip_cr(&buf[start..end]))?;
            start = end + 1;
            self.scanned = start;
            if let Some(fields) = record {
                out.push((first_line, fields));
            }
            if self.ended {
                break;
            }
        }
        Ok(start)
    }

    /// The end of data: a last record without a newline is still a record.
    pub fn finish(&mut self, out: &mut Vec<Record>) -> Result<()> {
        if self.ended || self.buf.is_empty() {
            return Ok(());
        }
        let line = self.lines + 1;
        if self.in_quotes {
            return Err(bad_format(line, "unterminated CSV quoted field"));
        }
        let raw = std::mem::take(&mut self.buf);
        self.lines += 1;
        if let Some(fields) = self.record(line, strip_cr(&raw))? {
            out.push((line, fields));
        }
        self.scanned = 0;
        Ok(())
    }

    /// The index of the newline ending the record that starts at `start`, if it arrived.
    fn record_end(&mut self, buf: &[u8], start: usize) -> Option<usize> {
        let from = self.scanned.max(start);
        if !self.format.csv {
            let at = buf[from..].iter().position(|&b| b == b'\n');
            self.scanned = at.map_or(buf.len(), |i| from + i);
            return at.map(|i| from + i);
        }
        let (quote, escape) = (self.format.quote, self.format.escape);
        for (i, &b) in buf.iter().enumerate().skip(from) {
            if self.escaped {
                self.escaped = false;
            } else if self.in_quotes && escape != quote && b == escape {
                self.escaped = true;
            } else if b == quote {
                // A doubled quote inside quotes toggles twice: still inside.
                self.in_quotes = !self.in_quotes;
            } else if b == b'\n' && !self.in_quotes {
                self.scanned = i;
                return Some(i);
            }
        }
        self.scanned = buf.len();
        None
    }

    /// The fields of one record; None for the skipped header and the end marker.
    fn record(&mut self, line: u64, raw: &[u8]) -> Result<Option<Vec<Option<String>>>> {
        if raw == b"\\." {
            self.ended = true;
            return Ok(None);
        }
        if self.header_pending {
            self.header_pending = false;
            return Ok(None);
        }
        let fields = if self.format.csv {
            csv_fields(&self.format, line, raw)?
        } else {
            text_fields(&self.format, line, raw)?
        };
        Ok(Some(fields))
    }
}

fn bytecount(b: &[u8], x: u8) -> u64 {
    b.iter().filter(|&&c| c == x).count() as u64
}

fn strip_cr(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn utf8(line: u64, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| {
        SqlError::new(
            CHARACTER_NOT_IN_REPERTOIRE,
            "invalid byte sequence for encoding \"UTF8\"",
        )
        .with_detail(format!("line {line}"))
    })
}

/// Text format: fields split at the delimiter (a backslash escapes it), `\N` (or the NULL
/// option) compared before unescaping, then backslash escapes decoded.
fn text_fields(f: &CopyFormat, line: u64, raw: &[u8]) -> Result<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    loop {
        if i >= raw.len() || raw[i] == f.delimiter {
            let field = &raw[start..i.min(raw.len())];
            fields.push(if field == f.null.as_bytes() {
                None
            } else {
                Some(utf8(line, unescape(field))?)
            });
            if i >= raw.len() {
                return Ok(fields);
            }
            start = i + 1;
        } else if raw[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
}

fn unescape(field: &[u8]) -> Vec<u8> {
    if !field.contains(&b'\\') {
        return field.to_vec();
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i >= field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// CSV: quoted fields may hold delimiters, newlines and doubled quotes; only an unquoted
/// field equal to the NULL option is NULL (`""` is the empty string).
fn csv_fields(f: &CopyFormat, line: u64, raw: &[u8]) -> Result<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if in_quotes {
            if b == f.escape && raw.get(i).is_some_and(|&n| n == f.quote || n == f.escape) {
                cur.push(raw[i]);
                i += 1;
                continue;
            }
            if b == f.quote {
                in_quotes = false;
            } else {
                cur.push(b);
            }
        } else if b == f.quote {
            in_quotes = true;
            quoted = true;
        } else if b == f.delimiter {
            fields.push(csv_value(f, line, std::mem::take(&mut cur), quoted)?);
            quoted = false;
        } else {
            cur.push(b);
        }
    }
    if in_quotes {
        return Err(bad_format(line, "unterminated CSV quoted field"));
    }
    fields.push(csv_value(f, line, cur, quoted)?);
    Ok(fields)
}

fn csv_value(f: &CopyFormat, line: u64, bytes: Vec<u8>, quoted: bool) -> Result<Option<String>> {
    if !quoted && bytes == f.null.as_bytes() {
        return Ok(None);
    }
    Ok(Some(utf8(line, bytes)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(format: CopyFormat, chunks: &[&[u8]]) -> Result<Vec<Record>> {
        let mut s = Splitter::new(format);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out)?;
        }
        s.finish(&mut out)?;
        Ok(out)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn text_fields_nulls_and_escapes() {
        let r = all(
            CopyFormat::text(),
            &[b"1\tab\\tc\t\\N\n2\t\\\\x\\n\t", b"\\101\\x41\r\n"],
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                (1, vec![s("1"), s("ab\tc"), None]),
                (2, vec![s("2"), s("\\x\n"), s("AA")]),
            ]
        );
    }

    #[test]
    fn text_records_split_across_frames_and_end_marker() {
        let r = all(
            CopyFormat::text(),
            &[b"1\tx", b"y\n2", b"\tz\n\\.\n3\tignored\n"],
        )
        .unwrap();
        assert_eq!(
            r,
            vec![(1, vec![s("1"), s("xy")]), (2, vec![s("2"), s("z")])]
        );
    }

    #[test]
    fn text_escaped_delimiter_and_last_line_without_newline() {
        let r = all(CopyFormat::text(), &[b"a\\\tb\tc"]).unwrap();
        assert_eq!(r, vec![(1, vec![s("a\tb"), s("c")])]);
    }

    #[test]
    fn csv_quotes_newlines_header_and_nulls() {
        let mut f = CopyFormat::csv();
        f.header = true;
        let r = all(
            f,
            &[
                b"id,name,note\n1,\"a,b\",\n2,\"say \"\"hi\"\"\",\"\"\n3,\"two\n",
                b"lines\",x\n",
            ],
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                (2, vec![s("1"), s("a,b"), None]),
                (3, vec![s("2"), s("say \"hi\""), s("")]),
                (4, vec![s("3"), s("two\nlines"), s("x")]),
            ]
        );
    }

    #[test]
    fn csv_custom_delimiter_null_and_escape() {
        let mut f = CopyFormat::csv();
        f.delimiter = b';';
        f.null = "NULL".into();
        f.escape = b'\\';
        let r = all(f, &[b"NULL;\"NULL\";\"a\\\"b\"\n"]).unwrap();
        assert_eq!(r, vec![(1, vec![None, s("NULL"), s("a\"b")])]);
    }

    #[test]
    fn unterminated_quote_and_bad_utf8_are_errors() {
        let e = all(CopyFormat::csv(), &[b"1,\"abc\n"]).unwrap_err();
        assert_eq!(e.sqlstate, BAD_COPY_FILE_FORMAT);
        let e = all(CopyFormat::text(), &[b"ok\n\xff\xfe\n"]).unwrap_err();
        assert_eq!(e.sqlstate, CHARACTER_NOT_IN_REPERTOIRE);
        assert_eq!(e.detail.as_deref(), Some("line 2"));
    }

    #[test]
    fn overlong_record_is_refused() {
        let big = vec![b'a'; COPY_RECORD_BYTES_MAX + 1];
        let e = all(CopyFormat::text(), &[&big]).unwrap_err();
        assert_eq!(e.sqlstate, state::PROGRAM_LIMIT_EXCEEDED);
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cut in 0usize..512,
            csv in proptest::prelude::any::<bool>(),
        ) {
            let format = if csv { CopyFormat::csv() } else { CopyFormat::text() };
            let cut = cut.min(data.len());
            let _ = all(format, &[&data[..cut], &data[cut..]]);
        }

        #[test]
        fn text_round_trips_escaped_fields(
            fields in proptest::collection::vec(proptest::option::of("[ -~\t\n\\\\]{0,12}"), 1..6),
            cut in 0usize..200,
        ) {
            let mut line = Vec::new();
            for (i, f) in fields.iter().enumerate() {
                if i > 0 { line.push(b'\t'); }
                match f {
                    None => line.extend_from_slice(b"\\N"),
                    Some(v) => line.extend_from_slice(
                        v.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").as_bytes()),
                }
            }
            line.push(b'\n');
            let cut = cut.min(line.len());
            let r = all(CopyFormat::text(), &[&line[..cut], &line[cut..]]).unwrap();
            proptest::prop_assert_eq!(r, vec![(1, fields)]);
        }
    }
}
