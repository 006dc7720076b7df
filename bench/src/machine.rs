//! What machine a result came from: figures without the machine are not comparable.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub cpu_model: String,
    /// CPUs this process may run on (the affinity mask), which is what shards are placed on.
    pub cores_allowed: usize,
    /// Logical CPUs listed in /proc/cpuinfo.
    pub cores_online: usize,
    pub memory_total_bytes: u64,
    pub kernel: String,
    pub hostname: String,
    pub data_dir: String,
    pub data_dir_fs_type: String,
    pub date_utc: String,
    /// HEAD of the source tree when the benchmark ran.
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// The commit this binary was built from, and whether engine/ or bench/ had uncommitted
    /// changes then: the figures are of that code.
    pub build_commit: String,
    pub build_dirty: bool,
}

impl MachineInfo {
    /// Collects what it can; a field it cannot read says "unknown" rather than failing the run.
    pub fn collect(data_dir: &Path) -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (kernel, hostname) = uname();
        MachineInfo {
            cpu_model: cpu_model(&cpuinfo),
            cores_allowed: mantis_storage::rt::allowed_cpus().len(),
            cores_online: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            memory_total_bytes: memory_total_bytes(),
            kernel,
            hostname,
            data_dir: data_dir.display().to_string(),
            data_dir_fs_type: fs_type(data_dir),
            date_utc: utc_now_rfc3339(),
            git_commit: git(&["rev-parse", "HEAD"]),
            git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty()),
            build_commit: env!("MANTIS_BENCH_BUILD_COMMIT").to_string(),
            build_dirty: env!("MANTIS_BENCH_BUILD_DIRTY") == "true",
        }
    }
}

fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string())
}

fn memory_total_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn uname() -> (String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => (
            format!(
                "{} {} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy(),
                u.machine().to_string_lossy()
            ),
            u.nodename().to_string_lossy().into_owned(),
        ),
        Err(_) => ("unknown".to_string(), "unknown".to_string()),
    }
}

/// The filesystem type of `dir` from statfs(2): a direct-I/O figure from tmpfs would be
/// meaningless (glommio silently drops O_DIRECT there), so the report must say.
pub fn fs_type(dir: &Path) -> String {
    use nix::sys::statfs::{statfs, EXT4_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC};
    match statfs(dir) {
        Ok(st) => {
            let t = st.filesystem_type();
            if t == EXT4_SUPER_MAGIC {
                "ext4".to_string()
            } else if t == TMPFS_MAGIC {
                "tmpfs".to_string()
            } else if t == XFS_SUPER_MAGIC {
                "xfs".to_string()
            } else {
                format!("magic {:#x}", t.0)
            }
        }
        Err(e) => format!("unknown ({e})"),
    }
}

fn git(args: &[&str]) -> Option<String> {
    // The source tree this binary was built from, wherever the benchmark is run from.
    let out = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`, without pulling a date crate for one line.
pub fn utc_now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_from_unix_secs(secs)
}

fn rfc3339_from_unix_secs(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_convert() {
        assert_eq!(rfc3339_from_unix_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_from_unix_secs(1_700_000_000),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn cpu_model_is_parsed() {
        let info = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n";
        assert_eq!(cpu_model(info), "AMD EPYC 7B13");
        assert_eq!(cpu_model(""), "unknown");
    }

    #[test]
    fn var_tmp_is_a_real_filesystem() {
        let t = fs_type(Path::new("/var/tmp"));
        assert_ne!(t, "tmpfs");
        assert!(!t.starts_with("unknown"), "{t}");
    }
}
