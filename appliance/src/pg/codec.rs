//! The PostgreSQL v3 wire format: decoding what a client sends (the untyped startup packet,
//! then typed messages) and encoding what the server answers. Pure functions over byte slices,
//! no I/O: the connection loop feeds them, the fuzz target hammers them.
//!
//! Every length is checked against a limit before anything is allocated for it, so a hostile
//! client costs at most the limit and never a panic.

use super::error::PgError;

/// Longest startup packet accepted (PostgreSQL's own MAX_STARTUP_PACKET_LENGTH).
pub const STARTUP_BYTES_MAX: usize = 10_000;
/// Most parameters one Bind or Parse may carry (the protocol's own i16 limit).
pub const PARAMS_MAX: usize = i16::MAX as usize;

pub const PROTOCOL_V3: i32 = 196_608;
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// The first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    Ssl,
    GssEnc,
    Cancel {
        process_id: i32,
        secret_key: i32,
    },
    /// Protocol `major.minor` with its `name=value` parameters, in order.
    Start {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
}

/// Result format of a value: text (0) or binary (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    fn from_code(code: i16) -> Result<Format, PgError> {
        match code {
            0 => Ok(Format::Text),
            1 => Ok(Format::Binary),
            other => Err(PgError::protocol(format!("invalid format code: {other}"))),
        }
    }

    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }
}

/// Statement ('S') or portal ('P'), for Describe and Close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

/// A typed message from the client, owned (copied out of the read buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend {
    Query(String),
    Parse {
        name: String,
        sql: String,
        param_oids: Vec<u32>,
    },
    Bind {
        portal: String,
        statement: String,
        param_formats: Vec<Format>,
        params: Vec<Option<Vec<u8>>>,
        result_formats: Vec<Format>,
    },
    Describe {
        target: Target,
        name: String,
    },
    Execute {
        portal: String,
        rows_max: u32,
    },
    Close {
        target: Target,
        name: String,
    },
    Sync,
    Flush,
    Terminate,
    /// 'p': a password, SASLInitialResponse or SASLResponse; meaning depends on the auth state.
    Password(Vec<u8>),
    /// 'd': a piece of COPY FROM STDIN data (issue 11).
    CopyData(Vec<u8>),
    /// 'c': the end of COPY data.
    CopyDone,
    /// 'f': the client aborts the COPY, with its reason.
    CopyFail(String),
    /// Any other tag (function calls, ...): answered with an error.
    Unsupported(u8),
}

/// Outcome of trying to decode from the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// Not complete; wait until the buffer holds at least this many bytes.
    Incomplete {
        needed_bytes_min: usize,
    },
    Done {
        value: T,
        consumed: usize,
    },
}

fn read_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes the startup packet (no type byte: length, then a code).
pub fn decode_startup(buf: &[u8]) -> Result<Decoded<Startup>, PgError> {
    if buf.len() < 4 {
        return Ok(Decoded::Incomplete {
            needed_bytes_min: 4,
        });
    }
    let len = read_i32(buf);
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| (8..=STARTUP_BYTES_MAX).contains(&l))
        .ok_or_else(|| PgError::protocol(format!("invalid length of startup packet: {len}")))?;
    if buf.len() < len {
        return Ok(Decoded::Incomplete {
            needed_bytes_min: len,
        });
    }
    let body = &buf[4..len];
    let code = read_i32(body);
    let startup = match code {
        SSL_REQUEST_CODE => Startup::Ssl,
        GSSENC_REQUEST_CODE => Startup::GssEnc,
        CANCEL_REQUEST_CODE => {
            if body.len() != 12 {
                return Err(PgError::protocol("invalid length of cancel request"));
            }
            Startup::Cancel {
                process_id: read_i32(&body[4..]),
                secret_key: read_i32(&body[8..]),
            }
        }
        version => Startup::Start {
            major: u16::try_from(version >> 16).unwrap_or(u16::MAX),
            minor: u16::try_from(version & 0xffff).unwrap_or(u16::MAX),
            params: parse_startup_params(&body[4..])?,
        },
    };
    Ok(Decoded::Done {
        value: startup,
        consumed: len,
    })
}

fn parse_startup_params(body: &[u8]) -> Result<Vec<(String, String)>, PgError> {
    let mut params = Vec::new();
    let mut r = Reader::new(body);
    // Pairs of NUL-terminated strings up to a lone NUL; bounded by STARTUP_BYTES_MAX.
    while r.rest().first().is_some_and(|&c| c != 0) {
        let name = r.cstr()?;
        let value = r.cstr()?;
        params.push((name, value));
    }
    Ok(params)
}

