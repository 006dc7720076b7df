//! The alert rules engine: rules on named values (metrics and health checks), threshold and
//! comparison held for a duration, levels, deduplication and suppression windows, escalation
//! of unresolved alerts, acknowledgement, silences, resolution, and a history persisted as
//! JSON lines.
//!
//! The engine is pure state: [`Engine::evaluate`] takes the time and a lookup of current
//! values and returns the events to notify; delivery is [`crate::channels`]' job.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert history {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no alert rule named {0:?}")]
    NoSuchRule(String),
    #[error("alert {0:?} is not firing")]
    NotFiring(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
            Comparison::Eq => value == threshold,
            Comparison::Ne => value != threshold,
        }
    }
}

/// One rule, as written in the `[[monitor.alerts.rules]]` tables of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    /// The value looked up: a metric name (e.g. `mantis_shard_disk_full`) or `health.<check>`.
    pub metric: String,
    pub comparison: Comparison,
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    #[serde(default)]
    pub for_ms: u64,
    pub level: Level,
    /// Deduplication: while firing, a repeat notification goes out at most once per window.
    #[serde(default = "default_repeat_ms")]
    pub repeat_ms: u64,
    /// Escalation: unresolved and unacknowledged this long after firing, the level rises.
    #[serde(default)]
    pub escalate_after_ms: Option<u64>,
    #[serde(default = "default_escalate_to")]
    pub escalate_to: Level,
    #[serde(default)]
    pub summary: String,
}

fn default_repeat_ms() -> u64 {
    15 * 60 * 1000
}

fn default_escalate_to() -> Level {
    Level::Critical
}

/// The rules shipped when the config file gives none.
pub fn default_rules() -> Vec<Rule> {
    let rule = |name: &str, metric: &str, cmp, threshold, for_ms, level, summary: &str| Rule {
        name: name.into(),
        metric: metric.into(),
        comparison: cmp,
        threshold,
        for_ms,
        level,
        repeat_ms: default_repeat_ms(),
        escalate_after_ms: Some(30 * 60 * 1000),
        escalate_to: Level::Critical,
        summary: summary.into(),
    };
    vec![
        rule(
            "shard_read_only",
            "mantis_shard_read_only",
            Comparison::Gt,
            0.0,
            0,
            Level::Critical,
            "a shard refuses writes after an fsync failure",
        ),
        rule(
            "disk_full",
            "mantis_shard_disk_full",
            Comparison::Gt,
            0.0,
            60_000,
            Level::Warning,
            "a shard's last write hit ENOSPC",
        ),
        rule(
            "unhealthy",
            "health.status",
            Comparison::Ge,
            2.0,
            30_000,
            Level::Critical,
            "the daemon reports unhealthy",
        ),
        rule(
            "degraded",
            "health.status",
            Comparison::Ge,
            1.0,
            5 * 60_000,
            Level::Warning,
            "the daemon reports degraded",
        ),
        // Issue 7: one corruption event (a checksum mismatch on a read or found by the
        // scrubber) is enough: the data on disk is damaged and someone must look now.
        rule(
            "corruption",
            "mantis_corruption_events_total",
            Comparison::Gt,
            0.0,
            0,
            Level::Critical,
            "stored data failed its checksum (GET /api/v1/integrity names the file and offset)",
        ),
        rule(
            "audit_backlog",
            "mantis_audit_queue_records",
            Comparison::Gt,
            10_000.0,
            60_000,
            Level::Warning,
            "audit records are waiting to be written",
        ),
        // Issue 10: the archive lags the RPO target (GET /api/v1/rpo names the shard and
        // the upload error); resolved when it catches up.
        rule(
            "rpo_breached",
            "mantis_rpo_breached",
            Comparison::Gt,
            0.0,
            0,
            Level::Critical,
            "committed writes older than the RPO target are not archived yet",
        ),
        rule(
            "rpo_backlog",
            "mantis_rpo_backlog_over_max",
            Comparison::Gt,
            0.0,
            0,
            Level::Critical,
            "the WAL kept for the archiver exceeds archive_backlog_bytes_max (kept, not dropped)",
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Fired,
    /// A repeat of a still-firing alert after its deduplication window.
    Repeated,
    Escalated,
    Resolved,
    Acknowledged,
    Silenced,
}

/// One entry of the history, and what channels are told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub ts_ms: u64,
    pub rule: String,
    pub kind: EventKind,
    pub level: Level,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    /// False when a silence kept it from the channels.
    pub notified: bool,
}

/// An alert that is pending (condition holds, `for_ms` not yet reached) or firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub level: Level,
    pub firing: bool,
    pub since_ms: u64,
    pub fired_ms: Option<u64>,
    pub last_notified_ms: Option<u64>,
    pub value: f64,
    pub acknowledged_by: Option<String>,
    pub escalated: bool,
    /// Evaluations whose notification the deduplication window held back.
    pub suppressed: u64,
}

