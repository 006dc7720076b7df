//! RESP2 client for mantisd and Redis: GET, SET, SCAN, MSET, PING; pipelined batches.

use std::net::SocketAddr;
use std::time::Instant;

use futures::AsyncWriteExt;
use glommio::net::TcpStream;

use super::{read_more, scratch_buffer, DriverError};
use crate::recorder::Outcome;
use crate::workload::Request;

/// Key bytes kept as the literal prefix of a scan's MATCH pattern: the 4-byte prefix and three
/// hex digits, so mantisd scans a range about 1/4096 of the key space wide from near the key.
const SCAN_MATCH_PREFIX_BYTES: usize = 7;

/// A parsed reply, keeping only what the harness looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status,
    Error(String),
    Integer(i64),
    Nil,
    Bulk(usize),
    Array(Vec<Reply>),
}

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&tag, line)) = buf[..line_end].split_first() else {
        return Err("empty reply line".to_string());
    };
    let after = line_end + 2;
    let int = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad length/integer {:?}", String::from_utf8_lossy(line)))
    };
    match tag {
        b'+' => Ok(Some((Reply::Status, after))),
        b'-' => Ok(Some((
            Reply::Error(String::from_utf8_lossy(line).into_owned()),
            after,
        ))),
        b':' => Ok(Some((Reply::Integer(int()?), after))),
        b'$' => {
            let len = int()?;
            if len < 0 {
                return Ok(Some((Reply::Nil, after)));
            }
            let end = after + len as usize + 2;
            Ok((buf.len() >= end).then_some((Reply::Bulk(len as usize), end)))
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Reply::Nil, after)));
            }
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..n {
                match parse_reply(&buf[at..])? {
                    Some((r, used)) => {
                        items.push(r);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(items), at)))
        }
        other => Err(format!("unknown reply type byte {other:#x}")),
    }
}

/// Appends one command in RESP array form.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

pub struct RespConn {
    target: String,
    stream: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    wbuf: Vec<u8>,
    scratch: Box<[u8]>,
}

impl RespConn {
    pub async fn connect(addr: SocketAddr) -> Result<RespConn, DriverError> {
        let (target, stream) = super::connect_nodelay(addr, "resp").await?;
        Ok(RespConn {
            target,
            stream,
            rbuf: Vec::new(),
            rstart: 0,
            wbuf: Vec::new(),
            scratch: scratch_buffer(),
        })
    }

    fn encode_request(&mut self, r: &Request) {
        match r {
            Request::Get(k) => encode(&mut self.wbuf, &[b"GET", k]),
            Request::Set(k, v) => encode(&mut self.wbuf, &[b"SET", k, v]),
            Request::Scan(start, count) => {
                let mut pattern = start[..start.len().min(SCAN_MATCH_PREFIX_BYTES)].to_vec();
                pattern.push(b'*');
                let count = count.to_string();
                encode(
                    &mut self.wbuf,
                    &[
                        b"SCAN",
                        b"0",
                        b"MATCH",
                        &pattern,
                        b"COUNT",
                        count.as_bytes(),
                    ],
                );
            }
            // Sent in two steps by `execute`, never encoded whole.
            Request::ReadModifyWrite(k, _) => encode(&mut self.wbuf, &[b"GET", k]),
        }
    }

    async fn send(&mut self) -> Result<(), DriverError> {
        let target = &self.target;
        let io = |source| DriverError::Io {
            target: target.clone(),
            op: "write",
            source,
        };
        self.stream.write_all(&self.wbuf).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        self.wbuf.clear();
        Ok(())
    }

