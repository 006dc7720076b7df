//! Per-scenario results and the run report, written as JSON and Markdown.

use std::path::Path;

use serde::Serialize;

use crate::error::{io_err, Result};
use crate::model::Verdict;

#[derive(Debug, Default, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub seed: u64,
    pub iterations: u64,
    pub faults_injected: u64,
    pub writes_attempted: u64,
    pub writes_acknowledged: u64,
    pub writes_refused: u64,
    pub verdict: Verdict,
    /// Faults the daemon detected (refused to start, read error, error reply).
    pub faults_detected: u64,
    /// Starts that neither became ready nor exited within the start timeout (each is also a
    /// failure; the hung process is killed and the start retried).
    pub recovery_hangs: u64,
    pub recovery_ms: Vec<f64>,
    pub recovery_ms_p50: f64,
    pub recovery_ms_p99: f64,
    pub recovery_ms_max: f64,
    pub notes: Vec<String>,
    /// What this host could not do (the scenario part skipped, and why).
    pub host_limits: Vec<String>,
    /// Failures that are not counted by the verdict (the daemon died, a wrong reply).
    pub failures: Vec<String>,
    pub duration_s: f64,
    pub passed: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl ScenarioReport {
    pub fn new(scenario: &str, seed: u64) -> ScenarioReport {
        ScenarioReport {
            scenario: scenario.into(),
            seed,
            ..ScenarioReport::default()
        }
    }

    pub fn fail(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        eprintln!("[{} seed {}] FAILURE: {msg}", self.scenario, self.seed);
        if self.failures.len() < 50 {
            self.failures.push(msg);
        }
    }

    pub fn note(&mut self, msg: impl Into<String>) {
        self.notes.push(msg.into());
    }

    /// Computes the percentiles and the pass flag.
    pub fn finish(&mut self, started: std::time::Instant) {
        let mut r = self.recovery_ms.clone();
        r.sort_by(f64::total_cmp);
        self.recovery_ms_p50 = percentile(&r, 0.5);
        self.recovery_ms_p99 = percentile(&r, 0.99);
        self.recovery_ms_max = r.last().copied().unwrap_or(0.0);
        self.duration_s = started.elapsed().as_secs_f64();
        self.passed = self.verdict.failures() == 0 && self.failures.is_empty();
    }

    pub fn markdown(&self) -> String {
        let v = &self.verdict;
        let mut s = format!(
            "### {} (seed {}) — {}\n\n| measure | value |\n|---|---|\n",
            self.scenario,
            self.seed,
            if self.passed { "PASS" } else { "FAIL" }
        );
        let rows: Vec<(&str, String)> = vec![
            ("iterations", self.iterations.to_string()),
            ("faults injected", self.faults_injected.to_string()),
            (
                "faults detected by mantisd",
                self.faults_detected.to_string(),
            ),
            (
                "writes attempted / acknowledged / refused",
                format!(
                    "{} / {} / {}",
                    self.writes_attempted, self.writes_acknowledged, self.writes_refused
                ),
            ),
            ("keys checked", v.keys_checked.to_string()),
            ("**acknowledged writes lost**", v.acked_lost.to_string()),
            (
                "**wrong values read**",
                (v.wrong_values + v.refused_applied).to_string(),
            ),
            ("torn values", v.torn_values.to_string()),
            ("keys never written", v.unknown_keys.to_string()),
            ("partial batches", v.partial_batches.to_string()),
            ("TTL mismatches", v.ttl_mismatches.to_string()),
            (
                "acked writes destroyed by the injection itself",
                v.acked_destroyed_by_injection.to_string(),
            ),
            (
                "recovery ms p50 / p99 / max",
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    self.recovery_ms_p50, self.recovery_ms_p99, self.recovery_ms_max
                ),
            ),
            ("recovery hangs", self.recovery_hangs.to_string()),
            ("duration s", format!("{:.1}", self.duration_s)),
        ];
        for (k, val) in rows {
            s.push_str(&format!("| {k} | {val} |\n"));
        }
        for (title, list) in [
            ("Notes", &self.notes),
            ("Host limits", &self.host_limits),
            ("Failures", &self.failures),
            ("Verifier messages", &v.messages),
        ] {
            if !list.is_empty() {
                s.push_str(&format!("\n{title}:\n"));
                for n in list {
                    s.push_str(&format!("- {}\n", n.replace('\n', " ")));
                }
            }
        }
        s.push('\n');
        s
    }
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub seed: u64,
    pub mantisd: String,
    pub started_unix_s: u64,
    pub scenarios: Vec<ScenarioReport>,
    pub passed: bool,
}

impl RunReport {
    pub fn write(&self, dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let base = format!("chaos-{}-{}", self.started_unix_s, self.seed);
        let json = dir.join(format!("{base}.json"));
        let md = dir.join(format!("{base}.md"));
        let text = serde_json::to_string_pretty(self).map_err(|e| io_err(&json)(e.into()))?;
        std::fs::write(&json, text).map_err(io_err(&json))?;
        std::fs::write(&md, self.markdown()).map_err(io_err(&md))?;
        Ok((json, md))
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# mantis-chaos run (seed {}) — {}\n\nmantisd: `{}`\n\n| scenario | iterations | faults | acked | lost | wrong | torn | recovery p50/p99 ms | result |\n|---|---|---|---|---|---|---|---|---|\n",
            self.seed,
            if self.passed { "PASS" } else { "FAIL" },
            self.mantisd
        );
        for r in &self.scenarios {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.0}/{:.0} | {} |\n",
                r.scenario,
                r.iterations,
                r.faults_injected,
                r.writes_acknowledged,
                r.verdict.acked_lost,
                r.verdict.wrong_values + r.verdict.refused_applied,
                r.verdict.torn_values,
                r.recovery_ms_p50,
                r.recovery_ms_p99,
                if r.passed { "pass" } else { "FAIL" }
            ));
        }
        s.push('\n');
        for r in &self.scenarios {
            s.push_str(&r.markdown());
        }
        s
    }
}
