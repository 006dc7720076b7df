//! The error a PostgreSQL client sees: an ErrorResponse with severity, SQLSTATE, message,
//! optional detail and position. Every failure of the wire layer and of the SQL backend ends
//! up as one of these, so a client always gets a SQLSTATE it can act on.

use thiserror::Error;

/// SQLSTATE codes the wire layer itself raises (the SQL engine brings its own).
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    pub const UNDEFINED_PSTATEMENT: &str = "26000";
    pub const UNDEFINED_CURSOR: &str = "34000";
    pub const DUPLICATE_PSTATEMENT: &str = "42P05";
    pub const DUPLICATE_CURSOR: &str = "42P03";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
}

/// Severity of an ErrorResponse. FATAL closes the connection after it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// One error as sent in an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{} {sqlstate}: {message}", severity.as_str())]
pub struct PgError {
    pub severity: Severity,
    /// Five characters, e.g. "42601".
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    /// 1-based character offset into the query text.
    pub position: Option<u32>,
}

impl PgError {
    pub fn error(sqlstate: &'static str, message: impl Into<String>) -> PgError {
        assert_eq!(sqlstate.len(), 5, "SQLSTATE is five characters");
        PgError {
            severity: Severity::Error,
            sqlstate,
            message: message.into(),
            detail: None,
            position: None,
        }
    }

    pub fn fatal(sqlstate: &'static str, message: impl Into<String>) -> PgError {
        PgError {
            severity: Severity::Fatal,
            ..PgError::error(sqlstate, message)
        }
    }

    pub fn protocol(message: impl Into<String>) -> PgError {
        PgError::fatal(sqlstate::PROTOCOL_VIOLATION, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> PgError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_position(mut self, position: Option<u32>) -> PgError {
        self.position = position;
        self
    }

    /// The SQLSTATE class (first two characters), the label errors are counted by.
    pub fn class(&self) -> &'static str {
        self.sqlstate.get(..2).unwrap_or("XX")
    }
}
