//! The Redis protocol front end (RESP2 and RESP3) on the RESP port.

pub mod args;
pub mod codec;
pub mod commands;
pub mod conn;
pub mod glob;
pub mod keys;
pub mod multi;
pub mod reply;
pub mod server_cmds;
pub mod session;
pub mod strings;
pub mod txn_eval;
