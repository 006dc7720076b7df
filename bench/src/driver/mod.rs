//! One driver interface over every target: a connection executes a batch of [`Request`]s
//! (one request, or a pipeline) and says how each ended and when its answer arrived.
//!
//! Targets: mantisd or Redis over RESP, mantisd over HTTP, the engine in-process. A PostgreSQL
//! driver for the SQL workload slots in as one more [`Endpoint`]/[`Conn`] variant once mantisd's
//! pg listener and the SQL engine land (engine/sql, appliance/src/pg).
//!
//! Connections run on the load generator's glommio executors: futures are !Send, and each
//! connection is used by one task only.

mod http;
mod inproc;
mod resp;

use std::net::SocketAddr;
use std::time::Instant;

use mantis_engine::EngineHandle;

use crate::recorder::Outcome;
use crate::workload::Request;

/// Largest reply or response a connection buffers, in bytes: a runaway reply is an error,
/// not an out-of-memory.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{target}: {op}: {source}")]
    Io {
        target: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: protocol error: {reason}")]
    Protocol { target: String, reason: String },
    #[error("{target}: {reason}")]
    Server { target: String, reason: String },
}

/// Where requests go; cloned into every load-generator thread.
#[derive(Clone)]
pub enum Endpoint {
    Resp(SocketAddr),
    Http(SocketAddr),
    Engine(EngineHandle),
}

impl Endpoint {
    pub async fn connect(&self) -> Result<Conn, DriverError> {
        Ok(match self {
            Endpoint::Resp(a) => Conn::Resp(resp::RespConn::connect(*a).await?),
            Endpoint::Http(a) => Conn::Http(http::HttpConn::connect(*a).await?),
            Endpoint::Engine(h) => Conn::Engine(inproc::EngineConn::new(h.clone())),
        })
    }
}

pub enum Conn {
    Resp(resp::RespConn),
    Http(http::HttpConn),
    Engine(inproc::EngineConn),
}

impl Conn {
    /// Sends `requests` (pipelined where the protocol allows) and returns each one's outcome
    /// and answer time, in order. An `Err` means the connection is unusable: reconnect.
    pub async fn execute(
        &mut self,
        requests: &[Request],
    ) -> Result<Vec<(Outcome, Instant)>, DriverError> {
        match self {
            Conn::Resp(c) => c.execute(requests).await,
            Conn::Http(c) => c.execute(requests).await,
            Conn::Engine(c) => c.execute(requests).await,
        }
    }

    /// Stores `records` as fast as the protocol allows (MSET, a batch POST, a write batch).
    pub async fn load(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DriverError> {
        match self {
            Conn::Resp(c) => c.load(records).await,
            Conn::Http(c) => c.load(records).await,
            Conn::Engine(c) => c.load(records).await,
        }
    }
}

/// Reads from `stream` into `buf` (appending), at most [`READ_CHUNK_BYTES`] at a time; fails on
/// end of stream and when `buf` would outgrow [`RESPONSE_BYTES_MAX`].
async fn read_more<S: futures::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    scratch: &mut [u8],
    target: &str,
) -> Result<(), DriverError> {
    use futures::AsyncReadExt;
    if buf.len() >= RESPONSE_BYTES_MAX {
        return Err(DriverError::Protocol {
            target: target.to_string(),
            reason: format!("response larger than {RESPONSE_BYTES_MAX} bytes"),
        });
    }
    let n = stream
        .read(scratch)
        .await
        .map_err(|source| DriverError::Io {
            target: target.to_string(),
            op: "read",
            source,
        })?;
    if n == 0 {
        return Err(DriverError::Io {
            target: target.to_string(),
            op: "read",
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ),
        });
    }
    buf.extend_from_slice(&scratch[..n]);
    Ok(())
}

/// Connects a TCP driver connection with Nagle off (requests are small and latency is the
/// figure); errors name the target as `scheme://addr`, which the caller keeps for later ones.
pub(super) async fn connect_nodelay(
    addr: SocketAddr,
    scheme: &str,
) -> Result<(String, glommio::net::TcpStream), DriverError> {
    let target = format!("{scheme}://{addr}");
    let io = |op| {
        let target = target.clone();
        move |e: glommio::GlommioError<()>| DriverError::Io {
            target,
            op,
            source: crate::error::glommio_io_error(e),
        }
    };
    let stream = glommio::net::TcpStream::connect(addr)
        .await
        .map_err(io("connect"))?;
    stream.set_nodelay(true).map_err(io("set_nodelay"))?;
    Ok((target, stream))
}

fn scratch_buffer() -> Box<[u8]> {
    vec![0u8; READ_CHUNK_BYTES].into_boxed_slice()
}

/// Base64 (standard alphabet, padded) for HTTP batch values: one small function rather than
/// a dependency.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0x00]), "/wA=");
    }
}
