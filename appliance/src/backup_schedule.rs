//! Issue 10: scheduled backups. A task on shard 0 sleeps until the next due
//! `[[backup_schedule]]`, hands the backup to the job machinery of `POST /api/v1/backups`
//! (checkpoint on the shard, upload on a std thread), waits for the job, then on a std thread
//! applies the schedule's retention rules and notifies the alert channels:
//! - failure: a warning (`FIRING`, then `STILL FIRING`), escalated to critical after
//!   [`FAILURES_CRITICAL`] failures in a row;
//! - success: `RESOLVED`, at the level of the alert it resolves, or an info event when
//!   nothing was failing.
//!
//! Runs of one schedule never overlap (the next is computed after the job finished); a run
//! that was due while another ran starts right after it.

use std::sync::Arc;
use std::time::Duration;

use mantis_backup::schedule::Schedule;
use mantis_monitor::alerts::{AlertEvent, EventKind, Level};
use mantis_monitor::channels::{deliver, Channel, ChannelKind};

use crate::server::{now_ms, Shared};

/// Consecutive failures after which the alert turns critical.
pub const FAILURES_CRITICAL: u32 = 3;
/// How long the scheduler sleeps at most between looks at the clock and at draining.
const TICK_MS_MAX: u64 = 1000;
/// How often a running job's state is looked at.
const JOB_POLL_MS: u64 = 200;

/// Starts the scheduler on shard 0 when the config has schedules.
pub fn start(shared: &Arc<Shared>) {
    if shared.config.backup_schedule.is_empty() {
        return;
    }
    let schedules = match mantis_backup::schedule::parse_all(&shared.config.backup_schedule) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "backup schedules refused: no scheduled backups");
            return;
        }
    };
    let s = Arc::clone(shared);
    if let Err(e) = shared.engine.spawn_on(0, move || run(s, schedules)) {
        tracing::error!(error = %e, "backup scheduler did not start");
    }
}

async fn run(shared: Arc<Shared>, schedules: Vec<Schedule>) {
    let start_ms = now_ms();
    let mut next_ms: Vec<Option<u64>> = schedules
        .iter()
        .map(|s| s.next_after_ms(start_ms))
        .collect();
    let mut failures: Vec<u32> = vec![0; schedules.len()];
    tracing::info!(schedules = schedules.len(), "backup scheduler running");
    while !shared.is_draining() {
        let now = now_ms();
        let due = (0..schedules.len()).find(|&i| next_ms[i].is_some_and(|t| t <= now));
        let Some(i) = due else {
            let earliest = next_ms.iter().flatten().min().copied();
            let wait_ms = earliest.map_or(TICK_MS_MAX, |t| t.saturating_sub(now).min(TICK_MS_MAX));
            glommio::timer::sleep(Duration::from_millis(wait_ms.max(1))).await;
            continue;
        };
        let schedule = &schedules[i];
        // Issue 8: the destination's health follows each run.
        crate::backup_health::schedule_started(&schedule.config.name, &schedule.config.destination);
        let outcome = run_once(&shared, schedule).await;
        let outcome = after_run(schedule.clone(), outcome).await;
        crate::backup_health::schedule_finished(
            &schedule.config.name,
            &schedule.config.destination,
            &outcome,
        );
        let before = failures[i];
        failures[i] = if outcome.is_ok() { 0 } else { before + 1 };
        notify(&shared, schedule, &outcome, before);
        next_ms[i] = schedule.next_after_ms(now_ms());
    }
}

/// Starts the job and waits for it: the backup id, or why it failed.
async fn run_once(shared: &Arc<Shared>, schedule: &Schedule) -> Result<String, String> {
    let configs = schedule.destination_configs();
    let dest = mantis_backup::open_destination_with(&schedule.spec, &configs)
        .map_err(|e| e.to_string())?;
    tracing::info!(schedule = %schedule.config.name, destination = %dest.describe(), "scheduled backup starting");
    let job = crate::http::backup::start_job(
        shared,
        dest,
        &schedule.config.kind,
        schedule.config.read_rate_bytes_per_sec_max,
    )
    .await?;
    loop {
        if let Some(outcome) = crate::http::backup::job_outcome(job) {
            return outcome;
        }
        // The upload runs on its own thread and posts to the job table: poll it.
        glommio::timer::sleep(Duration::from_millis(JOB_POLL_MS)).await;
    }
}

