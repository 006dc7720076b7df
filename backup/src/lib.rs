//! MantisDB backups: a checkpoint (see `mantis_engine::checkpoint`) streamed to a destination
//! as ZSTD-compressed objects plus a JSON manifest, checked end to end with SHA-256, verified
//! in place and restored into a new data directory.
//!
//! The parts, one job each:
//! - `dest`: the [`Destination`] trait (named objects: put/get/list/delete) with [`LocalDir`]
//!   and [`S3`] (rusty-s3 signing, ureq transport, multipart, Content-MD5, retries);
//! - `manifest`: the backup manifest (JSON) and object naming;
//! - `create`: uploading a checkpoint, full or incremental against a parent backup;
//! - `verify`: re-reading every object and checking both hashes;
//! - `restore`: verify-while-fetching into an empty data directory, following the chain;
//! - `progress`: bytes done/total and ETA, reported through a callback.
//!
//! Everything here blocks (file and network I/O): run it on a std thread, never on a shard.

pub mod archive;
pub mod create;
pub mod dest;
pub mod error;
pub mod manifest;
pub mod pitr;
pub mod progress;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod verify;

pub use create::{create_backup, BackupOptions};
pub use dest::azure::{Azure, AzureConfig};
pub use dest::gcs::{Gcs, GcsConfig};
pub use dest::local::LocalDir;
pub use dest::s3::{S3Config, S3};
pub use dest::{open_destination, Destination, DestinationSpec};
pub use dest::{open_destination_with, DestinationConfigs};
pub use error::{BackupError, Result};
pub use manifest::{list_backups, read_manifest, BackupFile, BackupManifest, BackupShard};
pub use progress::Progress;
pub use restore::restore;
pub use verify::{verify, VerifyReport};
