//! A small blocking PostgreSQL wire v3 client for the simple query protocol: startup without a
//! password (mantisd trusts loopback clients when no password is set), then `Q` messages; the
//! answer keeps the command tags, rows as text, the error's SQLSTATE and the transaction status
//! of ReadyForQuery, which the bank scenario needs to tell a COMMIT that committed from one that
//! rolled back.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest backend message accepted (rows of the bank table are small).
const MESSAGE_BYTES_MAX: usize = 16 << 20;
const PROTOCOL_V3: i32 = 196_608;

/// An error answer: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub code: String,
    pub message: String,
}

/// What one simple query returned (all its statements).
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub tags: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub error: Option<DbError>,
    /// ReadyForQuery's status: `I` idle, `T` in a transaction, `E` in a failed transaction.
    pub status: u8,
}

pub struct PgClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

fn frame(kind: Option<u8>, body: &[u8], out: &mut Vec<u8>) {
    if let Some(k) = kind {
        out.push(k);
    }
    let len = i32::try_from(body.len() + 4).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// Fields of an ErrorResponse / NoticeResponse body.
fn error_fields(body: &[u8]) -> DbError {
    let mut e = DbError {
        code: String::new(),
        message: String::new(),
    };
    for field in body.split(|b| *b == 0) {
        let Some((&kind, text)) = field.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'C' => e.code = text,
            b'M' => e.message = text,
            _ => {}
        }
    }
    e
}

fn data_row(body: &[u8]) -> std::io::Result<Vec<Option<String>>> {
    let short = || bad("short DataRow");
    let n = i16::from_be_bytes(
        body.get(..2)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let mut at = 2usize;
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len_bytes: [u8; 4] = body
            .get(at..at + 4)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?;
        at += 4;
        let len = i32::from_be_bytes(len_bytes);
        if len < 0 {
            row.push(None);
            continue;
        }
        let end = at + len as usize;
        let v = body.get(at..end).ok_or_else(short)?;
        row.push(Some(String::from_utf8_lossy(v).into_owned()));
        at = end;
    }
    Ok(row)
}

impl PgClient {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<PgClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut c = PgClient {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        };
        let mut body = PROTOCOL_V3.to_be_bytes().to_vec();
        for part in ["user", "chaos", "database", "mantis"] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = Vec::new();
        frame(None, &body, &mut out);
        c.writer.write_all(&out)?;
        loop {
            let (kind, body) = c.read_message()?;
            match kind {
                b'R' if body.get(..4) == Some(&[0, 0, 0, 0]) => {}
                b'R' => return Err(bad("the server asks for a password")),
                b'E' => {
                    let e = error_fields(&body);
                    return Err(bad(format!("startup refused: {} {}", e.code, e.message)));
                }
                b'Z' => return Ok(c),
                _ => {}
            }
        }
    }

    fn read_message(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.reader.read_exact(&mut head)?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| (4..=MESSAGE_BYTES_MAX).contains(l))
            .ok_or_else(|| bad(format!("message length {len}")))?;
        let mut body = vec![0u8; len - 4];
        self.reader.read_exact(&mut body)?;
        Ok((head[0], body))
    }

    /// Runs one simple query (may hold several statements) and reads until ReadyForQuery.
    pub fn query(&mut self, sql: &str) -> std::io::Result<Answer> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        let mut out = Vec::new();
        frame(Some(b'Q'), &body, &mut out);
        self.writer.write_all(&out)?;
        let mut a = Answer::default();
        loop {
            let (kind, body) = self.read_message()?;
            match kind {
                b'D' => a.rows.push(data_row(&body)?),
                b'C' => a.tags.push(
                    String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned(),
                ),
                b'E' => a.error = Some(error_fields(&body)),
                b'Z' => {
                    a.status = body.first().copied().unwrap_or(b'?');
                    return Ok(a);
                }
                // RowDescription, EmptyQueryResponse, notices, parameter status.
                _ => {}
            }
        }
    }
}

/// Integer of row `r`, column `c` of an answer.
pub fn int_at(a: &Answer, r: usize, c: usize) -> Option<i64> {
    a.rows.get(r)?.get(c)?.as_deref()?.parse().ok()
}
