//! RESP replies and their encoding in RESP2 or RESP3 (the protocol a connection chose with
//! HELLO). Commands build a [`Reply`]; the connection encodes it into its output buffer.

use std::io::Write;

/// The protocol version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(&'static str),
    /// A simple string built at run time (must not contain CR or LF).
    Status(String),
    /// A full error line without the leading `-`, e.g. `ERR unknown command ...` or
    /// `WRONGTYPE ...`: the first word is the error code clients see.
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// The null bulk string (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// The null array (`*-1` in RESP2, `_` in RESP3).
    NullArray,
    Array(Vec<Reply>),
    /// A map in RESP3; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A boolean in RESP3; the integer 1 or 0 in RESP2.
    Bool(bool),
}

impl Reply {
    pub const OK: Reply = Reply::Simple("OK");

    /// An `ERR`-coded error.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    pub fn bulk_str(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of `self` to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Status(s) => line(out, b'+', sanitize(s).as_bytes()),
            Reply::Error(s) => line(out, b'-', sanitize(s).as_bytes()),
            Reply::Int(n) => int_line(out, b':', *n),
            Reply::Bulk(data) => {
                int_line(out, b'$', len_i64(data.len()));
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Null => match proto {
                Protocol::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::NullArray => match proto {
                Protocol::Resp2 => out.extend_from_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                int_line(out, b'*', len_i64(items.len()));
                for item in items {
                    item.encode(proto, out);
                }
            }
            Reply::Map(pairs) => {
                match proto {
                    Protocol::Resp2 => int_line(out, b'*', len_i64(pairs.len() * 2)),
                    Protocol::Resp3 => int_line(out, b'%', len_i64(pairs.len())),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Bool(b) => match proto {
                Protocol::Resp2 => int_line(out, b':', i64::from(*b)),
                Protocol::Resp3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            },
        }
    }
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

fn line(out: &mut Vec<u8>, prefix: u8, body: &[u8]) {
    out.push(prefix);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

fn int_line(out: &mut Vec<u8>, prefix: u8, n: i64) {
    out.push(prefix);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
    out.extend_from_slice(b"\r\n");
}

/// Simple strings and errors are single lines: a CR or LF inside (e.g. echoed from a client's
/// argument into an error message) would break the framing, so they become spaces.
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(p, &mut out);
        out
    }

    #[test]
    fn encodings_in_both_protocols() {
        assert_eq!(enc(&Reply::OK, Protocol::Resp2), b"+OK\r\n");
        assert_eq!(enc(&Reply::Int(-3), Protocol::Resp2), b":-3\r\n");
        assert_eq!(
            enc(&Reply::Bulk(b"a\r\nb".to_vec()), Protocol::Resp2),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(enc(&Reply::Null, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(enc(&Reply::Null, Protocol::Resp3), b"_\r\n");
        assert_eq!(enc(&Reply::NullArray, Protocol::Resp2), b"*-1\r\n");
        let map = Reply::Map(vec![(Reply::bulk_str("a"), Reply::Int(1))]);
        assert_eq!(enc(&map, Protocol::Resp2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&map, Protocol::Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Bool(true), Protocol::Resp3), b"#t\r\n");
        assert_eq!(enc(&Reply::Bool(true), Protocol::Resp2), b":1\r\n");
    }

    #[test]
    fn errors_stay_on_one_line() {
        let r = Reply::err("unknown command 'a\r\nb'");
        assert_eq!(enc(&r, Protocol::Resp2), b"-ERR unknown command 'a  b'\r\n");
    }
}
