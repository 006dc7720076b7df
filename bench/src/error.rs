//! Errors of the benchmark harness. A benchmark that cannot measure must say what it could not
//! do and where, rather than print a figure that means nothing.

use std::path::PathBuf;

use mantis_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An I/O error of the raw disk benchmark, with the file and offset.
    #[error("disk benchmark: {0}")]
    Disk(#[from] StorageError),
    /// The glommio executor could not be built or run.
    #[error("executor: {0}")]
    Executor(#[source] std::io::Error),
    /// The data directory is unusable for a direct-I/O figure (missing, or on tmpfs).
    #[error("data dir {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    /// Writing the JSON result file failed.
    #[error("result file {path}: {source}")]
    ResultFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("result encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A target's connection or protocol failed.
    #[error("driver: {0}")]
    Driver(#[from] crate::driver::DriverError),
    /// Starting, probing or stopping a server (mantisd, redis-server) failed.
    #[error("server {name}: {reason}")]
    Server { name: String, reason: String },
    /// Drawing a plot failed.
    #[error("plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
    /// Ctrl-C or SIGTERM: the run stopped early, its figures are incomplete.
    #[error("interrupted")]
    Interrupted,
    /// A bad combination of options.
    #[error("usage: {0}")]
    Usage(String),
    /// The engine returned an error during a phase of the benchmark.
    #[error("engine, phase {phase}: {cause}")]
    Engine { phase: &'static str, cause: String },
}

/// Unwraps glommio's error into the `io::Error` underneath, keeping the OS error code.
pub fn glommio_io_error(err: glommio::GlommioError<()>) -> std::io::Error {
    match err {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Builds a closure mapping a glommio error to a [`BenchError::Disk`] naming op, file and offset.
pub fn disk_err<'p>(
    op: &'static str,
    path: &'p std::path::Path,
    offset: u64,
) -> impl FnOnce(glommio::GlommioError<()>) -> BenchError + 'p {
    move |e| BenchError::Disk(StorageError::from_io(op, path, offset, glommio_io_error(e)))
}
