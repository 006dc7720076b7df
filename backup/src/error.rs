//! Errors of the backup layer; each names the object, file or backup it is about.

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("object {object} is missing from {destination}")]
    NotFound { destination: String, object: String },
    #[error("object {object}: {what} SHA-256 mismatch (expected {expected}, found {found})")]
    ChecksumMismatch {
        object: String,
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("object {object}: {what} size mismatch (expected {expected} bytes, found {found})")]
    SizeMismatch {
        object: String,
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("object {object}: cannot decompress: {reason}")]
    Decompress { object: String, reason: String },
    #[error("{destination}: object {object}: {reason}")]
    Destination {
        destination: String,
        object: String,
        reason: String,
    },
    #[error("{destination}: object {object}: HTTP {status} after {attempts} attempt(s): {body}")]
    Http {
        destination: String,
        object: String,
        status: u16,
        attempts: u32,
        body: String,
    },
    /// Issue 10: the TLS handshake failed (an untrusted or mismatched server certificate, or
    /// a server that does not speak TLS). Never retried, never downgraded to plain HTTP.
    #[error("{destination}: object {object}: TLS failed (no plain-HTTP fallback): {reason}")]
    Tls {
        destination: String,
        object: String,
        reason: String,
    },
    #[error("backup manifest {object}: {reason}")]
    Manifest { object: String, reason: String },
    #[error("{path}: {reason}")]
    Local { path: String, reason: String },
    #[error("restore target {dir} is not empty; restore only into a new or empty directory")]
    TargetNotEmpty { dir: String },
    #[error("no backup in {destination}")]
    NoBackup { destination: String },
    #[error(transparent)]
    Engine(#[from] mantis_engine::EngineError),
    #[error("{0}")]
    Invalid(String),
}

impl BackupError {
    pub(crate) fn local(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        BackupError::Local {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// The object a verification failure is about, if it is one.
    pub fn object(&self) -> Option<&str> {
        match self {
            BackupError::NotFound { object, .. }
            | BackupError::ChecksumMismatch { object, .. }
            | BackupError::SizeMismatch { object, .. }
            | BackupError::Decompress { object, .. }
            | BackupError::Manifest { object, .. } => Some(object),
            _ => None,
        }
    }
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;
