//! RESP request parsing: multibulk arrays (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands
//! (`GET k\r\n`), with hard limits checked before any large allocation, so that a hostile or
//! broken client costs at most the limits and never a panic.
//!
//! The parser is pure and restartable: it looks at the bytes received so far and either returns
//! one complete command and how many bytes it used, or says how many bytes it needs at least
//! before trying again (so a 64 MiB value arriving in small reads is not re-scanned per read).

use thiserror::Error;

/// Limits of one request. Redis calls the first two `proto-max-bulk-len` and the multibulk
/// maximum; the inline limit is Redis's `PROTO_INLINE_MAX_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk string (one argument), in bytes.
    pub bulk_bytes_max: usize,
    /// Most arguments in one multibulk request.
    pub array_len_max: usize,
    /// Longest inline command line (and longest `*N`/`$N` header line), in bytes.
    pub inline_bytes_max: usize,
}

impl Limits {
    /// Inline lines and header lines are capped like Redis does (64 KiB).
    pub const INLINE_BYTES_MAX_DEFAULT: usize = 64 * 1024;
    /// The multibulk count cap; an MSET of a million pairs is still below it.
    pub const ARRAY_LEN_MAX_DEFAULT: usize = 4 * 1024 * 1024;

    /// Limits for a server whose values may be up to `value_bytes_max` bytes.
    pub fn for_values(value_bytes_max: usize) -> Limits {
        Limits {
            // Slack so that a value exactly at the engine's limit reaches the engine and gets
            // the engine's precise error instead of a protocol error.
            bulk_bytes_max: value_bytes_max.saturating_add(1024),
            array_len_max: Self::ARRAY_LEN_MAX_DEFAULT,
            inline_bytes_max: Self::INLINE_BYTES_MAX_DEFAULT,
        }
    }
}

/// What the bytes so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole command yet; do not call again before the buffer holds `needed_bytes_min`.
    Incomplete { needed_bytes_min: usize },
    /// A command (possibly with zero arguments: an empty inline line) that used `consumed` bytes.
    Command { args: Vec<Vec<u8>>, consumed: usize },
}

/// A malformed request. The connection is answered `-ERR Protocol error: ...` and closed,
/// like Redis does. Display gives the text after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{found}'")]
    ExpectedBulk { found: char },
    #[error("Protocol error: too big mbulk count string")]
    MultibulkHeaderTooLong,
    #[error("Protocol error: too big bulk count string")]
    BulkHeaderTooLong,
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: bulk string not terminated by CRLF")]
    BulkNotTerminated,
}

/// Parses the first command in `buf`.
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete {
            needed_bytes_min: 1,
        }),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// Position of the first `\n` in `buf`, if any.
fn find_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// Reads a `<prefix><integer>\r\n` header line starting at `start`. Ok(None) when the line is
/// not complete yet. Lengths are strictly decimal, like Redis (no `+`, no spaces).
fn read_header_int(
    buf: &[u8],
    start: usize,
    too_long: ProtocolError,
    invalid: ProtocolError,
    limits: &Limits,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buf[start..];
    let Some(nl) = find_newline(rest) else {
        if rest.len() > limits.inline_bytes_max {
            return Err(too_long);
        }
        return Ok(None);
    };
    if nl > limits.inline_bytes_max {
        return Err(too_long);
    }
    // The line is `<prefix>digits\r\n`: nl indexes the '\n'.
    if nl < 2 || rest[nl - 1] != b'\r' {
        return Err(invalid);
    }
    let digits = &rest[1..nl - 1];
    let value = parse_decimal(digits).ok_or(invalid)?;
    Ok(Some((value, start + nl + 1)))
}