    pub async fn read_reply(&mut self) -> Result<Reply, DriverError> {
        loop {
            match parse_reply(&self.rbuf[self.rstart..]) {
                Ok(Some((reply, used))) => {
                    self.rstart += used;
                    if self.rstart == self.rbuf.len() {
                        self.rbuf.clear();
                        self.rstart = 0;
                    }
                    return Ok(reply);
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

    /// One command, one reply (for PING and the load phase).
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, DriverError> {
        encode(&mut self.wbuf, args);
        self.send().await?;
        self.read_reply().await
    }

    pub async fn execute(
        &mut self,
        requests: &[Request],
    ) -> Result<Vec<(Outcome, Instant)>, DriverError> {
        let pipelined = requests.len() > 1
            && !requests
                .iter()
                .any(|r| matches!(r, Request::ReadModifyWrite(..)));
        if pipelined {
            for r in requests {
                self.encode_request(r);
            }
            self.send().await?;
            let mut out = Vec::with_capacity(requests.len());
            for r in requests {
                let reply = self.read_reply().await?;
                out.push((outcome(r, &reply), Instant::now()));
            }
            return Ok(out);
        }
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            self.encode_request(r);
            self.send().await?;
            let mut reply = self.read_reply().await?;
            if let Request::ReadModifyWrite(k, v) = r {
                if !matches!(reply, Reply::Error(_)) {
                    reply = self.command(&[b"SET", k, v]).await?;
                }
            }
            out.push((outcome(r, &reply), Instant::now()));
        }
        Ok(out)
    }

    pub async fn load(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DriverError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 2 * records.len());
        args.push(b"MSET");
        for (k, v) in records {
            args.push(k);
            args.push(v);
        }
        match self.command(&args).await? {
            Reply::Status => Ok(()),
            other => Err(DriverError::Server {
                target: self.target.clone(),
                reason: format!("MSET answered {other:?}"),
            }),
        }
    }
}

fn outcome(r: &Request, reply: &Reply) -> Outcome {
    match (r, reply) {
        (_, Reply::Error(e)) => Outcome::Error(e.clone()),
        (Request::Get(_), Reply::Bulk(_)) => Outcome::Ok,
        (Request::Get(_), Reply::Nil) => Outcome::Miss,
        (Request::Set(..) | Request::ReadModifyWrite(..), Reply::Status) => Outcome::Ok,
        (Request::Scan(..), Reply::Array(parts)) => match parts.get(1) {
            Some(Reply::Array(keys)) if keys.is_empty() => Outcome::Miss,
            Some(Reply::Array(_)) => Outcome::Ok,
            _ => Outcome::Error(format!("SCAN answered {parts:?}")),
        },
        (r, reply) => Outcome::Error(format!("unexpected reply {reply:?} to {}", request_name(r))),
    }
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Get(_) => "GET",
        Request::Set(..) => "SET",
        Request::Scan(..) => "SCAN",
        Request::ReadModifyWrite(..) => "GET+SET",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replies_parse_whole_or_ask_for_more() {
        assert_eq!(parse_reply(b"+OK\r\n").unwrap(), Some((Reply::Status, 5)));
        assert_eq!(parse_reply(b"$3\r\nab").unwrap(), None);
        assert_eq!(
            parse_reply(b"$3\r\nabc\r\n+OK").unwrap(),
            Some((Reply::Bulk(3), 9))
        );
        assert_eq!(parse_reply(b"$-1\r\n").unwrap(), Some((Reply::Nil, 5)));
        assert_eq!(
            parse_reply(b":42\r\n").unwrap(),
            Some((Reply::Integer(42), 5))
        );
        assert_eq!(
            parse_reply(b"-ERR no\r\n").unwrap(),
            Some((Reply::Error("ERR no".into()), 9))
        );
        let scan = b"*2\r\n$1\r\n0\r\n*2\r\n$2\r\nk1\r\n$2\r\nk2\r\n";
        let (r, used) = parse_reply(scan).unwrap().unwrap();
        assert_eq!(used, scan.len());
        assert_eq!(
            r,
            Reply::Array(vec![
                Reply::Bulk(1),
                Reply::Array(vec![Reply::Bulk(2), Reply::Bulk(2)])
            ])
        );
        assert_eq!(parse_reply(&scan[..scan.len() - 3]).unwrap(), None);
        assert!(parse_reply(b"?x\r\n").is_err());
    }

    #[test]
    fn commands_encode_as_arrays() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b"v1"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n");
    }

    #[test]
    fn outcomes_follow_the_reply() {
        let get = Request::Get(b"k".to_vec());
        assert_eq!(outcome(&get, &Reply::Nil), Outcome::Miss);
        assert_eq!(outcome(&get, &Reply::Bulk(3)), Outcome::Ok);
        assert!(matches!(outcome(&get, &Reply::Status), Outcome::Error(_)));
        let set = Request::Set(b"k".to_vec(), b"v".to_vec());
        assert_eq!(outcome(&set, &Reply::Status), Outcome::Ok);
        assert!(matches!(
            outcome(&set, &Reply::Error("ERR".into())),
            Outcome::Error(_)
        ));
    }
}
