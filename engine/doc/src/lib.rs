//! JSON document collections on the MantisDB engine (issue 11).
//!
//! - `tape`: a strict JSON parser that keeps the text and the position of every value.
//! - `form`: the stored form (header + CRC-32 + rkyv archive of text and tape), zero-copy views.
//! - `path`: dotted JSON paths.
//!
//! See docs/documents.md.

pub mod error;
pub mod form;
pub mod path;
pub mod tape;

pub use error::{DocError, Result};
pub use form::{decode_text, encode, with_view, DocView, Scalar, ValueRef};
pub use path::Path;
