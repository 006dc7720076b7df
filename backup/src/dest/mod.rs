//! Where backups go: a store of named objects. Names are relative, `/`-separated paths
//! (`<backup id>/manifest.json`); each destination maps them onto its own namespace.

pub mod local;
pub mod s3;

use crate::error::{BackupError, Result};

/// A store of named, immutable objects. Implementations block; run them off the shards.
pub trait Destination: Send + Sync {
    /// Stores `data` under `name`, replacing an object of that name.
    fn put(&self, name: &str, data: &[u8]) -> Result<()>;
    /// The whole object; [`BackupError::NotFound`] when there is none.
    fn get(&self, name: &str) -> Result<Vec<u8>>;
    /// Names of every object whose name starts with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes the object; removing a missing one is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// A human-readable description for errors and logs (`/backups`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// Object names never escape their namespace: relative, no empty, `.` or `..` parts.
pub fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

pub(crate) fn check_name(destination: &str, name: &str) -> Result<()> {
    if valid_object_name(name) {
        Ok(())
    } else {
        Err(BackupError::Destination {
            destination: destination.to_string(),
            object: name.to_string(),
            reason: "not a valid object name".into(),
        })
    }
}

/// A destination as the operator names it: a local path or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationSpec {
    Local(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

impl DestinationSpec {
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BackupError::Invalid(format!("{s}: no bucket name")));
            }
            return Ok(DestinationSpec::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if s.contains("://") {
            return Err(BackupError::Invalid(format!(
                "{s}: unsupported destination (a path or s3://bucket/prefix)"
            )));
        }
        if s.is_empty() {
            return Err(BackupError::Invalid("empty destination".into()));
        }
        Ok(DestinationSpec::Local(s.into()))
    }
}

/// Opens `spec`; an S3 destination takes endpoint and credentials from `s3` (bucket and
/// prefix from the spec).
pub fn open_destination(
    spec: &DestinationSpec,
    s3: Option<s3::S3Config>,
) -> Result<Box<dyn Destination>> {
    match spec {
        DestinationSpec::Local(path) => Ok(Box::new(local::LocalDir::new(path))),
        DestinationSpec::S3 { bucket, prefix } => {
            let mut cfg = s3.ok_or_else(|| {
                BackupError::Invalid(
                    "an s3:// destination needs an endpoint and credentials".into(),
                )
            })?;
            cfg.bucket = bucket.clone();
            cfg.prefix = prefix.clone();
            Ok(Box::new(s3::S3::new(cfg)?))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_paths_and_s3_urls() {
        assert_eq!(
            DestinationSpec::parse("s3://b/x/y/").unwrap(),
            DestinationSpec::S3 {
                bucket: "b".into(),
                prefix: "x/y".into()
            }
        );
        assert_eq!(
            DestinationSpec::parse("/var/backups").unwrap(),
            DestinationSpec::Local("/var/backups".into())
        );
        assert!(DestinationSpec::parse("s3:///x").is_err());
        assert!(DestinationSpec::parse("gs://b").is_err());
        assert!(valid_object_name("bk-1/files/shard-0/seg/1.seg.zst"));
        for bad in ["", "/abs", "a/../b", "a//b", "./a"] {
            assert!(!valid_object_name(bad), "{bad}");
        }
    }
}
