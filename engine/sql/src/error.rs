//! The SQL layer's one error type: a PostgreSQL SQLSTATE plus message, position and detail,
//! so the wire protocol can send it as an ErrorResponse unchanged.

use std::fmt;

/// SQLSTATE codes used by the engine (PostgreSQL's values).
pub mod state {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const GROUPING_ERROR: &str = "42803";
    pub const WRONG_OBJECT_TYPE: &str = "42809";
    pub const INVALID_COLUMN_REFERENCE: &str = "42P10";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const NUMERIC_OUT_OF_RANGE: &str = "22003";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const STRING_TOO_LONG: &str = "22001";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const INVALID_DATETIME: &str = "22007";
    pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const CARDINALITY_VIOLATION: &str = "21000";
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
    pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    pub const INTERNAL_ERROR: &str = "XX000";
    /// Stored data failed its checksum (issue 7): PostgreSQL's `data_corrupted`.
    pub const DATA_CORRUPTED: &str = "XX001";
    pub const IO_ERROR: &str = "58030";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const DEPENDENT_OBJECTS: &str = "2BP01";
}

/// An error for the client: PostgreSQL fields, ready for an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// Five characters, e.g. "42601".
    pub sqlstate: &'static str,
    pub message: String,
    /// 1-based character offset in the query text (syntax errors and the like).
    pub position: Option<u32>,
    pub detail: Option<String>,
}

impl SqlError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> SqlError {
        debug_assert_eq!(sqlstate.len(), 5);
        SqlError {
            sqlstate,
            message: message.into(),
            position: None,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> SqlError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_position(mut self, position: u32) -> SqlError {
        self.position = Some(position);
        self
    }

    pub fn syntax(message: impl Into<String>) -> SqlError {
        SqlError::new(state::SYNTAX_ERROR, message)
    }

    pub fn unsupported(what: impl Into<String>) -> SqlError {
        SqlError::new(
            state::FEATURE_NOT_SUPPORTED,
            format!("not supported: {}", what.into()),
        )
    }

    pub fn mismatch(message: impl Into<String>) -> SqlError {
        SqlError::new(state::DATATYPE_MISMATCH, message)
    }

    pub fn out_of_range(type_name: &str) -> SqlError {
        SqlError::new(
            state::NUMERIC_OUT_OF_RANGE,
            format!("{type_name} out of range"),
        )
    }

    pub fn division_by_zero() -> SqlError {
        SqlError::new(state::DIVISION_BY_ZERO, "division by zero")
    }

    pub fn invalid_text(type_name: &str, text: &str) -> SqlError {
        SqlError::new(
            state::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {type_name}: \"{text}\""),
        )
    }

    pub fn internal(message: impl Into<String>) -> SqlError {
        SqlError::new(state::INTERNAL_ERROR, message)
    }

    /// A storage-engine failure, with the operation that hit it.
    pub fn storage(op: &str, e: mantis_engine::EngineError) -> SqlError {
        if e.is_corruption() {
            return SqlError::new(
                state::DATA_CORRUPTED,
                format!("data corrupted during {op}: {e}"),
            );
        }
        SqlError::new(state::IO_ERROR, format!("storage error during {op}: {e}"))
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.sqlstate)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SqlError {}

pub type Result<T> = std::result::Result<T, SqlError>;
