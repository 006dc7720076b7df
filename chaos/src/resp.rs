//! A small blocking RESP2 client over `TcpStream`: one command at a time or a pipeline (all
//! requests written, then all replies read in order).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A pipeline writes at most this many commands before reading their replies, so the replies
/// waiting in the socket buffers stay bounded.
pub const PIPELINE_COMMANDS_MAX: usize = 128;
/// The longest reply line (status, error, header) accepted.
const LINE_BYTES_MAX: usize = 64 * 1024;
/// Largest bulk reply accepted (values up to 10 MiB plus headroom).
const BULK_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Status(s) if s == "OK")
    }

    /// Short printable form for reports.
    pub fn describe(&self) -> String {
        match self {
            Reply::Status(s) => format!("+{s}"),
            Reply::Error(e) => format!("-{e}"),
            Reply::Int(i) => format!(":{i}"),
            Reply::Bulk(None) => "(nil)".into(),
            Reply::Bulk(Some(b)) => format!("${} bytes", b.len()),
            Reply::Array(None) => "(nil array)".into(),
            Reply::Array(Some(a)) => format!("*{} items", a.len()),
        }
    }
}

pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

pub struct Client {
    pub addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Client {
            addr,
            reader: BufReader::with_capacity(256 * 1024, stream),
            writer,
        })
    }

    /// The underlying socket (to reset it mid-request in client-fault scenarios).
    pub fn socket(&self) -> &TcpStream {
        &self.writer
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut buf = Vec::new();
        encode(args, &mut buf);
        self.writer.write_all(&buf)?;
        self.read_reply()
    }

    /// Sends every command and returns the replies in order (in rounds of
    /// `PIPELINE_COMMANDS_MAX`).
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> std::io::Result<Vec<Reply>> {
        let mut replies = Vec::with_capacity(cmds.len());
        for round in cmds.chunks(PIPELINE_COMMANDS_MAX) {
            let mut buf = Vec::new();
            for c in round {
                let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
                encode(&args, &mut buf);
            }
            self.writer.write_all(&buf)?;
            for _ in round {
                replies.push(self.read_reply()?);
            }
        }
        Ok(replies)
    }

    fn read_line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(LINE_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(bad("reply line without CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    pub fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.read_line()?;
        let (&kind, rest) = line.split_first().ok_or_else(|| bad("empty reply line"))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        let number = || -> std::io::Result<i64> {
            text.parse::<i64>()
                .map_err(|_| bad(format!("bad number {text:?}")))
        };
        match kind {
            b'+' => Ok(Reply::Status(text.clone())),
            b'-' => Ok(Reply::Error(text.clone())),
            b':' => Ok(Reply::Int(number()?)),
            b'$' => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).map_err(|_| bad("bulk length"))?;
                if n > BULK_BYTES_MAX {
                    return Err(bad(format!("bulk of {n} bytes is over the limit")));
                }
                let mut data = vec![0u8; n + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(n);
                Ok(Reply::Bulk(Some(data)))
            }
            b'*' => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.read_reply()?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(bad(format!("unknown reply type {:?}", other as char))),
        }
    }
}

/// Every key on the server, by SCAN (keys in byte order, each once).
pub fn scan_all(client: &mut Client, keys_max: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut cursor = b"0".to_vec();
    let mut keys = Vec::new();
    loop {
        let reply = client.call(&[b"SCAN", &cursor, b"COUNT", b"1000"])?;
        if let Reply::Error(e) = &reply {
            return Err(std::io::Error::other(format!("SCAN refused: {e}")));
        }
        let Reply::Array(Some(parts)) = reply else {
            return Err(bad(format!("SCAN reply {}", reply.describe())));
        };
        let mut it = parts.into_iter();
        let (Some(Reply::Bulk(Some(next))), Some(Reply::Array(Some(page)))) =
            (it.next(), it.next())
        else {
            return Err(bad("SCAN reply shape"));
        };
        for k in page {
            if let Reply::Bulk(Some(k)) = k {
                keys.push(k);
            }
        }
        if keys.len() > keys_max {
            return Err(bad(format!("SCAN returned more than {keys_max} keys")));
        }
        if next == b"0" {
            return Ok(keys);
        }
        cursor = next;
    }
}
