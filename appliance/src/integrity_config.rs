//! Issue 7's settings: the `[scrub]` and `[cold]` sections and the per-keyspace codec table
//! (`[[compression_keyspace]]`), with their flags and `MANTIS_*` variables, resolved into the
//! engine's `ScrubConfig`, `ColdConfig` and `KeyspaceCodec`s.
//!
//! The keyspace table is `[[compression_keyspace]]`, not `[[compression.keyspace]]`: the
//! top-level `compression = "lz4"` key already owns the name `compression`, and TOML cannot
//! make it both a string and a table.

use clap::Args;
use mantis_engine::cold::ColdConfig;
use mantis_engine::scrub::ScrubConfig;
use mantis_engine::{Codec, KeyspaceCodec, KEYSPACE_CODECS_MAX};
use serde::Deserialize;

use crate::config::{CompressionName, ConfigError};

/// Flags (and their `MANTIS_*` variables), flattened into `Cli`.
#[derive(Debug, Default, Clone, Args)]
pub struct StorageFlags {
    /// Run the background scrubber every scrub_interval_secs (false: only on demand, from
    /// HTTP or mantisctl). [default: true]
    #[arg(long, env = "MANTIS_SCRUB_ENABLED", value_name = "BOOL")]
    pub scrub_enabled: Option<bool>,
    /// Seconds between the starts of two scrub passes. [default: 21600]
    #[arg(long, env = "MANTIS_SCRUB_INTERVAL_SECS", value_name = "SECS")]
    pub scrub_interval_secs: Option<u64>,
    /// Scrubber read rate per shard, in bytes per second (0: unlimited). [default: 8388608]
    #[arg(long, env = "MANTIS_SCRUB_RATE_BYTES_PER_SEC", value_name = "BYTES")]
    pub scrub_rate_bytes_per_sec: Option<u64>,
    /// Close access epochs and recompress cold segments in the background. [default: true]
    #[arg(long, env = "MANTIS_COLD_ENABLED", value_name = "BOOL")]
    pub cold_enabled: Option<bool>,
    /// Length of an access epoch, in seconds. [default: 3600]
    #[arg(long, env = "MANTIS_COLD_EPOCH_SECS", value_name = "SECS")]
    pub cold_epoch_secs: Option<u64>,
    /// Data untouched for this many closed epochs is cold. [default: 24]
    #[arg(long, env = "MANTIS_COLD_AFTER_EPOCHS", value_name = "N")]
    pub cold_after_epochs: Option<usize>,
    /// Codec cold segments are rewritten with. [default: zstd]
    #[arg(long, env = "MANTIS_COLD_CODEC", value_enum)]
    pub cold_codec: Option<CompressionName>,
    /// zstd level of cold rewrites. [default: 6]
    #[arg(long, env = "MANTIS_COLD_ZSTD_LEVEL", value_name = "LEVEL")]
    pub cold_zstd_level: Option<i32>,
    /// Bytes of cold segments rewritten per second per shard (0: unlimited). [default: 4194304]
    #[arg(
        long,
        env = "MANTIS_COLD_RECOMPRESS_RATE_BYTES_PER_SEC",
        value_name = "BYTES"
    )]
    pub cold_recompress_rate_bytes_per_sec: Option<u64>,
    /// Per-keyspace codec, PREFIX=CODEC (repeat, or comma-separate in the variable); replaces
    /// the file's [[compression_keyspace]] table when given.
    #[arg(
        long,
        env = "MANTIS_COMPRESSION_KEYSPACE",
        value_name = "PREFIX=CODEC",
        value_delimiter = ','
    )]
    pub compression_keyspace: Vec<String>,
}

/// `[scrub]` in the file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrubSection {
    pub enabled: Option<bool>,
    pub interval_secs: Option<u64>,
    pub rate_bytes_per_sec: Option<u64>,
}

/// `[cold]` in the file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColdSection {
    pub enabled: Option<bool>,
    pub epoch_secs: Option<u64>,
    pub cold_after_epochs: Option<usize>,
    pub codec: Option<CompressionName>,
    pub zstd_level: Option<i32>,
    pub recompress_rate_bytes_per_sec: Option<u64>,
}

/// One `[[compression_keyspace]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyspaceSection {
    pub prefix: String,
    pub codec: CompressionName,
    /// zstd level when codec = "zstd" [default: the top-level zstd_level].
    pub zstd_level: Option<i32>,
}

