//! Errors of the document layer, each with the context needed to act on it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DocError {
    #[error("invalid JSON at byte {offset}: {reason}")]
    BadJson { offset: usize, reason: String },
    #[error("JSON nested deeper than {max} levels (at byte {offset})")]
    TooDeep { offset: usize, max: usize },
    #[error("document of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("a document must be a JSON object")]
    NotAnObject,
    #[error("invalid path {path:?}: {reason}")]
    BadPath { path: String, reason: String },
    #[error("invalid collection name {name:?}: {reason}")]
    BadCollection { name: String, reason: String },
    #[error("invalid document id {id:?}: {reason}")]
    BadId { id: String, reason: String },
    #[error("invalid filter: {0}")]
    BadFilter(String),
    #[error("invalid patch: {0}")]
    BadPatch(String),
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("document {id:?} already exists in collection {collection:?}")]
    Exists { collection: String, id: String },
    #[error("no document {id:?} in collection {collection:?}")]
    NotFound { collection: String, id: String },
    #[error("no index on {path:?} in collection {collection:?}")]
    NoIndex { collection: String, path: String },
    #[error("collection {collection:?} has {count} indexes, the limit is {max}")]
    TooManyIndexes {
        collection: String,
        count: usize,
        max: usize,
    },
    #[error("document checksum mismatch: expected {expected:#010x}, found {found:#010x}")]
    Checksum { expected: u32, found: u32 },
    #[error("corrupt document record: {0}")]
    Corrupt(String),
    #[error("document {id:?} of collection {collection:?} on shard {shard}: {source}")]
    Stored {
        collection: String,
        id: String,
        shard: usize,
        #[source]
        source: Box<DocError>,
    },
    #[error("index {path:?} of collection {collection:?} on shard {shard} disagrees with document {id:?}: {reason}")]
    IndexInconsistent {
        collection: String,
        path: String,
        shard: usize,
        id: String,
        reason: String,
    },
    #[error("corrupt catalog of collection {collection:?} on shard {shard}: {reason}")]
    Catalog {
        collection: String,
        shard: usize,
        reason: String,
    },
    #[error("more than {max} documents of collection {collection:?} match; narrow the query")]
    TooManyResults { collection: String, max: usize },
    #[error("encode: {0}")]
    Encode(String),
    #[error(transparent)]
    Engine(#[from] mantis_engine::EngineError),
}

impl DocError {
    /// True when the client's request was at fault (an HTTP 4xx), not the server.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            DocError::BadJson { .. }
                | DocError::TooDeep { .. }
                | DocError::TooLarge { .. }
                | DocError::NotAnObject
                | DocError::BadPath { .. }
                | DocError::BadCollection { .. }
                | DocError::BadId { .. }
                | DocError::BadFilter(_)
                | DocError::BadPatch(_)
                | DocError::BadQuery(_)
                | DocError::Exists { .. }
                | DocError::NotFound { .. }
                | DocError::NoIndex { .. }
                | DocError::TooManyIndexes { .. }
                | DocError::TooManyResults { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, DocError>;