/// Decodes one typed message: a tag byte, an i32 length (counting itself), the body.
/// `message_bytes_max` bounds the declared length; beyond it is a fatal protocol error.
pub fn decode_message(buf: &[u8], message_bytes_max: usize) -> Result<Decoded<Frontend>, PgError> {
    if buf.len() < 5 {
        return Ok(Decoded::Incomplete {
            needed_bytes_min: 5,
        });
    }
    let tag = buf[0];
    let declared = read_i32(&buf[1..]);
    let len = usize::try_from(declared)
        .ok()
        .filter(|&l| l >= 4)
        .ok_or_else(|| PgError::protocol(format!("invalid message length {declared}")))?;
    if len > message_bytes_max {
        return Err(PgError::protocol(format!(
            "message of {len} bytes exceeds the limit of {message_bytes_max} bytes"
        )));
    }
    let total = len + 1;
    if buf.len() < total {
        return Ok(Decoded::Incomplete {
            needed_bytes_min: total,
        });
    }
    let body = &buf[5..total];
    let message = parse_body(tag, body)?;
    Ok(Decoded::Done {
        value: message,
        consumed: total,
    })
}

fn parse_body(tag: u8, body: &[u8]) -> Result<Frontend, PgError> {
    let mut r = Reader::new(body);
    let message = match tag {
        b'Q' => Frontend::Query(r.cstr()?),
        b'P' => {
            let name = r.cstr()?;
            let sql = r.cstr()?;
            let n = r.count()?;
            let mut param_oids = Vec::with_capacity(n.min(r.rest().len() / 4));
            for _ in 0..n {
                param_oids.push(r.i32()? as u32);
            }
            Frontend::Parse {
                name,
                sql,
                param_oids,
            }
        }
        b'B' => parse_bind(&mut r)?,
        b'D' => Frontend::Describe {
            target: r.target()?,
            name: r.cstr()?,
        },
        b'E' => {
            let portal = r.cstr()?;
            let rows = r.i32()?;
            Frontend::Execute {
                portal,
                // Zero or negative means "no limit".
                rows_max: u32::try_from(rows).unwrap_or(0),
            }
        }
        b'C' => Frontend::Close {
            target: r.target()?,
            name: r.cstr()?,
        },
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'X' => Frontend::Terminate,
        b'p' => Frontend::Password(body.to_vec()),
        b'd' => Frontend::CopyData(body.to_vec()),
        b'c' => Frontend::CopyDone,
        b'f' => Frontend::CopyFail(r.cstr()?),
        other => return Ok(Frontend::Unsupported(other)),
    };
    if tag != b'p' && tag != b'd' && !r.rest().is_empty() {
        return Err(PgError::protocol(format!(
            "message '{}' has {} bytes of trailing data",
            char::from(tag),
            r.rest().len()
        )));
    }
    Ok(message)
}

fn parse_bind(r: &mut Reader<'_>) -> Result<Frontend, PgError> {
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let n = r.count()?;
    let mut param_formats = Vec::with_capacity(n.min(r.rest().len() / 2));
    for _ in 0..n {
        param_formats.push(Format::from_code(r.i16()?)?);
    }
    let n = r.count()?;
    let mut params = Vec::with_capacity(n.min(r.rest().len() / 4));
    for _ in 0..n {
        let len = r.i32()?;
        params.push(match len {
            -1 => None,
            l if l < 0 => return Err(PgError::protocol(format!("invalid parameter length {l}"))),
            l => Some(r.bytes(l as usize)?.to_vec()),
        });
    }
    let n = r.count()?;
    let mut result_formats = Vec::with_capacity(n.min(r.rest().len() / 2));
    for _ in 0..n {
        result_formats.push(Format::from_code(r.i16()?)?);
    }
    Ok(Frontend::Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// A cursor over a message body; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn short() -> PgError {
        PgError::protocol("message too short for its contents")
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], PgError> {
        if self.buf.len() < n {
            return Err(Self::short());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn i16(&mut self) -> Result<i16, PgError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, PgError> {
        Ok(read_i32(self.bytes(4)?))
    }

    /// An i16 count that must not be negative.
    fn count(&mut self) -> Result<usize, PgError> {
        let n = self.i16()?;
        usize::try_from(n).map_err(|_| PgError::protocol(format!("invalid count {n}")))
    }

    fn target(&mut self) -> Result<Target, PgError> {
        match self.bytes(1)?[0] {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            other => Err(PgError::protocol(format!(
                "invalid describe/close target '{}'",
                char::from(other)
            ))),
        }
    }

    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self) -> Result<String, PgError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| PgError::protocol("string not terminated by NUL"))?;
        let s = std::str::from_utf8(&self.buf[..end]).map_err(|_| {
            PgError::fatal(
                super::error::sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                "invalid byte sequence for encoding \"UTF8\"",
            )
        })?;
        self.buf = &self.buf[end + 1..];
        Ok(s.to_string())
    }
}

