//! The PG port on one shard: opens this shard's SQL engine, then accepts connections on the
//! shard's SO_REUSEPORT socket and serves each on this executor.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use mantis_engine::EngineHandle;
use mantis_sql::{SqlEngine, SqlError};

use super::auth::AuthMethod;
use super::codec::encode;
use super::error::{sqlstate, PgError};
use super::mantis::MantisBackend;
use super::session::{Observer, Session, Settings};
use crate::server::{register_client, register_listener, ConnectionSlot, Shared};

/// The metric label of this protocol.
pub const PROTOCOL: &str = "pg";
/// Statement kinds counted in `mantis_requests_total{protocol="pg"}`.
pub const STATEMENT_KINDS: &[&str] = &["query", "execute"];
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Starts the PG accept loop of this shard. Runs on the shard's executor.
pub fn start_shard(shared: Arc<Shared>, fd: OwnedFd) {
    let raw = fd.into_raw_fd();
    register_listener(raw);
    // SAFETY: `raw` is a bound, listening TCP socket whose ownership we just released from
    // the OwnedFd; the listener becomes its only owner.
    let listener = unsafe { TcpListener::from_raw_fd(raw) };
    glommio::spawn_local(accept_loop(shared, listener)).detach();
}

thread_local! {
    /// This shard's SQL engine, opened once and shared by its PG and HTTP clients.
    static SHARD_ENGINE: RefCell<Option<SqlEngine>> = const { RefCell::new(None) };
}

/// This shard's SQL engine (opened on first use: it loads the catalog).
pub async fn shard_engine(handle: &EngineHandle) -> Result<SqlEngine, SqlError> {
    if let Some(e) = SHARD_ENGINE.with(|c| c.borrow().clone()) {
        return Ok(e);
    }
    let engine = SqlEngine::open(handle.clone()).await?;
    // Two first users may both open it; either copy works, one is kept.
    SHARD_ENGINE.with(|c| *c.borrow_mut() = Some(engine.clone()));
    Ok(engine)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    // The catalog is loaded before the first client is served; a failure leaves the port
    // answering every client with the error instead of hanging them in the backlog.
    let engine = match shard_engine(&shared.engine).await {
        Ok(e) => Ok(e),
        Err(e) => {
            tracing::error!(error = %e.message, sqlstate = e.sqlstate, "SQL engine failed to open");
            Err(PgError::fatal(
                e.sqlstate,
                format!("SQL engine unavailable: {}", e.message),
            ))
        }
    };
    loop {
        let accepted = listener.accept().await;
        if shared.is_draining() {
            break;
        }
        match (accepted, &engine) {
            (Ok(stream), Ok(engine)) => match shared.admit(PROTOCOL) {
                Some(slot) => {
                    let backend = MantisBackend::new(engine);
                    // Every line logged while serving this connection names it (issue 8).
                    let span =
                        tracing::info_span!("conn", protocol = "pg", client = slot.client_id);
                    let serving = serve(Arc::clone(&shared), stream, slot, backend);
                    glommio::spawn_local(tracing::Instrument::instrument(serving, span)).detach();
                }
                None => {
                    let e = PgError::fatal(
                        sqlstate::TOO_MANY_CONNECTIONS,
                        "sorry, too many clients already",
                    );
                    glommio::spawn_local(refuse(stream, e)).detach();
                }
            },
            (Ok(stream), Err(e)) => {
                glommio::spawn_local(refuse(stream, e.clone())).detach();
            }
            (Err(e), _) => {
                tracing::warn!(protocol = PROTOCOL, error = %e, "accept failed");
                glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
    tracing::debug!(protocol = PROTOCOL, "accept loop stopped");
}

/// Counts statements and errors in the daemon's metrics.
struct Metrics(Arc<Shared>);

impl Observer for Metrics {
    fn statement(&self, kind: &'static str, elapsed: Duration, failed: bool) {
        if let Some(m) = self.0.metrics.command_static(PROTOCOL, kind) {
            m.observe(elapsed, failed);
        }
    }

    fn error(&self, e: &PgError) {
        self.0
            .metrics
            .pg_errors
            .with_label_values(&[e.class()])
            .inc();
        if e.sqlstate == sqlstate::PROTOCOL_VIOLATION {
            self.0
                .metrics
                .protocol_errors
                .with_label_values(&[PROTOCOL])
                .inc();
        }
    }
}

/// Process ids handed to clients in BackendKeyData (unique per connection; no real process).
static NEXT_PROCESS_ID: AtomicI32 = AtomicI32::new(1);

async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    slot: ConnectionSlot,
    backend: MantisBackend,
) {
    let registration = register_client(stream.as_raw_fd());
    crate::monitoring::ensure_started(&shared);
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    if let Some(idle) = shared.config.idle_timeout {
        let _ = stream.set_read_timeout(Some(idle));
        let _ = stream.set_write_timeout(Some(idle));
    }
    let settings = Settings {
        password: shared.config.password.clone(),
        auth_method: AuthMethod::ScramSha256,
        message_bytes_max: shared.config.request_bytes_max,
        process_id: NEXT_PROCESS_ID.fetch_add(1, Ordering::Relaxed),
        secret_key: rand::random(),
    };
    let started = Instant::now();
    let mut session = Session::new(backend, settings, Box::new(Metrics(Arc::clone(&shared))));
    if let Err(e) = super::conn::run(&mut stream, &mut session).await {
        tracing::debug!(client = slot.client_id, error = %e, "pg connection ended");
    }
    tracing::trace!(
        client = slot.client_id,
        ms = started.elapsed().as_millis(),
        "pg closed"
    );
    let _ = stream.close().await;
    drop(registration);
    drop(slot);
}

/// Answers a connection we will not serve with a FATAL error, then closes it.
async fn refuse(mut stream: TcpStream, e: PgError) {
    let mut out = Vec::new();
    encode::error_response(&mut out, &e);
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}
