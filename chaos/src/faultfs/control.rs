//! The text commands of `mantis-chaos faultfs` (one per line on its standard input), so the
//! fault filesystem can be driven by hand or from a script as well as from the scenarios:
//!
//! ```text
//! sync-fail <probability> [path-substring]   fsync/fdatasync fails with EIO
//! write-fail <probability> [path-substring]  writes fail with EIO
//! delay <us-max>                             each read/write/sync waits 0..=us-max µs
//! heal                                       disarm every fault
//! power-cut drop|tear                        (stop the daemon first) drop or tear unsynced data, remount
//! stats                                      counters as JSON
//! quit                                       unmount and exit
//! ```

use super::{CutMode, FaultMount, Faults};

/// What a command asks for once parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    SyncFail { probability: f64, filter: String },
    WriteFail { probability: f64, filter: String },
    Delay { us_max: u64 },
    Heal,
    PowerCut(CutMode),
    Stats,
    Quit,
}

pub fn parse(line: &str) -> std::result::Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let prob = |w: Option<&&str>| -> std::result::Result<f64, String> {
        let p: f64 = w
            .ok_or("missing probability")?
            .parse()
            .map_err(|e| format!("probability: {e}"))?;
        if (0.0..=1.0).contains(&p) {
            Ok(p)
        } else {
            Err(format!("probability {p} outside [0, 1]"))
        }
    };
    let filter = words.get(2).map(|s| s.to_string()).unwrap_or_default();
    match words.first().copied() {
        Some("sync-fail") => Ok(Command::SyncFail {
            probability: prob(words.get(1))?,
            filter,
        }),
        Some("write-fail") => Ok(Command::WriteFail {
            probability: prob(words.get(1))?,
            filter,
        }),
        Some("delay") => Ok(Command::Delay {
            us_max: words
                .get(1)
                .ok_or("missing µs")?
                .parse()
                .map_err(|e| format!("delay: {e}"))?,
        }),
        Some("heal") => Ok(Command::Heal),
        Some("power-cut") => match words.get(1).copied() {
            Some("drop") => Ok(Command::PowerCut(CutMode::Drop)),
            Some("tear") => Ok(Command::PowerCut(CutMode::Tear)),
            other => Err(format!("power-cut drop|tear, not {other:?}")),
        },
        Some("stats") => Ok(Command::Stats),
        Some("quit") => Ok(Command::Quit),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Carries out one command; returns the line to print.
pub fn apply(m: &mut FaultMount, cmd: Command) -> String {
    let mut f = m.faults();
    match cmd {
        Command::SyncFail {
            probability,
            filter,
        } => {
            f.sync_fail_probability = probability;
            f.path_filter = filter;
        }
        Command::WriteFail {
            probability,
            filter,
        } => {
            f.write_fail_probability = probability;
            f.path_filter = filter;
        }
        Command::Delay { us_max } => f.delay_us_max = us_max,
        Command::Heal => f = Faults::default(),
        Command::PowerCut(mode) => {
            return match m.power_cut(mode) {
                Ok(s) => format!("ok {s:?}"),
                Err(e) => format!("error {e}"),
            }
        }
        Command::Stats => {
            return serde_json::to_string(&m.stats()).unwrap_or_else(|e| format!("error {e}"))
        }
        Command::Quit => return "bye".into(),
    }
    m.set_faults(f);
    "ok".into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_command_and_rejects_bad_ones() {
        assert_eq!(
            parse("sync-fail 1 wal").unwrap(),
            Command::SyncFail {
                probability: 1.0,
                filter: "wal".into()
            }
        );
        assert_eq!(parse("delay 500").unwrap(), Command::Delay { us_max: 500 });
        assert_eq!(
            parse("power-cut tear").unwrap(),
            Command::PowerCut(CutMode::Tear)
        );
        assert!(parse("sync-fail 2").is_err());
        assert!(parse("power-cut").is_err());
        assert!(parse("reboot").is_err());
    }
}