/// Applies retention after a successful backup, on a std thread (network I/O); a retention
/// failure fails the run (old backups pile up otherwise, unnoticed).
async fn after_run(schedule: Schedule, outcome: Result<String, String>) -> Result<String, String> {
    let id = outcome?;
    if schedule.config.retention.is_empty() {
        return Ok(id);
    }
    let (tx, rx) = flume::bounded(1);
    let spawned = std::thread::Builder::new()
        .name("backup-retention".into())
        .spawn(move || {
            let result = mantis_backup::open_destination_with(
                &schedule.spec,
                &schedule.destination_configs(),
            )
            .and_then(|d| mantis_backup::retention::apply(d.as_ref(), &schedule.config.retention));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(format!("backup {id} done; retention thread: {e}"));
    }
    match rx.recv_async().await {
        Ok(Ok(plan)) => {
            tracing::info!(backup = %id, kept = plan.keep.len(), deleted = plan.delete.len(), "retention applied");
            Ok(id)
        }
        Ok(Err(e)) => Err(format!("backup {id} done, but retention failed: {e}")),
        Err(_) => Err(format!("backup {id} done, but the retention thread died")),
    }
}

/// The event for a run, given the consecutive failures before it.
pub fn event(
    name: &str,
    destination: &str,
    outcome: &Result<String, String>,
    failures_before: u32,
) -> AlertEvent {
    let failing_level = |n: u32| {
        if n >= FAILURES_CRITICAL {
            Level::Critical
        } else {
            Level::Warning
        }
    };
    let (kind, level, value, message) = match outcome {
        Ok(id) if failures_before == 0 => (
            EventKind::Resolved,
            Level::Info,
            0,
            format!("scheduled backup {id} to {destination} succeeded"),
        ),
        Ok(id) => (
            EventKind::Resolved,
            failing_level(failures_before),
            0,
            format!(
                "scheduled backup {id} to {destination} succeeded after {failures_before} failure(s)"
            ),
        ),
        Err(e) => {
            let n = failures_before + 1;
            let kind = if n == 1 {
                EventKind::Fired
            } else if n == FAILURES_CRITICAL {
                EventKind::Escalated
            } else {
                EventKind::Repeated
            };
            (
                kind,
                failing_level(n),
                n,
                format!("scheduled backup to {destination} failed ({n} in a row): {e}"),
            )
        }
    };
    AlertEvent {
        ts_ms: now_ms(),
        rule: format!("backup_schedule:{name}"),
        kind,
        level,
        metric: "backup_schedule_consecutive_failures".into(),
        value: f64::from(value),
        threshold: 1.0,
        message,
        notified: true,
    }
}

/// Delivers the run's event to the alert channels on a std thread (delivery retries block).
fn notify(
    shared: &Arc<Shared>,
    schedule: &Schedule,
    outcome: &Result<String, String>,
    before: u32,
) {
    let event = event(
        &schedule.config.name,
        &schedule.config.destination,
        outcome,
        before,
    );
    match outcome {
        Ok(_) => tracing::info!(schedule = %schedule.config.name, "{}", event.message),
        Err(_) => tracing::error!(schedule = %schedule.config.name, "{}", event.message),
    }
    let monitor = &shared.config.monitor;
    let channels: Vec<Channel> = if monitor.channels.is_empty() {
        vec![Channel {
            name: "log".into(),
            kind: ChannelKind::Log,
            min_level: Level::Info,
        }]
    } else {
        monitor.channels.clone()
    };
    let retry = monitor.retry;
    let spawned = std::thread::Builder::new()
        .name("backup-notify".into())
        .spawn(move || {
            for d in deliver(&channels, &retry, &event) {
                tracing::debug!(channel = %d.channel, attempts = d.attempts, ok = d.error.is_none(), "backup notification delivered");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "backup notification not sent");
    }
}
