//! Backup schedules: `[[backup_schedule]]` tables of the daemon's config file, each a cron
//! expression (5 fields, or 6 with seconds first; parsed by `croner`), a kind (full or
//! incremental), a destination with its endpoint and credentials, and retention rules that
//! are applied after each scheduled backup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dest::azure::AzureConfig;
use crate::dest::gcs::GcsConfig;
use crate::dest::s3::S3Config;
use crate::dest::{DestinationConfigs, DestinationSpec};
use crate::error::{BackupError, Result};
use crate::retention::RetentionRules;

/// Schedules one daemon runs: each is a loop iteration of the scheduler, so they are few.
pub const SCHEDULES_MAX: usize = 64;

/// One `[[backup_schedule]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Names the schedule in logs and notifications; unique.
    pub name: String,
    /// `min hour day-of-month month day-of-week`, or with a leading seconds field.
    pub cron: String,
    /// `full` or `incremental`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// A path, `s3://`, `gs://`, `az://` or an Azure blob URL.
    pub destination: String,
    #[serde(default)]
    pub retention: RetentionRules,
    pub s3_endpoint: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    pub s3_region: Option<String>,
    /// `https://storage.googleapis.com` when unset.
    pub gcs_endpoint: Option<String>,
    pub gcs_token: Option<String>,
    /// `https://<account>.blob.core.windows.net` when unset.
    pub azure_endpoint: Option<String>,
    pub azure_account: Option<String>,
    pub azure_key: Option<String>,
    /// Issue 10: PEM CA certificates trusted for the destination's `https://` endpoint
    /// (a private CA); unset trusts the public web PKI.
    pub ca_file: Option<std::path::PathBuf>,
    /// Issue 10: most bytes per second the run reads checkpoint files at (0: no limit;
    /// unset: the daemon's default, which keeps commits on the same disk at their latency).
    pub read_rate_bytes_per_sec_max: Option<u64>,
}

fn default_kind() -> String {
    "full".into()
}

/// A checked schedule: the cron expression parsed, the destination understood.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub config: ScheduleConfig,
    pub spec: DestinationSpec,
    cron: croner::Cron,
}

impl Schedule {
    pub fn parse(config: ScheduleConfig) -> Result<Schedule> {
        let invalid = |what: String| {
            BackupError::Invalid(format!("backup_schedule {:?}: {what}", config.name))
        };
        if config.name.is_empty() {
            return Err(invalid("a name is needed".into()));
        }
        let cron = croner::Cron::new(&config.cron)
            .with_seconds_optional()
            .parse()
            .map_err(|e| invalid(format!("cron {:?}: {e}", config.cron)))?;
        if config.kind != "full" && config.kind != "incremental" {
            return Err(invalid(format!(
                "kind {:?}: one of full, incremental",
                config.kind
            )));
        }
        let spec =
            DestinationSpec::parse(&config.destination).map_err(|e| invalid(e.to_string()))?;
        Ok(Schedule { config, spec, cron })
    }

    /// The first run strictly after `after_ms` (ms since the epoch); None if there is none.
    pub fn next_after_ms(&self, after_ms: u64) -> Option<u64> {
        let secs = i64::try_from(after_ms / 1000).ok()?;
        let nanos = u32::try_from((after_ms % 1000) * 1_000_000).ok()?;
        let after: DateTime<Utc> = DateTime::from_timestamp(secs, nanos)?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// Endpoints and credentials for opening the destination.
    pub fn destination_configs(&self) -> DestinationConfigs {
        let c = &self.config;
        let s3 = c.s3_endpoint.as_deref().map(|endpoint| {
            let mut cfg = S3Config::new(
                endpoint,
                c.s3_access_key.as_deref().unwrap_or_default(),
                c.s3_secret_key.as_deref().unwrap_or_default(),
            );
            if let Some(region) = &c.s3_region {
                cfg.region = region.clone();
            }
            cfg.ca_file = c.ca_file.clone();
            cfg
        });
        let mut gcs = GcsConfig::new(
            c.gcs_endpoint
                .as_deref()
                .unwrap_or("https://storage.googleapis.com"),
            c.gcs_token.clone(),
        );
        gcs.ca_file = c.ca_file.clone();
        let gcs = Some(gcs);
        let azure = c.azure_account.as_deref().map(|account| {
            let mut cfg = AzureConfig::new(account, c.azure_key.as_deref().unwrap_or_default());
            if let Some(endpoint) = &c.azure_endpoint {
                cfg.endpoint = endpoint.clone();
            }
            cfg.ca_file = c.ca_file.clone();
            cfg
        });
        DestinationConfigs { s3, gcs, azure }
    }
}

/// Parses every schedule, refusing duplicates and more than [`SCHEDULES_MAX`].
pub fn parse_all(configs: &[ScheduleConfig]) -> Result<Vec<Schedule>> {
    if configs.len() > SCHEDULES_MAX {
        return Err(BackupError::Invalid(format!(
            "{} backup schedules: at most {SCHEDULES_MAX}",
            configs.len()
        )));
    }
    let mut out: Vec<Schedule> = Vec::with_capacity(configs.len());
    for c in configs {
        if out.iter().any(|s| s.config.name == c.name) {
            return Err(BackupError::Invalid(format!(
                "backup_schedule {:?} is defined twice",
                c.name
            )));
        }
        out.push(Schedule::parse(c.clone())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(cron: &str) -> ScheduleConfig {
        ScheduleConfig {
            name: "nightly".into(),
            cron: cron.into(),
            kind: "incremental".into(),
            destination: "gs://b/p".into(),
            retention: RetentionRules::default(),
            s3_endpoint: None,
            s3_access_key: None,
            s3_secret_key: None,
            s3_region: None,
            gcs_endpoint: None,
            gcs_token: None,
            azure_endpoint: None,
            azure_account: None,
            azure_key: None,
            ca_file: None,
            read_rate_bytes_per_sec_max: None,
        }
    }

    #[test]
    fn next_runs_follow_the_cron_expression() {
        // 2025-03-03T02:59:30Z, a Monday.
        let t0_ms = 1_740_970_770_000;
        let s = Schedule::parse(config("0 3 * * *")).unwrap();
        // Next 03:00 is 30 s later; the one after that a day later.
        let next = s.next_after_ms(t0_ms).unwrap();
        assert_eq!(next, t0_ms + 30_000);
        assert_eq!(s.next_after_ms(next).unwrap(), next + 86_400_000);
        let s = Schedule::parse(config("*/5 * * * * *")).unwrap();
        assert_eq!(s.next_after_ms(t0_ms).unwrap(), t0_ms + 5_000);
        assert!(Schedule::parse(config("61 * * * *")).is_err());
        let mut bad = config("0 3 * * *");
        bad.kind = "snapshot".into();
        assert!(Schedule::parse(bad).is_err());
        let twice = [config("0 3 * * *"), config("0 4 * * *")];
        assert!(parse_all(&twice).is_err());
    }
}
