//! `mantis-monitor`: the monitoring logic of MantisDB, free of any async runtime so that it
//! unit-tests fast; the daemon (`mantisd`) drives it from its monitor thread.
//!
//! - [`audit`]: the tamper-evident audit trail (hash chain, verify, export, retention cut).
//! - [`alerts`]: alert rules, states, deduplication, escalation, silences, history.
//! - [`channels`]: log, console, file, webhook, Slack and email delivery with retries.
//! - [`health`]: the health-check registry and its healthy / degraded / unhealthy verdict.
//! - [`logfile`]: size-based log rotation with a retention count.

pub mod alerts;
pub mod audit;
pub mod channels;
pub mod health;
pub mod logfile;
