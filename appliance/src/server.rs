//! State shared by every shard's front ends, connection admission (the global limit), and the
//! per-shard registry of open sockets that shutdown uses to stop accepting and to drain.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mantis_engine::EngineHandle;

use crate::config::Config;
use crate::metrics::Metrics;

/// Everything the front ends of all shards share. Immutable or atomic: no lock on the data path.
pub struct Shared {
    pub config: Config,
    pub engine: EngineHandle,
    pub metrics: Metrics,
    connections_open: AtomicUsize,
    next_client_id: AtomicU64,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Told (once per close while draining) so the main thread can wait for the last one.
    drained_tx: flume::Sender<()>,
    started: Instant,
}

impl Shared {
    pub fn new(
        config: Config,
        engine: EngineHandle,
        metrics: Metrics,
        drained_tx: flume::Sender<()>,
    ) -> Shared {
        Shared {
            config,
            engine,
            metrics,
            connections_open: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drained_tx,
            started: Instant::now(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.is_draining()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.metrics.set_ready(true);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.set_ready(false);
    }

    pub fn connections_open(&self) -> usize {
        self.connections_open.load(Ordering::SeqCst)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Admits one more connection unless the limit is reached or shutdown started.
    pub fn admit(self: &Arc<Self>, protocol: &'static str) -> Option<ConnectionSlot> {
        if self.is_draining() {
            return None;
        }
        let max = self.config.connections_max;
        let admitted = self
            .connections_open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.metrics
                .connections_rejected
                .with_label_values(&[protocol])
                .inc();
            return None;
        }
        self.metrics
            .connections_accepted
            .with_label_values(&[protocol])
            .inc();
        self.metrics
            .connections_open
            .with_label_values(&[protocol])
            .inc();
        Some(ConnectionSlot {
            shared: Arc::clone(self),
            protocol,
            client_id: self.next_client_id.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// One admitted connection; dropping it frees the slot.
pub struct ConnectionSlot {
    shared: Arc<Shared>,
    protocol: &'static str,
    pub client_id: u64,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let before = self.shared.connections_open.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "connection count underflow");
        self.shared
            .metrics
            .connections_open
            .with_label_values(&[self.protocol])
            .dec();
        if self.shared.is_draining() {
            // The receiver may be gone when the process is exiting anyway.
            let _ = self.shared.drained_tx.try_send(());
        }
    }
}

/// Milliseconds since the Unix epoch: the clock TTLs are kept in.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

thread_local! {
    /// This shard's listening sockets and open client sockets, by registration id.
    static SOCKETS: RefCell<ShardSockets> = RefCell::new(ShardSockets::default());
}

#[derive(Default)]
struct ShardSockets {
    next_id: u64,
    listeners: Vec<RawFd>,
    clients: HashMap<u64, RawFd>,
}

/// Registers a listening socket of this shard.
pub fn register_listener(fd: RawFd) {
    SOCKETS.with(|s| s.borrow_mut().listeners.push(fd));
}

/// A client socket registered for draining. Must be dropped before the socket is closed (hold
/// it in a variable declared after the stream, or drop it explicitly after the stream).
pub struct ClientRegistration {
    id: u64,
}

pub fn register_client(fd: RawFd) -> ClientRegistration {
    SOCKETS.with(|s| {
        let mut s = s.borrow_mut();
        s.next_id += 1;
        let id = s.next_id;
        s.clients.insert(id, fd);
        ClientRegistration { id }
    })
}

impl Drop for ClientRegistration {
    fn drop(&mut self) {
        SOCKETS.with(|s| s.borrow_mut().clients.remove(&self.id));
    }
}

/// Runs on each shard at shutdown: shuts the listening sockets (a pending accept then fails
/// and the accept loop ends) and the read side of every client socket. A connection sees end
/// of input once it has read what was already sent, answers every complete request it has, and
/// closes: in-flight requests finish, nothing new starts.
pub fn drain_this_shard() {
    SOCKETS.with(|s| {
        let s = s.borrow();
        for &fd in &s.listeners {
            // SAFETY-free: shutdown(2) on a descriptor we own; errors (already shut) are harmless.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
        for &fd in s.clients.values() {
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
        }
        tracing::debug!(
            listeners = s.listeners.len(),
            clients = s.clients.len(),
            "shard draining"
        );
    });
}
