//! The accept loops that run on every shard: one per protocol, each on this shard's
//! SO_REUSEPORT socket. A connection is served on the shard that accepted it; requests for keys
//! of other shards are forwarded by the engine handle.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};

use crate::server::{register_listener, ConnectionSlot, Shared};

/// After an accept error that is not ours to fix (EMFILE, ENOBUFS), wait this long before the
/// next accept instead of spinning on the error.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp,
    Http,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Resp => "resp",
            Protocol::Http => "http",
        }
    }
}

/// Starts the accept loops of this shard. Runs on the shard's executor.
pub fn start_shard(shared: Arc<Shared>, resp: OwnedFd, http: OwnedFd) {
    crate::locks::start_shard(&shared);
    for (protocol, fd) in [(Protocol::Resp, resp), (Protocol::Http, http)] {
        let raw = fd.into_raw_fd();
        register_listener(raw);
        // SAFETY: `raw` is a bound, listening TCP socket whose ownership we just released
        // from the OwnedFd; the listener becomes its only owner.
        let listener = unsafe { TcpListener::from_raw_fd(raw) };
        glommio::spawn_local(accept_loop(Arc::clone(&shared), listener, protocol)).detach();
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, protocol: Protocol) {
    loop {
        let accepted = listener.accept().await;
        if shared.is_draining() {
            break;
        }
        match accepted {
            Ok(stream) => match shared.admit(protocol.label()) {
                Some(slot) => {
                    glommio::spawn_local(serve(Arc::clone(&shared), stream, slot, protocol))
                        .detach();
                }
                None => {
                    glommio::spawn_local(refuse(stream, protocol)).detach();
                }
            },
            Err(e) => {
                tracing::warn!(protocol = protocol.label(), error = %e, "accept failed");
                glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
    tracing::debug!(protocol = protocol.label(), "accept loop stopped");
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, slot: ConnectionSlot, protocol: Protocol) {
    use tracing::Instrument as _;
    // Every line logged while serving this connection names it (issue 8: log correlation).
    let span = tracing::info_span!("conn", protocol = protocol.label(), client = slot.client_id);
    match protocol {
        Protocol::Resp => {
            crate::resp::conn::serve(stream, shared, slot)
                .instrument(span)
                .await
        }
        Protocol::Http => {
            crate::http::serve(stream, shared, slot)
                .instrument(span)
                .await
        }
    }
}

/// Over the connection limit (or shutting down): say so in the client's protocol and close.
async fn refuse(mut stream: TcpStream, protocol: Protocol) {
    let message: &[u8] = match protocol {
        Protocol::Resp => b"-ERR max number of clients reached\r\n",
        Protocol::Http => {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 78\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"connection limit reached\"}}"
        }
    };
    let _ = stream.write_all(message).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusal_body_length_matches_header() {
        let body = "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"connection limit reached\"}}";
        assert_eq!(body.len(), 78);
    }
}
