//! `mantis-chaos`: breaks the real `mantisd` the way production does (SIGKILL, torn WAL tails,
//! full disks, memory limits, bit flips, client resets, write storms, huge values) and counts,
//! from a verifier that tracks every write sent and whether it was acknowledged, what was lost.
//! Every scenario is reproducible from its seed. See docs/chaos.md.

pub mod daemon;
pub mod error;
pub mod faultfs;
pub mod http;
pub mod ledger;
pub mod model;
pub mod pg;
pub mod report;
pub mod resp;
pub mod scenarios;
pub mod value;
pub mod workload;
