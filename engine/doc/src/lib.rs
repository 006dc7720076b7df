//! JSON document collections on the MantisDB engine (issue 11).
//!
//! - `tape`: a strict JSON parser that keeps the text and the position of every value.
//! - `form`: the stored form (header + CRC-32 + rkyv archive of text and tape), zero-copy views.
//! - `path`: dotted JSON paths.
//! - `keys`: key layout of documents, index entries and catalogs; typed value encoding.
//! - `store`: collections (insert/get/replace/patch/delete) with index maintenance.
//! - `patch`: set/unset by splicing the text.
//! - `filter`, `query`: filters, sort, limit, index choice, explain.
//! - `index`: index creation with back-fill, consistency verification.
//!
//! See docs/documents.md.

pub mod error;
pub mod filter;
pub mod form;
pub mod index;
pub mod keys;
pub mod patch;
pub mod path;
pub mod query;
pub mod store;
pub mod tape;

pub use error::{DocError, Result};
pub use filter::Filter;
pub use form::{decode_text, encode, with_view, DocView, Scalar, ValueRef};
pub use index::VerifyReport;
pub use patch::PatchOp;
pub use path::Path;
pub use query::{Plan, Query, QueryResult};
pub use store::{DocStore, IndexDef, IndexState, DOCUMENT_BYTES_MAX};
