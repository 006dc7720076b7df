//! Errors of the columnar layer: every decode failure names what was being read and where.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ColumnarError {
    #[error("column chunk checksum mismatch: expected {expected:#010x}, found {found:#010x}")]
    Checksum { expected: u32, found: u32 },
    #[error("column chunk corrupt at byte {offset}: {what}")]
    Corrupt { offset: usize, what: String },
    #[error("unsupported column chunk format version {found} (this build reads {expected})")]
    Version { expected: u8, found: u8 },
    #[error("type mismatch: {0}")]
    Type(String),
    #[error("limit exceeded: {0}")]
    Limit(String),
}

pub type Result<T> = std::result::Result<T, ColumnarError>;

pub(crate) fn corrupt(offset: usize, what: impl Into<String>) -> ColumnarError {
    ColumnarError::Corrupt {
        offset,
        what: what.into(),
    }
}
