//! The PostgreSQL wire protocol (v3) front end on the PG port: `psql`, drivers and `pgbench`
//! talk to the SQL engine through it. Layers, each in its own module:
//! - [`codec`]: message decoding/encoding over byte slices (no I/O; fuzzed);
//! - [`auth`]: SCRAM-SHA-256 and md5 password exchanges;
//! - [`session`]: the per-connection state machine (startup, simple and extended query);
//! - [`catalog`]: what psql asks about the server and `pg_catalog` (`\dt`, `\d t`);
//! - [`backend`]: the trait the state machine needs from a SQL engine;
//! - [`conn`]: the glommio read/answer loop;
//! - [`mantis`]: the trait implemented by `mantis-sql`, [`listen`]: the accept loop per shard.

pub mod auth;
pub mod backend;
pub mod catalog;
pub mod codec;
pub mod conn;
pub mod error;
pub mod listen;
pub mod mantis;
pub mod session;

#[cfg(test)]
mod session_tests;
