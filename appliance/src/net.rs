//! Listening sockets: one per shard and protocol, all bound to the same address with
//! SO_REUSEPORT so that the kernel spreads connections over the shards. They are created on the
//! main thread (so a busy port fails the start with a clear error before recovery runs) and
//! handed to the shards as plain file descriptors.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BindError {
    #[error("{option} {addr}: address already in use (another process listens there)")]
    InUse {
        option: &'static str,
        addr: SocketAddr,
    },
    #[error("{option} {addr}: {source}")]
    Io {
        option: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// How long a busy port is retried at start.
pub const BIND_RETRY: std::time::Duration = std::time::Duration::from_secs(3);
const BIND_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Pending connections per listening socket.
const LISTEN_BACKLOG_MAX: i32 = 1024;

/// The sockets of one protocol: the same address bound `shards` times.
#[derive(Debug)]
pub struct ListenerSet {
    pub option: &'static str,
    /// The address actually bound (the port is resolved when the configured one was 0).
    pub addr: SocketAddr,
    fds: Vec<OwnedFd>,
}

impl ListenerSet {
    /// Binds `addr` once, first checking that nobody holds the port: SO_REUSEPORT would
    /// otherwise let us silently share it with another process of the same user.
    ///
    /// A port still busy is retried for [`BIND_RETRY`]: after a crash, the kernel closes the
    /// dead process's listening sockets only once its io_uring instances are torn down, which
    /// happens asynchronously, a moment after the process is gone.
    pub fn bind_first(option: &'static str, addr: SocketAddr) -> Result<ListenerSet, BindError> {
        let deadline = std::time::Instant::now() + BIND_RETRY;
        loop {
            match Self::try_bind_first(option, addr) {
                Err(BindError::InUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(BIND_RETRY_INTERVAL);
                }
                other => return other,
            }
        }
    }

    fn try_bind_first(option: &'static str, addr: SocketAddr) -> Result<ListenerSet, BindError> {
        let io_err = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                BindError::InUse { option, addr }
            } else {
                BindError::Io {
                    option,
                    addr,
                    source,
                }
            }
        };
        if addr.port() != 0 {
            // A probe without SO_REUSEPORT fails if any socket is bound to the port.
            let probe = new_socket(addr, false).map_err(io_err)?;
            probe.bind(&addr.into()).map_err(io_err)?;
        }
        let first = bind_one(addr).map_err(io_err)?;
        let bound = first
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        Ok(ListenerSet {
            option,
            addr: bound,
            fds: vec![first.into()],
        })
    }

    /// Adds sockets until there is one per shard.
    pub fn fill(&mut self, shards: usize) -> Result<(), BindError> {
        while self.fds.len() < shards {
            let sock = bind_one(self.addr).map_err(|source| BindError::Io {
                option: self.option,
                addr: self.addr,
                source,
            })?;
            self.fds.push(sock.into());
        }
        Ok(())
    }

    /// Takes the sockets out, one per shard.
    pub fn into_fds(self) -> Vec<OwnedFd> {
        self.fds
    }

    pub fn raw_fds(&self) -> Vec<i32> {
        self.fds.iter().map(|fd| fd.as_raw_fd()).collect()
    }
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    // SO_REUSEADDR: a restart must not wait for the previous run's TIME_WAIT connections.
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    Ok(sock)
}

fn bind_one(addr: SocketAddr) -> io::Result<Socket> {
    let sock = new_socket(addr, true)?;
    sock.bind(&addr.into())?;
    sock.listen(LISTEN_BACKLOG_MAX)?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn binds_one_port_per_shard_and_refuses_a_taken_port() {
        let mut set = ListenerSet::bind_first("resp_addr", "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(set.addr.port(), 0);
        set.fill(3).unwrap();
        assert_eq!(set.raw_fds().len(), 3);
        let taken = ListenerSet::bind_first("resp_addr", set.addr).unwrap_err();
        assert!(matches!(taken, BindError::InUse { .. }), "{taken}");
        // A plain listener elsewhere also blocks us.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = ListenerSet::bind_first("http_addr", other.local_addr().unwrap()).unwrap_err();
        assert!(err.to_string().contains("already in use"));
    }
}