pub struct Engine {
    rules: Vec<Rule>,
    active: BTreeMap<String, Alert>,
    /// Rule name → silenced until (ms since the epoch).
    silences: BTreeMap<String, u64>,
    history: VecDeque<AlertEvent>,
    history_events_max: usize,
    history_file: Option<(PathBuf, File)>,
}

impl Engine {
    /// An engine whose history is appended to `history_path` (and the last
    /// `history_events_max` entries of it loaded back) when one is given.
    pub fn new(
        rules: Vec<Rule>,
        history_path: Option<&Path>,
        history_events_max: usize,
    ) -> Result<Engine, AlertError> {
        assert!(
            history_events_max > 0,
            "history_events_max must be positive"
        );
        let mut history = VecDeque::new();
        let history_file = match history_path {
            None => None,
            Some(path) => {
                let io = |source| AlertError::Io {
                    path: path.to_path_buf(),
                    source,
                };
                if let Ok(f) = File::open(path) {
                    for line in BufReader::new(f).lines() {
                        // A torn last line (crash mid-append) is skipped, not fatal.
                        if let Ok(event) = serde_json::from_str(&line.map_err(io)?) {
                            if history.len() == history_events_max {
                                history.pop_front();
                            }
                            history.push_back(event);
                        }
                    }
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AlertError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some((path.to_path_buf(), file))
            }
        };
        Ok(Engine {
            rules,
            active: BTreeMap::new(),
            silences: BTreeMap::new(),
            history,
            history_events_max,
            history_file,
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    pub fn history(&self) -> impl Iterator<Item = &AlertEvent> {
        self.history.iter()
    }

    pub fn silences(&self) -> &BTreeMap<String, u64> {
        &self.silences
    }

    fn silenced(&self, rule: &str, now_ms: u64) -> bool {
        self.silences.get(rule).is_some_and(|&until| now_ms < until)
    }

    fn record(&mut self, event: AlertEvent) -> Result<(), AlertError> {
        if let Some((path, file)) = &mut self.history_file {
            let mut line = serde_json::to_string(&event).map_err(|e| AlertError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            line.push('\n');
            // History is an operator record, not data: written, not synced per event.
            file.write_all(line.as_bytes())
                .map_err(|source| AlertError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        if self.history.len() == self.history_events_max {
            self.history.pop_front();
        }
        self.history.push_back(event);
        Ok(())
    }

    /// Evaluates every rule at `now_ms`; returns the events channels must be told (silenced
    /// ones go to the history only). A rule whose value is missing keeps its state.
    pub fn evaluate(
        &mut self,
        now_ms: u64,
        value_of: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<Vec<AlertEvent>, AlertError> {
        let mut out = Vec::new();
        for index in 0..self.rules.len() {
            let rule = self.rules[index].clone();
            let Some(value) = value_of(&rule.metric) else {
                continue;
            };
            let kind = self.step(&rule, value, now_ms);
            let Some((kind, level)) = kind else { continue };
            let silenced = self.silenced(&rule.name, now_ms);
            let event = AlertEvent {
                ts_ms: now_ms,
                rule: rule.name.clone(),
                kind,
                level,
                metric: rule.metric.clone(),
                value,
                threshold: rule.threshold,
                message: rule.summary.clone(),
                notified: !silenced,
            };
            self.record(event.clone())?;
            if !silenced {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// Advances one rule's state; returns the event kind and level when there is one.
    fn step(&mut self, rule: &Rule, value: f64, now_ms: u64) -> Option<(EventKind, Level)> {
        let holds = rule.comparison.holds(value, rule.threshold);
        if !holds {
            let alert = self.active.remove(&rule.name)?;
            return alert.firing.then_some((EventKind::Resolved, alert.level));
        }
        let alert = self.active.entry(rule.name.clone()).or_insert(Alert {
            rule: rule.name.clone(),
            level: rule.level,
            firing: false,
            since_ms: now_ms,
            fired_ms: None,
            last_notified_ms: None,
            value,
            acknowledged_by: None,
            escalated: false,
            suppressed: 0,
        });
        alert.value = value;
        if !alert.firing {
            if now_ms.saturating_sub(alert.since_ms) < rule.for_ms {
                return None;
            }
            alert.firing = true;
            alert.fired_ms = Some(now_ms);
            alert.last_notified_ms = Some(now_ms);
            return Some((EventKind::Fired, alert.level));
        }
        if alert.acknowledged_by.is_some() {
            return None;
        }
        let fired_ms = alert.fired_ms.unwrap_or(now_ms);
        if let Some(after_ms) = rule.escalate_after_ms {
            if !alert.escalated && now_ms.saturating_sub(fired_ms) >= after_ms {
                alert.escalated = true;
                alert.level = alert.level.max(rule.escalate_to);
                alert.last_notified_ms = Some(now_ms);
                return Some((EventKind::Escalated, alert.level));
            }
        }
        let last_ms = alert.last_notified_ms.unwrap_or(fired_ms);
        if now_ms.saturating_sub(last_ms) >= rule.repeat_ms {
            alert.last_notified_ms = Some(now_ms);
            return Some((EventKind::Repeated, alert.level));
        }
        alert.suppressed += 1;
        None
    }

    /// Acknowledges a firing alert: no more repeats or escalation until it resolves.
    pub fn acknowledge(&mut self, rule: &str, who: &str, now_ms: u64) -> Result<(), AlertError> {
        let alert = self
            .active
            .get_mut(rule)
            .filter(|a| a.firing)
            .ok_or_else(|| AlertError::NotFiring(rule.into()))?;
        alert.acknowledged_by = Some(who.into());
        let event = AlertEvent {
            ts_ms: now_ms,
            rule: rule.into(),
            kind: EventKind::Acknowledged,
            level: alert.level,
            metric: String::new(),
            value: alert.value,
            threshold: 0.0,
            message: format!("acknowledged by {who}"),
            notified: false,
        };
        self.record(event)
    }

    /// Silences a rule's notifications until `until_ms` (its state still advances).
    pub fn silence(
        &mut self,
        rule: &str,
        until_ms: u64,
        who: &str,
        now_ms: u64,
    ) -> Result<(), AlertError> {
        let Some(r) = self.rules.iter().find(|r| r.name == rule) else {
            return Err(AlertError::NoSuchRule(rule.into()));
        };
        let level = r.level;
        self.silences.insert(rule.into(), until_ms);
        self.record(AlertEvent {
            ts_ms: now_ms,
            rule: rule.into(),
            kind: EventKind::Silenced,
            level,
            metric: String::new(),
            value: 0.0,
            threshold: 0.0,
            message: format!("silenced by {who} until {until_ms}"),
            notified: false,
        })
    }
}