/// Strict decimal: optional '-', 1..=19 digits, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<i64> {
    let (negative, body) = match digits.split_first() {
        Some((b'-', body)) => (true, body),
        _ => (false, digits),
    };
    if body.is_empty() || body.len() > 19 || !body.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in body {
        value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let Some((count, mut pos)) = read_header_int(
        buf,
        0,
        ProtocolError::MultibulkHeaderTooLong,
        ProtocolError::InvalidMultibulkLength,
        limits,
    )?
    else {
        return Ok(Parsed::Incomplete {
            needed_bytes_min: buf.len() + 1,
        });
    };
    // Redis treats `*0` and negative counts as an empty request and moves on.
    if count <= 0 {
        return Ok(Parsed::Command {
            args: Vec::new(),
            consumed: pos,
        });
    }
    let count = usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
    if count > limits.array_len_max {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    // Capacity is bounded by what the buffer could possibly hold (each argument takes at least
    // 4 bytes), so a `*4000000` header alone cannot make us allocate 4 million slots.
    let mut args = Vec::with_capacity(count.min(buf.len() / 4 + 1));
    for _ in 0..count {
        match buf.get(pos) {
            None => {
                return Ok(Parsed::Incomplete {
                    needed_bytes_min: buf.len() + 1,
                })
            }
            Some(b'$') => {}
            Some(&other) => {
                return Err(ProtocolError::ExpectedBulk {
                    found: char::from(other),
                })
            }
        }
        let Some((len, data_start)) = read_header_int(
            buf,
            pos,
            ProtocolError::BulkHeaderTooLong,
            ProtocolError::InvalidBulkLength,
            limits,
        )?
        else {
            return Ok(Parsed::Incomplete {
                needed_bytes_min: buf.len() + 1,
            });
        };
        let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
        if len > limits.bulk_bytes_max {
            return Err(ProtocolError::InvalidBulkLength);
        }
        let data_end = data_start + len;
        if buf.len() < data_end + 2 {
            return Ok(Parsed::Incomplete {
                needed_bytes_min: data_end + 2,
            });
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(ProtocolError::BulkNotTerminated);
        }
        args.push(buf[data_start..data_end].to_vec());
        pos = data_end + 2;
    }
    Ok(Parsed::Command {
        args,
        consumed: pos,
    })
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let Some(nl) = find_newline(buf) else {
        if buf.len() > limits.inline_bytes_max {
            return Err(ProtocolError::InlineTooLong);
        }
        return Ok(Parsed::Incomplete {
            needed_bytes_min: buf.len() + 1,
        });
    };
    if nl > limits.inline_bytes_max {
        return Err(ProtocolError::InlineTooLong);
    }
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let args = split_inline_args(&buf[..line_end])?;
    Ok(Parsed::Command {
        args,
        consumed: nl + 1,
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline line the way Redis's `sdssplitargs` does: whitespace separates arguments;
/// "double quotes" understand \n \r \t \b \a \\ \" and \xHH; 'single quotes' understand \'.
/// A closing quote must be followed by whitespace or the end of the line.
pub fn split_inline_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (arg, next) = match line[i] {
            b'"' => read_double_quoted(line, i + 1)?,
            b'\'' => read_single_quoted(line, i + 1)?,
            _ => {
                let end = line[i..]
                    .iter()
                    .position(|b| b.is_ascii_whitespace())
                    .map_or(line.len(), |p| i + p);
                (line[i..end].to_vec(), end)
            }
        };
        args.push(arg);
        i = next;
    }
    Ok(args)
}

/// After a closing quote at `close`, the next byte must be whitespace or the end of the line.
fn after_quote(line: &[u8], close: usize) -> Result<usize, ProtocolError> {
    match line.get(close + 1) {
        None => Ok(close + 1),
        Some(b) if b.is_ascii_whitespace() => Ok(close + 1),
        Some(_) => Err(ProtocolError::UnbalancedQuotes),
    }
}

fn read_double_quoted(line: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut arg = Vec::new();
    loop {
        let Some(&b) = line.get(i) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        match b {
            b'"' => return Ok((arg, after_quote(line, i)?)),
            b'\\' => {
                let Some(&e) = line.get(i + 1) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                let hex = line
                    .get(i + 2)
                    .zip(line.get(i + 3))
                    .and_then(|(&h, &l)| Some(hex_value(h)? << 4 | hex_value(l)?));
                match (e, hex) {
                    (b'x', Some(v)) => {
                        arg.push(v);
                        i += 4;
                        continue;
                    }
                    (b'n', _) => arg.push(b'\n'),
                    (b'r', _) => arg.push(b'\r'),
                    (b't', _) => arg.push(b'\t'),
                    (b'b', _) => arg.push(0x08),
                    (b'a', _) => arg.push(0x07),
                    (other, _) => arg.push(other),
                }
                i += 2;
            }
            _ => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

fn read_single_quoted(line: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut arg = Vec::new();
    loop {
        let Some(&b) = line.get(i) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        match b {
            b'\'' => return Ok((arg, after_quote(line, i)?)),
            b'\\' if line.get(i + 1) == Some(&b'\'') => {
                arg.push(b'\'');
                i += 2;
            }
            _ => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits() -> Limits {
        Limits {
            bulk_bytes_max: 16,
            array_len_max: 8,
            inline_bytes_max: 32,
        }
    }

    fn cmd(buf: &[u8]) -> (Vec<Vec<u8>>, usize) {
        match parse_command(buf, &limits()).unwrap() {
            Parsed::Command { args, consumed } => (args, consumed),
            other => panic!("expected a command, got {other:?}"),
        }
    }

    #[test]
    fn multibulk_command_and_pipelined_rest() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let (args, used) = cmd(buf);
        assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
        let (args2, used2) = cmd(&buf[used..]);
        assert_eq!(args2, vec![b"PING".to_vec()]);
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn binary_bulk_with_crlf_inside() {
        let (args, _) = cmd(b"*1\r\n$4\r\n\r\n\xff\x00\r\n");
        assert_eq!(args, vec![b"\r\n\xff\x00".to_vec()]);
    }

    #[test]
    fn every_prefix_is_incomplete_never_an_error() {
        let buf = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 0..buf.len() {
            match parse_command(&buf[..cut], &limits()).unwrap() {
                Parsed::Incomplete { needed_bytes_min } => {
                    assert!(needed_bytes_min > cut && needed_bytes_min <= buf.len())
                }
                other => panic!("prefix {cut} parsed as {other:?}"),
            }
        }
        assert_eq!(cmd(buf).1, buf.len());
    }

    #[test]
    fn limits_are_enforced_before_the_data_arrives() {
        let l = limits();
        assert_eq!(
            parse_command(b"*1\r\n$17\r\n", &l),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_command(b"*9\r\n", &l),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        let long_inline = vec![b'a'; 33];
        assert_eq!(
            parse_command(&long_inline, &l),
            Err(ProtocolError::InlineTooLong)
        );
        let mut long_header = b"*".to_vec();
        long_header.extend(vec![b'1'; 40]);
        assert_eq!(
            parse_command(&long_header, &l),
            Err(ProtocolError::MultibulkHeaderTooLong)
        );
    }

    #[test]
    fn malformed_frames_are_protocol_errors() {
        let l = limits();
        assert_eq!(
            parse_command(b"*1\r\n:3\r\n", &l),
            Err(ProtocolError::ExpectedBulk { found: ':' })
        );
        assert_eq!(
            parse_command(b"*x\r\n", &l),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_command(b"*1\r\n$-1\r\n", &l),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_command(b"*1\r\n$3\r\nabcXY", &l),
            Err(ProtocolError::BulkNotTerminated)
        );
        assert_eq!(
            parse_command(b"*1\n", &l),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_command(b"*99999999999999999999\r\n", &l),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            ProtocolError::InvalidBulkLength.to_string(),
            "Protocol error: invalid bulk length"
        );
    }

    #[test]
    fn empty_and_negative_multibulk_are_skipped() {
        assert_eq!(cmd(b"*0\r\n"), (vec![], 4));
        assert_eq!(cmd(b"*-1\r\n"), (vec![], 5));
    }

    #[test]
    fn inline_commands_with_quotes() {
        let (args, used) = cmd(b"SET k \"a b\\n\\x41\" 'it\\'s'\r\nrest");
        assert_eq!(
            args,
            vec![
                b"SET".to_vec(),
                b"k".to_vec(),
                b"a b\nA".to_vec(),
                b"it's".to_vec()
            ]
        );
        assert_eq!(used, 27);
        assert_eq!(cmd(b"PING\n"), (vec![b"PING".to_vec()], 5));
        assert_eq!(cmd(b"\r\n"), (vec![], 2));
        assert_eq!(
            parse_command(b"GET \"abc\r\n", &limits()),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_command(b"GET \"a\"b\r\n", &limits()),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    mod prop {
        #![allow(clippy::unwrap_used)]
        use super::*;
        use proptest::prelude::*;

        fn encode(args: &[Vec<u8>]) -> Vec<u8> {
            let mut out = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                out.extend(format!("${}\r\n", a.len()).bytes());
                out.extend(a);
                out.extend(b"\r\n");
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
                let l = limits();
                if let Ok(Parsed::Command { consumed, .. }) = parse_command(&buf, &l) {
                    prop_assert!(consumed > 0 && consumed <= buf.len());
                }
                if let Ok(Parsed::Incomplete { needed_bytes_min }) = parse_command(&buf, &l) {
                    prop_assert!(needed_bytes_min > buf.len());
                }
            }

            #[test]
            fn mutated_frames_never_panic(
                args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6),
                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            ) {
                let mut buf = encode(&args);
                for (at, byte) in flips {
                    let i = at % buf.len();
                    buf[i] = byte;
                }
                let _ = parse_command(&buf, &limits());
            }

            #[test]
            fn encoded_frames_round_trip(
                args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..8),
            ) {
                let buf = encode(&args);
                let parsed = parse_command(&buf, &limits()).unwrap();
                prop_assert_eq!(parsed, Parsed::Command { args, consumed: buf.len() });
            }
        }
    }
}
