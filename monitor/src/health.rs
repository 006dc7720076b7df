//! The health-check registry: checks registered per component, each critical or not, with an
//! interval and a timeout; results aggregate into healthy / degraded / unhealthy.
//!
//! The registry holds no runtime: the daemon runs due checks (on its executor, with its own
//! timeout primitive) and records the results here; a check that did not answer within its
//! timeout is recorded with [`Status::Fail`] by [`Registry::record_timeout`].

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Overall {
    /// The number alert rules compare (`health.status`): 0 healthy, 1 degraded, 2 unhealthy.
    pub fn as_value(self) -> f64 {
        match self {
            Overall::Healthy => 0.0,
            Overall::Degraded => 1.0,
            Overall::Unhealthy => 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckSpec {
    pub name: String,
    pub component: String,
    pub critical: bool,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub status: Status,
    pub detail: String,
    pub checked_ms: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub spec: CheckSpec,
    #[serde(flatten)]
    pub result: Option<CheckResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub status: Overall,
    pub checks: Vec<CheckReport>,
}

#[derive(Debug, Default)]
pub struct Registry {
    specs: Vec<CheckSpec>,
    results: BTreeMap<String, CheckResult>,
}

impl Registry {
    pub fn register(&mut self, spec: CheckSpec) {
        assert!(
            spec.timeout_ms > 0,
            "check {}: timeout must be positive",
            spec.name
        );
        assert!(
            !self.specs.iter().any(|s| s.name == spec.name),
            "check {} registered twice",
            spec.name
        );
        self.specs.push(spec);
    }

    pub fn specs(&self) -> &[CheckSpec] {
        &self.specs
    }

    /// Checks never run or whose interval has passed since they last ran.
    pub fn due(&self, now_ms: u64) -> Vec<&CheckSpec> {
        self.specs
            .iter()
            .filter(|s| {
                self.results
                    .get(&s.name)
                    .is_none_or(|r| now_ms.saturating_sub(r.checked_ms) >= s.interval_ms)
            })
            .collect()
    }

    pub fn record(&mut self, name: &str, result: CheckResult) {
        assert!(
            self.specs.iter().any(|s| s.name == name),
            "result for unregistered check {name}"
        );
        self.results.insert(name.into(), result);
    }

    pub fn record_timeout(&mut self, name: &str, now_ms: u64) {
        let timeout_ms = self
            .specs
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.timeout_ms);
        self.record(
            name,
            CheckResult {
                status: Status::Fail,
                detail: format!("no answer within {timeout_ms} ms"),
                checked_ms: now_ms,
                duration_ms: timeout_ms,
            },
        );
    }

    /// Unhealthy when a critical check fails; degraded when a non-critical one fails or any
    /// warns; a check never run counts as passing (it has nothing to report yet).
    pub fn report(&self) -> Report {
        let mut status = Overall::Healthy;
        let mut checks = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            let result = self.results.get(&spec.name).cloned();
            let this = match result.as_ref().map(|r| r.status) {
                None | Some(Status::Pass) => Overall::Healthy,
                Some(Status::Warn) => Overall::Degraded,
                Some(Status::Fail) if spec.critical => Overall::Unhealthy,
                Some(Status::Fail) => Overall::Degraded,
            };
            status = status.max(this);
            checks.push(CheckReport {
                spec: spec.clone(),
                result,
            });
        }
        Report { status, checks }
    }
}