/// Encoders of server messages, appending to an output buffer.
pub mod encode {
    use super::super::error::PgError;
    use super::Format;

    /// Starts a message with `tag` and a length placeholder; returns where the length goes.
    fn begin(out: &mut Vec<u8>, tag: u8) -> usize {
        out.push(tag);
        let at = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        at
    }

    /// Patches the length of the message started at `at` (it counts itself, not the tag).
    fn end(out: &mut [u8], at: usize) {
        let len = out.len() - at;
        let len = i32::try_from(len).unwrap_or(i32::MAX);
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn cstr(out: &mut Vec<u8>, s: &str) {
        // A NUL inside would cut the string short; PostgreSQL strings never contain one.
        out.extend(s.bytes().filter(|&b| b != 0));
        out.push(0);
    }

    pub fn auth_ok(out: &mut Vec<u8>) {
        auth(out, 0, &[]);
    }

    /// AuthenticationXXX: `code` then its data (md5 salt, SASL mechanisms or data).
    pub fn auth(out: &mut Vec<u8>, code: i32, data: &[u8]) {
        let at = begin(out, b'R');
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(data);
        end(out, at);
    }

    pub fn parameter_status(out: &mut Vec<u8>, name: &str, value: &str) {
        let at = begin(out, b'S');
        cstr(out, name);
        cstr(out, value);
        end(out, at);
    }

    pub fn backend_key_data(out: &mut Vec<u8>, process_id: i32, secret_key: i32) {
        let at = begin(out, b'K');
        out.extend_from_slice(&process_id.to_be_bytes());
        out.extend_from_slice(&secret_key.to_be_bytes());
        end(out, at);
    }

    pub fn negotiate_protocol_version(out: &mut Vec<u8>, minor: i32, unknown: &[&str]) {
        let at = begin(out, b'v');
        out.extend_from_slice(&minor.to_be_bytes());
        let n = i32::try_from(unknown.len()).unwrap_or(i32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for name in unknown {
            cstr(out, name);
        }
        end(out, at);
    }

    /// ReadyForQuery with the transaction status: b'I' idle, b'T' in a block, b'E' failed.
    pub fn ready_for_query(out: &mut Vec<u8>, status: u8) {
        let at = begin(out, b'Z');
        out.push(status);
        end(out, at);
    }

    /// One column of a RowDescription.
    pub struct Field<'a> {
        pub name: &'a str,
        pub type_oid: u32,
        pub type_len: i16,
        pub format: Format,
    }

    pub fn row_description(out: &mut Vec<u8>, fields: &[Field<'_>]) {
        let at = begin(out, b'T');
        let n = i16::try_from(fields.len()).unwrap_or(i16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for f in fields {
            cstr(out, f.name);
            out.extend_from_slice(&0i32.to_be_bytes()); // table oid: none
            out.extend_from_slice(&0i16.to_be_bytes()); // column number: none
            out.extend_from_slice(&f.type_oid.to_be_bytes());
            out.extend_from_slice(&f.type_len.to_be_bytes());
            out.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier: none
            out.extend_from_slice(&f.format.code().to_be_bytes());
        }
        end(out, at);
    }

    /// Starts a DataRow of `columns` values; add each with [`data_value`], then [`data_row_end`].
    pub fn data_row_begin(out: &mut Vec<u8>, columns: usize) -> usize {
        let at = begin(out, b'D');
        let n = i16::try_from(columns).unwrap_or(i16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        at
    }

    pub fn data_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                let n = i32::try_from(v.len()).unwrap_or(i32::MAX);
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    pub fn data_row_end(out: &mut [u8], at: usize) {
        end(out, at);
    }

    pub fn command_complete(out: &mut Vec<u8>, tag: &str) {
        let at = begin(out, b'C');
        cstr(out, tag);
        end(out, at);
    }

    pub fn parameter_description(out: &mut Vec<u8>, oids: &[u32]) {
        let at = begin(out, b't');
        let n = i16::try_from(oids.len()).unwrap_or(i16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for oid in oids {
            out.extend_from_slice(&oid.to_be_bytes());
        }
        end(out, at);
    }

    /// A message with no body: ParseComplete '1', BindComplete '2', CloseComplete '3',
    /// NoData 'n', EmptyQueryResponse 'I', PortalSuspended 's'.
    /// CopyInResponse (issue 11): text format for the whole copy and each of `columns`.
    pub fn copy_in_response(out: &mut Vec<u8>, columns: usize) {
        let at = begin(out, b'G');
        out.push(0);
        let n = i16::try_from(columns).unwrap_or(i16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for _ in 0..n {
            out.extend_from_slice(&0i16.to_be_bytes());
        }
        end(out, at);
    }

    pub fn empty(out: &mut Vec<u8>, tag: u8) {
        let at = begin(out, tag);
        end(out, at);
    }

    pub fn error_response(out: &mut Vec<u8>, e: &PgError) {
        let at = begin(out, b'E');
        for (field, value) in [
            (b'S', e.severity.as_str()),
            (b'V', e.severity.as_str()),
            (b'C', e.sqlstate),
            (b'M', e.message.as_str()),
        ] {
            out.push(field);
            cstr(out, value);
        }
        if let Some(detail) = &e.detail {
            out.push(b'D');
            cstr(out, detail);
        }
        if let Some(position) = e.position {
            out.push(b'P');
            cstr(out, &position.to_string());
        }
        out.push(0);
        end(out, at);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn done<T>(d: Decoded<T>) -> (T, usize) {
        match d {
            Decoded::Done { value, consumed } => (value, consumed),
            Decoded::Incomplete { .. } => panic!("incomplete"),
        }
    }

    #[test]
    fn startup_packet_with_params() {
        let mut body = PROTOCOL_V3.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0alice\0database\0db\0\0");
        let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        pkt.extend_from_slice(&body);
        assert_eq!(
            decode_startup(&pkt[..6]).unwrap(),
            Decoded::Incomplete {
                needed_bytes_min: pkt.len()
            }
        );
        let (s, n) = done(decode_startup(&pkt).unwrap());
        assert_eq!(n, pkt.len());
        assert_eq!(
            s,
            Startup::Start {
                major: 3,
                minor: 0,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
    }

    #[test]
    fn ssl_and_cancel_requests() {
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        assert_eq!(done(decode_startup(&ssl).unwrap()).0, Startup::Ssl);
        let mut cancel = 16i32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        cancel.extend_from_slice(&7i32.to_be_bytes());
        cancel.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            done(decode_startup(&cancel).unwrap()).0,
            Startup::Cancel {
                process_id: 7,
                secret_key: 9
            }
        );
    }

    #[test]
    fn oversized_startup_and_message_are_rejected_before_buffering() {
        let huge = 1_000_000i32.to_be_bytes();
        let e = decode_startup(&huge).unwrap_err();
        assert_eq!(e.sqlstate, "08P01");
        let mut m = vec![b'Q'];
        m.extend_from_slice(&(1i32 << 20).to_be_bytes());
        let e = decode_message(&m, 1024).unwrap_err();
        assert!(e.message.contains("exceeds the limit"), "{e}");
        let mut neg = vec![b'Q'];
        neg.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_message(&neg, 1024).is_err());
    }

    #[test]
    fn bind_with_null_and_binary_params() {
        let mut body = b"p1\0s1\0".to_vec();
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&42i32.to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        let (m, _) = done(decode_message(&msg(b'B', &body), 1 << 20).unwrap());
        assert_eq!(
            m,
            Frontend::Bind {
                portal: "p1".into(),
                statement: "s1".into(),
                param_formats: vec![Format::Binary],
                params: vec![Some(42i32.to_be_bytes().to_vec()), None],
                result_formats: vec![],
            }
        );
    }

    #[test]
    fn truncated_and_trailing_bodies_are_protocol_errors() {
        // Bind declaring one parameter of 100 bytes but carrying 2.
        let mut body = b"\0\0".to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&100i32.to_be_bytes());
        body.extend_from_slice(b"ab");
        assert!(decode_message(&msg(b'B', &body), 1 << 20).is_err());
        assert!(decode_message(&msg(b'S', b"x"), 1 << 20).is_err());
        assert!(decode_message(&msg(b'Q', b"no nul"), 1 << 20).is_err());
    }

    #[test]
    fn error_response_fields() {
        let mut out = Vec::new();
        let e = PgError::error("42601", "syntax error").with_position(Some(8));
        encode::error_response(&mut out, &e);
        assert_eq!(out[0], b'E');
        let len = i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
        let text = String::from_utf8_lossy(&out[5..]).to_string();
        assert!(text.contains("SERROR\0"));
        assert!(text.contains("C42601\0"));
        assert!(text.contains("Msyntax error\0"));
        assert!(text.contains("P8\0"));
        assert_eq!(*out.last().unwrap(), 0);
    }
}