/// The resolved settings, ready for `EngineConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageSettings {
    pub scrub: ScrubConfig,
    pub cold: ColdConfig,
    pub keyspace_codecs: Vec<KeyspaceCodec>,
}

impl StorageSettings {
    /// Flags over the file over the engine's defaults. `zstd_level` is the resolved top-level
    /// level, used by keyspaces that name zstd without a level.
    pub fn resolve(
        flags: StorageFlags,
        scrub: ScrubSection,
        cold: ColdSection,
        keyspaces: Vec<KeyspaceSection>,
        zstd_level: i32,
    ) -> Result<StorageSettings, ConfigError> {
        let defaults = StorageSettings::default();
        let scrub = ScrubConfig {
            interval_secs: match flags.scrub_enabled.or(scrub.enabled).unwrap_or(true) {
                // Interval 0 is the engine's "on demand only".
                false => 0,
                true => flags
                    .scrub_interval_secs
                    .or(scrub.interval_secs)
                    .unwrap_or(defaults.scrub.interval_secs),
            },
            rate_bytes_per_sec: flags
                .scrub_rate_bytes_per_sec
                .or(scrub.rate_bytes_per_sec)
                .unwrap_or(defaults.scrub.rate_bytes_per_sec),
        };
        let cold_level =
            flags
                .cold_zstd_level
                .or(cold.zstd_level)
                .unwrap_or(match defaults.cold.cold_codec {
                    Codec::Zstd { level } => level,
                    _ => zstd_level,
                });
        let cold = ColdConfig {
            epoch_secs: match flags.cold_enabled.or(cold.enabled).unwrap_or(true) {
                // Epoch 0: epochs close only when asked (HTTP), so nothing turns cold by itself.
                false => 0,
                true => flags
                    .cold_epoch_secs
                    .or(cold.epoch_secs)
                    .unwrap_or(defaults.cold.epoch_secs),
            },
            cold_after_epochs: flags
                .cold_after_epochs
                .or(cold.cold_after_epochs)
                .unwrap_or(defaults.cold.cold_after_epochs),
            cold_codec: match flags.cold_codec.or(cold.codec) {
                Some(name) => codec(name, cold_level),
                None => Codec::Zstd { level: cold_level },
            },
            recompress_rate_bytes_per_sec: flags
                .cold_recompress_rate_bytes_per_sec
                .or(cold.recompress_rate_bytes_per_sec)
                .unwrap_or(defaults.cold.recompress_rate_bytes_per_sec),
        };
        let keyspace_codecs = if flags.compression_keyspace.is_empty() {
            keyspaces
                .into_iter()
                .map(|k| KeyspaceCodec {
                    prefix: k.prefix.into_bytes(),
                    codec: codec(k.codec, k.zstd_level.unwrap_or(zstd_level)),
                })
                .collect()
        } else {
            flags
                .compression_keyspace
                .iter()
                .map(|s| keyspace_flag(s, zstd_level))
                .collect::<Result<Vec<_>, _>>()?
        };
        let settings = StorageSettings {
            scrub,
            cold,
            keyspace_codecs,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |option, reason: String| Err(ConfigError::Invalid { option, reason });
        if self.cold.cold_after_epochs == 0 {
            return invalid("cold.cold_after_epochs", "must be at least 1".into());
        }
        if self.keyspace_codecs.len() > KEYSPACE_CODECS_MAX {
            return invalid(
                "compression_keyspace",
                format!(
                    "{} entries, at most {KEYSPACE_CODECS_MAX}",
                    self.keyspace_codecs.len()
                ),
            );
        }
        for (i, k) in self.keyspace_codecs.iter().enumerate() {
            if k.prefix.is_empty() {
                return invalid("compression_keyspace", "a prefix is empty".into());
            }
            if self.keyspace_codecs[..i]
                .iter()
                .any(|o| o.prefix == k.prefix)
            {
                return invalid(
                    "compression_keyspace",
                    format!(
                        "prefix {:?} given twice",
                        String::from_utf8_lossy(&k.prefix)
                    ),
                );
            }
        }
        let range = mantis_engine::zstd_level_range();
        let levels = std::iter::once(("cold.zstd_level", self.cold.cold_codec)).chain(
            self.keyspace_codecs
                .iter()
                .map(|k| ("compression_keyspace", k.codec)),
        );
        for (option, c) in levels {
            if let Codec::Zstd { level } = c {
                if !range.contains(&level) {
                    return invalid(option, format!("zstd level {level} not in {range:?}"));
                }
            }
        }
        Ok(())
    }
}

fn codec(name: CompressionName, zstd_level: i32) -> Codec {
    match name {
        CompressionName::None => Codec::None,
        CompressionName::Lz4 => Codec::Lz4,
        CompressionName::Snappy => Codec::Snappy,
        CompressionName::Zstd => Codec::Zstd { level: zstd_level },
    }
}

/// `PREFIX=CODEC` from a flag.
fn keyspace_flag(text: &str, zstd_level: i32) -> Result<KeyspaceCodec, ConfigError> {
    use clap::ValueEnum;
    let invalid = |reason: String| ConfigError::Invalid {
        option: "compression_keyspace",
        reason,
    };
    let (prefix, name) = text
        .rsplit_once('=')
        .ok_or_else(|| invalid(format!("{text:?} is not PREFIX=CODEC")))?;
    let name = CompressionName::from_str(name, true)
        .map_err(|e| invalid(format!("{text:?}: codec {e}")))?;
    Ok(KeyspaceCodec {
        prefix: prefix.as_bytes().to_vec(),
        codec: codec(name, zstd_level),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Cli, Config, FileConfig};
    use clap::Parser;

    fn resolve(args: &[&str], toml_text: &str) -> Result<Config, ConfigError> {
        let mut full = vec!["mantisd"];
        full.extend_from_slice(args);
        let cli = Cli::try_parse_from(full).unwrap();
        let file: FileConfig = toml::from_str(toml_text).unwrap();
        Config::resolve(cli, file)
    }

    #[test]
    fn defaults_are_the_engine_defaults() {
        let c = resolve(&[], "").unwrap();
        assert_eq!(c.storage, StorageSettings::default());
    }

    #[test]
    fn file_sections_and_flags() {
        let text = r#"
zstd_level = 5
[scrub]
interval_secs = 60
rate_bytes_per_sec = 1000
[cold]
epoch_secs = 10
cold_after_epochs = 2
codec = "snappy"
recompress_rate_bytes_per_sec = 0
[[compression_keyspace]]
prefix = "logs:"
codec = "zstd"
[[compression_keyspace]]
prefix = "tmp:"
codec = "none"
"#;
        let c = resolve(&[], text).unwrap();
        assert_eq!(c.storage.scrub.interval_secs, 60);
        assert_eq!(c.storage.scrub.rate_bytes_per_sec, 1000);
        assert_eq!(c.storage.cold.epoch_secs, 10);
        assert_eq!(c.storage.cold.cold_after_epochs, 2);
        assert_eq!(c.storage.cold.cold_codec, Codec::Snappy);
        assert_eq!(c.storage.cold.recompress_rate_bytes_per_sec, 0);
        assert_eq!(
            c.storage.keyspace_codecs,
            vec![
                KeyspaceCodec {
                    prefix: b"logs:".to_vec(),
                    codec: Codec::Zstd { level: 5 }
                },
                KeyspaceCodec {
                    prefix: b"tmp:".to_vec(),
                    codec: Codec::None
                },
            ]
        );
        // Flags win, and a flag table replaces the file's.
        let c = resolve(
            &[
                "--scrub-enabled",
                "false",
                "--cold-epoch-secs",
                "7",
                "--compression-keyspace",
                "a:=lz4,b:=zstd",
            ],
            text,
        )
        .unwrap();
        assert_eq!(c.storage.scrub.interval_secs, 0);
        assert_eq!(c.storage.cold.epoch_secs, 7);
        assert_eq!(c.storage.keyspace_codecs.len(), 2);
        assert_eq!(c.storage.keyspace_codecs[1].codec, Codec::Zstd { level: 5 });
    }

    #[test]
    fn bad_settings_are_refused() {
        for (args, text, option) in [
            (vec!["--compression-keyspace", "nocodec"], "", "compression_keyspace"),
            (vec!["--compression-keyspace", "a:=brotli"], "", "compression_keyspace"),
            (vec![], "[cold]\ncold_after_epochs = 0\n", "cold.cold_after_epochs"),
            (vec![], "[cold]\nzstd_level = 99\n", "cold.zstd_level"),
            (
                vec![],
                "[[compression_keyspace]]\nprefix = \"a\"\ncodec = \"lz4\"\n[[compression_keyspace]]\nprefix = \"a\"\ncodec = \"zstd\"\n",
                "compression_keyspace",
            ),
        ] {
            let err = resolve(&args, text).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { option: o, .. } if o == option),
                "{args:?} {text:?}: {err}"
            );
        }
        assert!(toml::from_str::<FileConfig>("[scrub]\nrate = 1\n").is_err());
    }
}
