//! Where backups go: a store of named objects. Names are relative, `/`-separated paths
//! (`<backup id>/manifest.json`); each destination maps them onto its own namespace.

pub mod azure;
pub mod gcs;
pub(crate) mod http;
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
    S3 {
        bucket: String,
        prefix: String,
    },
    /// `gs://bucket/prefix`.
    Gcs {
        bucket: String,
        prefix: String,
    },
    /// `az://container/prefix` (account from the configuration), or
    /// `https://<account>.blob.core.windows.net/container/prefix`.
    Azure {
        account: Option<String>,
        container: String,
        prefix: String,
    },
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
        if let Some(spec) = parse_cloud(s)? {
            return Ok(spec);
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
        DestinationSpec::Gcs { .. } | DestinationSpec::Azure { .. } => open_destination_with(
            spec,
            &DestinationConfigs {
                s3,
                ..DestinationConfigs::default()
            },
        ),
    }
}

/// Splits `container/prefix` (after the scheme) into its two parts.
fn split_root(s: &str, rest: &str, what: &str) -> Result<(String, String)> {
    let (root, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if root.is_empty() {
        return Err(BackupError::Invalid(format!("{s}: no {what} name")));
    }
    Ok((root.to_string(), prefix.trim_matches('/').to_string()))
}

/// `gs://`, `az://` and Azure's `https://<account>.blob.core.windows.net/...` URLs (issue 10).
fn parse_cloud(s: &str) -> Result<Option<DestinationSpec>> {
    if let Some(rest) = s.strip_prefix("gs://") {
        let (bucket, prefix) = split_root(s, rest, "bucket")?;
        return Ok(Some(DestinationSpec::Gcs { bucket, prefix }));
    }
    if let Some(rest) = s.strip_prefix("az://") {
        let (container, prefix) = split_root(s, rest, "container")?;
        return Ok(Some(DestinationSpec::Azure {
            account: None,
            container,
            prefix,
        }));
    }
    let Some(rest) = s.strip_prefix("https://") else {
        return Ok(None);
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(account) = host.strip_suffix(".blob.core.windows.net") else {
        return Ok(None);
    };
    let (container, prefix) = split_root(s, path, "container")?;
    Ok(Some(DestinationSpec::Azure {
        account: Some(account.to_string()),
        container,
        prefix,
    }))
}

/// Endpoints and credentials of the remote destinations; the spec names bucket/container
/// and prefix.
#[derive(Debug, Clone, Default)]
pub struct DestinationConfigs {
    pub s3: Option<s3::S3Config>,
    pub gcs: Option<gcs::GcsConfig>,
    pub azure: Option<azure::AzureConfig>,
}

/// Opens `spec` with the matching entry of `configs`.
pub fn open_destination_with(
    spec: &DestinationSpec,
    configs: &DestinationConfigs,
) -> Result<Box<dyn Destination>> {
    match spec {
        DestinationSpec::Local(_) | DestinationSpec::S3 { .. } => {
            open_destination(spec, configs.s3.clone())
        }
        DestinationSpec::Gcs { bucket, prefix } => {
            let mut cfg = configs.gcs.clone().ok_or_else(|| {
                BackupError::Invalid("a gs:// destination needs an endpoint (and a token)".into())
            })?;
            cfg.bucket = bucket.clone();
            cfg.prefix = prefix.clone();
            Ok(Box::new(gcs::Gcs::new(cfg)?))
        }
        DestinationSpec::Azure {
            account,
            container,
            prefix,
        } => {
            let mut cfg = configs.azure.clone().ok_or_else(|| {
                BackupError::Invalid("an az:// destination needs an account and its key".into())
            })?;
            if let Some(account) = account {
                if *account != cfg.account {
                    cfg.endpoint = format!("https://{account}.blob.core.windows.net");
                    cfg.account = account.clone();
                }
            }
            cfg.container = container.clone();
            cfg.prefix = prefix.clone();
            Ok(Box::new(azure::Azure::new(cfg)?))
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
        assert!(DestinationSpec::parse("ftp://b").is_err());
        assert_eq!(
            DestinationSpec::parse("gs://b/p/").unwrap(),
            DestinationSpec::Gcs {
                bucket: "b".into(),
                prefix: "p".into()
            }
        );
        assert_eq!(
            DestinationSpec::parse("az://c").unwrap(),
            DestinationSpec::Azure {
                account: None,
                container: "c".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            DestinationSpec::parse("https://acct.blob.core.windows.net/c/x/y").unwrap(),
            DestinationSpec::Azure {
                account: Some("acct".into()),
                container: "c".into(),
                prefix: "x/y".into()
            }
        );
        assert!(DestinationSpec::parse("az:///p").is_err());
        assert!(DestinationSpec::parse("https://example.com/c").is_err());
        assert!(valid_object_name("bk-1/files/shard-0/seg/1.seg.zst"));
        for bad in ["", "/abs", "a/../b", "a//b", "./a"] {
            assert!(!valid_object_name(bad), "{bad}");
        }
    }
}
