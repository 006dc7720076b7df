//! Errors of the harness itself (not findings about mantisd: those go into the report).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("RESP connection to {addr}: {source}")]
    Resp {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("mantisd binary not found (tried {tried:?}); build it with `cargo build -p mantisd` or pass --mantisd")]
    NoMantisd { tried: Vec<PathBuf> },
    #[error(
        "mantisd did not become ready within {waited_ms} ms (seed {seed}); log tail:\n{log_tail}"
    )]
    NotReady {
        seed: u64,
        waited_ms: u128,
        log_tail: String,
    },
    #[error("mantisd exited before ready ({status}) (seed {seed}); log tail:\n{log_tail}")]
    ExitedEarly {
        seed: u64,
        status: String,
        log_tail: String,
    },
    #[error("unexpected reply to {command}: {reply} (seed {seed})")]
    UnexpectedReply {
        seed: u64,
        command: String,
        reply: String,
    },
    #[error("host setup for {what} failed: {detail}")]
    Host { what: String, detail: String },
}

pub type Result<T> = std::result::Result<T, ChaosError>;

pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ChaosError {
    let path = path.into();
    move |source| ChaosError::Io { path, source }
}
