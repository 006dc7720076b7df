//! HTTP/1.1 keep-alive client for mantisd's `/api/v1/kv` API (docs/http.md). One request at a
//! time per connection: HTTP/1.1 pipelining is not something clients use.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use futures::AsyncWriteExt;
use glommio::net::TcpStream;

use super::{base64, read_more, scratch_buffer, DriverError};
use crate::recorder::Outcome;
use crate::workload::Request;

/// Largest response head the client accepts, in bytes.
const HEAD_BYTES_MAX: usize = 64 << 10;

/// A parsed response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Parses one response from the front of `buf`: `Ok(None)` when more bytes are needed.
/// Bodies must carry `Content-Length` (mantisd's do); chunked bodies are refused.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > HEAD_BYTES_MAX {
            return Err(format!("response head over {HEAD_BYTES_MAX} bytes"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(format!("unsupported Transfer-Encoding {value:?}"));
        }
    }
    let body_start = head_end + 4;
    let end = body_start + content_length;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((
        Response {
            status,
            body: buf[body_start..end].to_vec(),
        },
        end,
    )))
}

pub struct HttpConn {
    target: String,
    host: String,
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    scratch: Box<[u8]>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn, DriverError> {
        let (target, stream) = super::connect_nodelay(addr, "http").await?;
        Ok(HttpConn {
            target,
            host: addr.to_string(),
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            scratch: scratch_buffer(),
        })
    }

    /// One request and its response. Keys of the harness are ASCII letters and hex digits, so
    /// they go into the path as they are.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<Response, DriverError> {
        self.wbuf.clear();
        let mut head = String::new();
        let _ = write!(head, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !body.is_empty() || method == "PUT" || method == "POST" {
            let _ = write!(
                head,
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        head.push_str("\r\n");
        self.wbuf.extend_from_slice(head.as_bytes());
        self.wbuf.extend_from_slice(body);
        let target = &self.target;
        let io = |source| DriverError::Io {
            target: target.clone(),
            op: "write",
            source,
        };
        self.stream.write_all(&self.wbuf).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        loop {
            match parse_response(&self.rbuf) {
                Ok(Some((response, used))) => {
                    self.rbuf.drain(..used);
                    return Ok(response);
                }
                Ok(None) => {
                    read_more(
                        &mut self.stream,
                        &mut self.rbuf,
                        &mut self.scratch,
                        &self.target,
                    )
                    .await?
                }
                Err(reason) => {
                    return Err(DriverError::Protocol {
                        target: self.target.clone(),
                        reason,
                    })
                }
            }
        }
    }

    async fn one(&mut self, r: &Request) -> Result<Outcome, DriverError> {
        const OCTETS: &str = "application/octet-stream";
        Ok(match r {
            Request::Get(k) => {
                let resp = self.request("GET", &kv_path(k), b"", OCTETS).await?;
                match resp.status {
                    200 => Outcome::Ok,
                    404 => Outcome::Miss,
                    _ => status_error(&resp),
                }
            }
            Request::Set(k, v) => put_outcome(&self.request("PUT", &kv_path(k), v, OCTETS).await?),
            Request::Scan(start, count) => {
                let path = format!("/api/v1/kv?cursor={}&limit={count}", hex(start));
                let resp = self.request("GET", &path, b"", OCTETS).await?;
                if resp.status != 200 {
                    status_error(&resp)
                } else {
                    scan_outcome(&resp.body)
                }
            }
            Request::ReadModifyWrite(k, v) => {
                let resp = self.request("GET", &kv_path(k), b"", OCTETS).await?;
                match resp.status {
                    200 | 404 => put_outcome(&self.request("PUT", &kv_path(k), v, OCTETS).await?),
                    _ => status_error(&resp),
                }
            }
        })
    }

    pub async fn execute(
        &mut self,
        requests: &[Request],
    ) -> Result<Vec<(Outcome, Instant)>, DriverError> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            let o = self.one(r).await?;
            out.push((o, Instant::now()));
        }
        Ok(out)
    }

    pub async fn load(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DriverError> {
        let ops: Vec<serde_json::Value> = records
            .iter()
            .map(|(k, v)| {
                serde_json::json!({
                    "op": "put",
                    "key": String::from_utf8_lossy(k),
                    "value_base64": base64(v),
                })
            })
            .collect();
        let body = serde_json::json!({ "ops": ops }).to_string();
        let resp = self
            .request("POST", "/api/v1/kv", body.as_bytes(), "application/json")
            .await?;
        if resp.status == 200 {
            Ok(())
        } else {
            Err(DriverError::Server {
                target: self.target.clone(),
                reason: format!(
                    "batch POST: {} {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                ),
            })
        }
    }
}

fn kv_path(key: &[u8]) -> String {
    format!("/api/v1/kv/{}", String::from_utf8_lossy(key))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn put_outcome(resp: &Response) -> Outcome {
    if resp.status == 204 || resp.status == 200 {
        Outcome::Ok
    } else {
        status_error(resp)
    }
}

fn status_error(resp: &Response) -> Outcome {
    Outcome::Error(format!(
        "HTTP {}: {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    ))
}

fn scan_outcome(body: &[u8]) -> Outcome {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("items").and_then(|i| i.as_array()) {
            Some(items) if items.is_empty() => Outcome::Miss,
            Some(_) => Outcome::Ok,
            None => Outcome::Error("scan response without items".to_string()),
        },
        Err(e) => Outcome::Error(format!("scan response is not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn responses_parse_with_and_without_bodies() {
        let r = b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        let (first, used) = parse_response(r).unwrap().unwrap();
        assert_eq!(first.status, 204);
        assert!(first.body.is_empty());
        let (second, used2) = parse_response(&r[used..]).unwrap().unwrap();
        assert_eq!(
            second,
            Response {
                status: 200,
                body: b"abc".to_vec()
            }
        );
        assert_eq!(used + used2, r.len());
        assert_eq!(parse_response(&r[used..r.len() - 1]).unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn scan_bodies_count_items() {
        assert_eq!(
            scan_outcome(br#"{"items":[{"key":"a","value":"b"}],"next_cursor":null}"#),
            Outcome::Ok
        );
        assert_eq!(
            scan_outcome(br#"{"items":[],"next_cursor":null}"#),
            Outcome::Miss
        );
        assert!(matches!(scan_outcome(b"{}"), Outcome::Error(_)));
        assert_eq!(hex(b"us"), "7573");
    }
}
