//! `mantisd`, the MantisDB appliance daemon: configuration, the RESP and HTTP front ends that
//! run on every shard's executor, metrics, health, and the process lifecycle (signals,
//! sd_notify, graceful shutdown). The binary in `main.rs` only wires these together.

pub mod background;
pub mod backup_health;
pub mod backup_schedule;
pub mod config;
pub mod http;
pub mod integrity_config;
pub mod integrity_metrics;
pub mod kvtxn;
pub mod latency;
pub mod lifecycle;
pub mod listen;
pub mod lock_config;
pub mod lock_metrics;
pub mod locks;
pub mod metrics;
pub mod monitoring;
pub mod net;
pub mod pg;
pub mod resp;
pub mod rpo;
pub mod server;
pub mod trace;
pub mod twopc_metrics;
