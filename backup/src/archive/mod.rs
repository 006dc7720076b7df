//! Issue 10: WAL archiving for a recovery point objective (RPO).
//!
//! - `rpo`: the levels (Zero…High) and the compliance record over time;
//! - `reader`: durable, unarchived chunks read from a shard's WAL segment files;
//! - `piece`: how a run of chunks is stored in the destination, and read back checked;
//! - `archiver`: the std thread that ships pieces at the level's interval, advances each
//!   shard's [`mantis_wal::ArchiveGate`] and measures the exposure.
//!
//! Point-in-time recovery over these pieces is `crate::pitr`.

pub mod archiver;
pub mod dest_health;
pub mod piece;
pub mod reader;
pub mod rpo;

pub use archiver::{Archiver, ArchiverConfig, RpoStatus, ShardLink, ShardRpo};
pub use dest_health::DestinationHealth;
pub use piece::{archived_lsn, list_pieces, read_piece, PieceName};
pub use rpo::{Compliance, RpoLevel};
