//! Configuration: defaults, then the TOML file (`--config`), then `MANTIS_*` environment
//! variables, then command-line flags; each later source wins. clap reads flags and the
//! environment (flags win there already); the file only fills what neither gave.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{option}: cannot resolve address {value:?}: {reason}")]
    Address {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to start: {option} = {addr} is not a loopback address and no password is set; \
         set `password` (or --password-file / MANTIS_PASSWORD) so clients must authenticate, \
         or bind to 127.0.0.1"
    )]
    InsecureBind {
        option: &'static str,
        addr: SocketAddr,
    },
    #[error("{option}: {reason}")]
    Invalid {
        option: &'static str,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePolicyName {
    Lru,
    Lfu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionName {
    None,
    Lz4,
    Snappy,
    Zstd,
}

/// The checksum of each segment block (issue 7); recorded in every file, so a change applies
/// to files written afterwards and old files keep reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumName {
    Crc32,
    Md5,
    Sha256,
}

/// Command-line flags. Every flag can also be given as the `MANTIS_*` variable shown, or as the
/// same key (with underscores) in the TOML file.
#[derive(Debug, Default, Parser)]
#[command(
    name = "mantisd",
    version,
    about = "MantisDB appliance daemon: a shard-per-core key-value store speaking RESP and HTTP",
    long_about = "MantisDB appliance daemon.\n\nSettings come from defaults, then the TOML file \
        given by --config, then MANTIS_* environment variables, then flags (later wins). \
        With no settings at all it stores data in ./data and listens on 127.0.0.1 only."
)]
pub struct Cli {
    /// TOML configuration file (keys are the long option names with '_' for '-').
    #[arg(long, env = "MANTIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the data (one sub-directory per shard). [default: ./data]
    #[arg(long, env = "MANTIS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (one glommio executor each); 0 = one per CPU this process may use. [default: 0]
    #[arg(long, env = "MANTIS_SHARDS", value_name = "N")]
    pub shards: Option<usize>,
    /// Pin each shard to its own CPU. [default: true]
    #[arg(long, env = "MANTIS_PIN_CPUS", value_name = "BOOL")]
    pub pin_cpus: Option<bool>,
    /// RESP (Redis protocol) listen address, host:port. [default: 127.0.0.1:6380]
    #[arg(long, env = "MANTIS_RESP_ADDR", value_name = "HOST:PORT")]
    pub resp_addr: Option<String>,
    /// PostgreSQL wire protocol listen address, host:port (served by the SQL front end when it is
    /// built in; checked for the loopback/password rule either way). [default: 127.0.0.1:5433]
    #[arg(long, env = "MANTIS_PG_ADDR", value_name = "HOST:PORT")]
    pub pg_addr: Option<String>,
    /// HTTP listen address (REST API, /metrics, /health), host:port. [default: 127.0.0.1:8080]
    #[arg(long, env = "MANTIS_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Password for RESP AUTH and HTTP "Authorization: Bearer"; required to bind a non-loopback
    /// address. Prefer --password-file or the environment: flags show in `ps`.
    #[arg(
        long,
        env = "MANTIS_PASSWORD",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// File whose first line is the password (for systemd credentials / secrets).
    #[arg(long, env = "MANTIS_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Most client connections at once, all protocols and shards together. [default: 10000]
    #[arg(long, env = "MANTIS_CONNECTIONS_MAX", value_name = "N")]
    pub connections_max: Option<usize>,
    /// Close a connection idle (or stalled mid-request) this long, in seconds; 0 = never. [default: 300]
    #[arg(long, env = "MANTIS_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// On SIGTERM, wait this long for in-flight requests before flushing anyway, in seconds. [default: 30]
    #[arg(long, env = "MANTIS_DRAIN_TIMEOUT_SECS", value_name = "SECS")]
    pub drain_timeout_secs: Option<u64>,
    /// Largest request one RESP connection may buffer (all arguments of one command), in bytes. [default: value limit x 2 + 1 MiB]
    #[arg(long, env = "MANTIS_REQUEST_BYTES_MAX", value_name = "BYTES")]
    pub request_bytes_max: Option<usize>,
    /// Most single-key commands of one RESP pipeline run side by side (distinct keys only;
    /// replies stay in order). 1 = one at a time, so that writes to different keys become
    /// visible to other clients in the order sent, as in Redis. [default: 16]
    #[arg(long, env = "MANTIS_PIPELINE_PARALLEL_MAX", value_name = "N")]
    pub pipeline_parallel_max: Option<usize>,
    /// Largest HTTP request body, in bytes; larger gets 413. [default: value limit + 64 KiB]
    #[arg(long, env = "MANTIS_HTTP_BODY_BYTES_MAX", value_name = "BYTES")]
    pub http_body_bytes_max: Option<usize>,
    /// Largest HTTP request head (request line + headers), in bytes; larger gets 431. [default: 16384]
    #[arg(long, env = "MANTIS_HTTP_HEADER_BYTES_MAX", value_name = "BYTES")]
    pub http_header_bytes_max: Option<usize>,
    /// Largest value, in bytes. [default: 67108864]
    #[arg(long, env = "MANTIS_VALUE_BYTES_MAX", value_name = "BYTES")]
    pub value_bytes_max: Option<usize>,
    /// Largest key, in bytes. [default: 65536]
    #[arg(long, env = "MANTIS_KEY_BYTES_MAX", value_name = "BYTES")]
    pub key_bytes_max: Option<usize>,
    /// Memtable budget per shard, in bytes. [default: 67108864]
    #[arg(long, env = "MANTIS_MEMTABLE_BYTES_MAX", value_name = "BYTES")]
    pub memtable_bytes_max: Option<usize>,
    /// Block cache per shard, in bytes. [default: 67108864]
    #[arg(long, env = "MANTIS_BLOCK_CACHE_BYTES", value_name = "BYTES")]
    pub block_cache_bytes: Option<usize>,
    /// Block cache eviction policy. [default: lru]
    #[arg(long, env = "MANTIS_CACHE_POLICY", value_enum)]
    pub cache_policy: Option<CachePolicyName>,
    /// Segment block compression. [default: lz4]
    #[arg(long, env = "MANTIS_COMPRESSION", value_enum)]
    pub compression: Option<CompressionName>,
    /// zstd level when compression = zstd. [default: 3]
    #[arg(long, env = "MANTIS_ZSTD_LEVEL", value_name = "LEVEL")]
    pub zstd_level: Option<i32>,
    /// Checksum of each segment block written from now on. [default: crc32]
    #[arg(long, env = "MANTIS_BLOCK_CHECKSUM", value_enum)]
    pub block_checksum: Option<ChecksumName>,
    /// Issue 7: checksum of each WAL record written from now on. [default: crc32]
    #[arg(long, env = "MANTIS_WAL_CHECKSUM", value_enum)]
    pub wal_checksum: Option<ChecksumName>,
    /// WAL segment file size, in bytes. [default: 67108864]
    #[arg(long, env = "MANTIS_WAL_SEGMENT_BYTES", value_name = "BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Cut the WAL at the first corrupt record instead of refusing to start (loses the records
    /// after it: use only after reading docs/operations.md).
    #[arg(long, env = "MANTIS_REPAIR_WAL", value_name = "BOOL")]
    pub repair_wal: Option<bool>,
    /// Log format. [default: text]
    #[arg(long, env = "MANTIS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "mantisd=debug,info"). [default: info]
    #[arg(long, env = "MANTIS_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Issue 9: most commands one RESP transaction (MULTI) may queue; one more is refused and
    /// EXEC then answers EXECABORT. [default: 10000]
    #[arg(long, env = "MANTIS_MULTI_QUEUED_COMMANDS_MAX", value_name = "N")]
    pub multi_queued_commands_max: Option<usize>,
    /// Issue 10: how long a checkpoint (backup) waits for the two-phase commits already past
    /// their Decision before it gives up with an error, in milliseconds; at least 1. [default: 30000]
    #[arg(long, env = "MANTIS_CHECKPOINT_BARRIER_TIMEOUT_MS", value_name = "MS")]
    pub checkpoint_barrier_timeout_ms: Option<u64>,
    /// Issue 9: how long an idle shard keeps polling for work before it sleeps, in
    /// microseconds; 0 sleeps at once (for a host whose CPUs mantisd shares). At most
    /// 10000; needs pin_cpus. [default: 200]
    #[arg(long, env = "MANTIS_IDLE_POLL_US", value_name = "US")]
    pub idle_poll_us: Option<u64>,
    /// Issue 7: `[scrub]`, `[cold]` and per-keyspace codec flags.
    #[command(flatten)]
    pub storage: crate::integrity_config::StorageFlags,
    /// Issue 9: `[locks]` flags (`--locks-*`, `MANTIS_LOCKS_*`).
    #[command(flatten)]
    pub locks: crate::lock_config::LockFlags,
}

/// The TOML file: the same keys as the flags, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub pin_cpus: Option<bool>,
    pub resp_addr: Option<String>,
    pub pg_addr: Option<String>,
    pub http_addr: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub connections_max: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub drain_timeout_secs: Option<u64>,
    pub request_bytes_max: Option<usize>,
    pub pipeline_parallel_max: Option<usize>,
    pub http_body_bytes_max: Option<usize>,
    pub http_header_bytes_max: Option<usize>,
    pub value_bytes_max: Option<usize>,
    pub key_bytes_max: Option<usize>,
    pub memtable_bytes_max: Option<usize>,
    pub block_cache_bytes: Option<usize>,
    pub cache_policy: Option<CachePolicyName>,
    pub compression: Option<CompressionName>,
    pub zstd_level: Option<i32>,
    pub block_checksum: Option<ChecksumName>,
    /// Issue 7.
    pub wal_checksum: Option<ChecksumName>,
    pub wal_segment_bytes: Option<u64>,
    pub repair_wal: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    /// Issue 9: see the flag.
    pub multi_queued_commands_max: Option<usize>,
    /// Issue 10: see the flag.
    pub checkpoint_barrier_timeout_ms: Option<u64>,
    /// Issue 9: see the flag.
    pub idle_poll_us: Option<u64>,
    /// `[monitor]`: metrics, audit trail, alert rules and channels (issue 8).
    #[serde(default)]
    pub monitor: crate::monitoring::MonitorConfig,
    /// `[scrub]`, `[cold]`, `[[compression_keyspace]]` (issue 7).
    #[serde(default)]
    pub scrub: crate::integrity_config::ScrubSection,
    #[serde(default)]
    pub cold: crate::integrity_config::ColdSection,
    #[serde(default)]
    pub compression_keyspace: Vec<crate::integrity_config::KeyspaceSection>,
    /// `[rpo]`: WAL archiving for a recovery point objective (issue 10).
    #[serde(default)]
    pub rpo: crate::rpo::RpoConfig,
    /// `[[backup_schedule]]`: cron-scheduled backups with retention (issue 10).
    #[serde(default)]
    pub backup_schedule: Vec<mantis_backup::schedule::ScheduleConfig>,
    /// `[locks]`: every shard's lock manager (issue 9).
    #[serde(default)]
    pub locks: crate::lock_config::LockSection,
}

/// The resolved configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub pin_cpus: bool,
    pub resp_addr: SocketAddr,
    pub pg_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub password: Option<String>,
    pub connections_max: usize,
    /// None = connections never time out.
    pub idle_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    pub request_bytes_max: usize,
    /// At least 1.
    pub pipeline_parallel_max: usize,
    pub http_body_bytes_max: usize,
    pub http_header_bytes_max: usize,
    pub value_bytes_max: usize,
    pub key_bytes_max: usize,
    pub memtable_bytes_max: usize,
    pub block_cache_bytes: usize,
    pub cache_policy: CachePolicyName,
    pub compression: CompressionName,
    pub zstd_level: i32,
    pub block_checksum: ChecksumName,
    /// Issue 7: checksum of the WAL records written from now on.
    pub wal_checksum: ChecksumName,
    pub wal_segment_bytes: u64,
    pub repair_wal: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `[monitor]` of the file (issue 8).
    pub monitor: crate::monitoring::MonitorConfig,
    /// Scrubber, cold data and per-keyspace codecs (issue 7).
    pub storage: crate::integrity_config::StorageSettings,
    /// `[rpo]` of the file (issue 10).
    pub rpo: crate::rpo::RpoConfig,
    /// Issue 9: at least 1.
    pub multi_queued_commands_max: usize,
    /// `[[backup_schedule]]` of the file, checked (issue 10).
    pub backup_schedule: Vec<mantis_backup::schedule::ScheduleConfig>,
    /// `[locks]` resolved (issue 9): handed to `mantis_sql::txlock::configure` at start-up.
    pub locks: mantis_lock::LockConfig,
    /// Issue 10: bound of a checkpoint's wait for decided two-phase commits, at least 1 ms.
    pub checkpoint_barrier_timeout_ms: u64,
    /// Issue 9: idle-poll time of every shard executor, at most `IDLE_POLL_US_MAX`.
    pub idle_poll_us: u64,
}

pub const RESP_ADDR_DEFAULT: &str = "127.0.0.1:6380";
pub const PIPELINE_PARALLEL_MAX_DEFAULT: usize = 16;
/// Replies of a parallel run are all held at once: at most this many values per connection
/// (as many as an MGET of this many keys).
pub const PIPELINE_PARALLEL_MAX_LIMIT: usize = 64;
pub const PG_ADDR_DEFAULT: &str = "127.0.0.1:5433";
/// Issue 9: commands one MULTI may queue unless configured.
pub const MULTI_QUEUED_COMMANDS_MAX_DEFAULT: usize = 10_000;
/// Issue 10: the engine's own default (`EngineConfig::checkpoint_barrier_timeout_ms`).
pub const CHECKPOINT_BARRIER_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Issue 9: mantisd's idle-poll time unless configured (docs/benchmarks.md, TPC-B).
pub const IDLE_POLL_US_DEFAULT: u64 = 200;
/// Issue 9: longer polls only burn CPU: a wake-up through the kernel costs far less.
pub const IDLE_POLL_US_MAX: u64 = 10_000;
pub const HTTP_ADDR_DEFAULT: &str = "127.0.0.1:8080";
/// hyper refuses buffers below 8 KiB; 16 KiB fits any sane request head.
pub const HTTP_HEADER_BYTES_MAX_DEFAULT: usize = 16 * 1024;
const HTTP_HEADER_BYTES_MIN: usize = 8 * 1024;

impl Config {
    /// Reads the file named by `cli.config` (if any) and resolves everything.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(cli, file)
    }

    /// Merges flags/env (`cli`) over the file over defaults, then validates.
    pub fn resolve(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let value_bytes_max = cli
            .value_bytes_max
            .or(file.value_bytes_max)
            .unwrap_or(64 << 20);
        let password = match cli.password.or(file.password) {
            Some(p) => Some(p),
            None => match cli.password_file.or(file.password_file) {
                Some(path) => Some(read_password_file(&path)?),
                None => None,
            },
        };
        let idle_timeout_secs = cli
            .idle_timeout_secs
            .or(file.idle_timeout_secs)
            .unwrap_or(300);
        let config = Config {
            locks: crate::lock_config::resolve(cli.locks, file.locks)?,
            rpo: crate::rpo::checked(&file.rpo)?,
            monitor: file.monitor.clone(),
            backup_schedule: checked_schedules(file.backup_schedule)?,
            storage: crate::integrity_config::StorageSettings::resolve(
                cli.storage,
                file.scrub,
                file.cold,
                file.compression_keyspace,
                cli.zstd_level.or(file.zstd_level).unwrap_or(3),
            )?,
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| "./data".into()),
            shards: cli.shards.or(file.shards).unwrap_or(0),
            pin_cpus: cli.pin_cpus.or(file.pin_cpus).unwrap_or(true),
            resp_addr: address(
                "resp_addr",
                cli.resp_addr.or(file.resp_addr),
                RESP_ADDR_DEFAULT,
            )?,
            pg_addr: address("pg_addr", cli.pg_addr.or(file.pg_addr), PG_ADDR_DEFAULT)?,
            http_addr: address(
                "http_addr",
                cli.http_addr.or(file.http_addr),
                HTTP_ADDR_DEFAULT,
            )?,
            password: password.filter(|p| !p.is_empty()),
            connections_max: cli
                .connections_max
                .or(file.connections_max)
                .unwrap_or(10_000),
            idle_timeout: (idle_timeout_secs > 0).then(|| Duration::from_secs(idle_timeout_secs)),
            drain_timeout: Duration::from_secs(
                cli.drain_timeout_secs
                    .or(file.drain_timeout_secs)
                    .unwrap_or(30),
            ),
            request_bytes_max: cli
                .request_bytes_max
                .or(file.request_bytes_max)
                .unwrap_or(value_bytes_max.saturating_mul(2).saturating_add(1 << 20)),
            pipeline_parallel_max: cli
                .pipeline_parallel_max
                .or(file.pipeline_parallel_max)
                .unwrap_or(PIPELINE_PARALLEL_MAX_DEFAULT)
                .clamp(1, PIPELINE_PARALLEL_MAX_LIMIT),
            http_body_bytes_max: cli
                .http_body_bytes_max
                .or(file.http_body_bytes_max)
                .unwrap_or(value_bytes_max.saturating_add(64 << 10)),
            http_header_bytes_max: cli
                .http_header_bytes_max
                .or(file.http_header_bytes_max)
                .unwrap_or(HTTP_HEADER_BYTES_MAX_DEFAULT),
            value_bytes_max,
            key_bytes_max: cli.key_bytes_max.or(file.key_bytes_max).unwrap_or(64 << 10),
            memtable_bytes_max: cli
                .memtable_bytes_max
                .or(file.memtable_bytes_max)
                .unwrap_or(64 << 20),
            block_cache_bytes: cli
                .block_cache_bytes
                .or(file.block_cache_bytes)
                .unwrap_or(64 << 20),
            cache_policy: cli
                .cache_policy
                .or(file.cache_policy)
                .unwrap_or(CachePolicyName::Lru),
            compression: cli
                .compression
                .or(file.compression)
                .unwrap_or(CompressionName::Lz4),
            zstd_level: cli.zstd_level.or(file.zstd_level).unwrap_or(3),
            block_checksum: cli
                .block_checksum
                .or(file.block_checksum)
                .unwrap_or(ChecksumName::Crc32),
            wal_checksum: cli
                .wal_checksum
                .or(file.wal_checksum)
                .unwrap_or(ChecksumName::Crc32),
            wal_segment_bytes: cli
                .wal_segment_bytes
                .or(file.wal_segment_bytes)
                .unwrap_or(64 << 20),
            repair_wal: cli.repair_wal.or(file.repair_wal).unwrap_or(false),
            log_format: cli
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            multi_queued_commands_max: cli
                .multi_queued_commands_max
                .or(file.multi_queued_commands_max)
                .unwrap_or(MULTI_QUEUED_COMMANDS_MAX_DEFAULT)
                .max(1),
            checkpoint_barrier_timeout_ms: match cli
                .checkpoint_barrier_timeout_ms
                .or(file.checkpoint_barrier_timeout_ms)
                .unwrap_or(CHECKPOINT_BARRIER_TIMEOUT_MS_DEFAULT)
            {
                // WHY refuse 0 rather than clamp: a zero bound would fail every checkpoint
                // that meets a transaction in flight, which is never what an operator meant.
                0 => {
                    return Err(ConfigError::Invalid {
                        option: "checkpoint_barrier_timeout_ms",
                        reason: "must be at least 1 (milliseconds)".into(),
                    })
                }
                ms => ms,
            },
            idle_poll_us: match cli
                .idle_poll_us
                .or(file.idle_poll_us)
                .unwrap_or(IDLE_POLL_US_DEFAULT)
            {
                us if us > IDLE_POLL_US_MAX => {
                    return Err(ConfigError::Invalid {
                        option: "idle_poll_us",
                        reason: format!("{us} is more than {IDLE_POLL_US_MAX} (microseconds)"),
                    })
                }
                us => us,
            },
        };
        let mut config = config;
        // Absolute, so logs name the real place and the storage layer (which opens
        // directories through io_uring) never depends on the working directory.
        config.data_dir =
            std::path::absolute(&config.data_dir).map_err(|e| ConfigError::Invalid {
                option: "data_dir",
                reason: format!("{}: {e}", config.data_dir.display()),
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.password.is_none() {
            for (option, addr) in self.listen_addrs() {
                if !addr.ip().is_loopback() {
                    return Err(ConfigError::InsecureBind { option, addr });
                }
            }
        }
        if self.http_header_bytes_max < HTTP_HEADER_BYTES_MIN {
            return Err(ConfigError::Invalid {
                option: "http_header_bytes_max",
                reason: format!("must be at least {HTTP_HEADER_BYTES_MIN}"),
            });
        }
        if self.connections_max == 0 {
            return Err(ConfigError::Invalid {
                option: "connections_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.request_bytes_max < self.value_bytes_max {
            return Err(ConfigError::Invalid {
                option: "request_bytes_max",
                reason: format!(
                    "must be at least value_bytes_max ({}) so a largest value fits",
                    self.value_bytes_max
                ),
            });
        }
        Ok(())
    }

    /// Every address the daemon binds (or reserves), with its option name.
    pub fn listen_addrs(&self) -> [(&'static str, SocketAddr); 3] {
        [
            ("resp_addr", self.resp_addr),
            ("pg_addr", self.pg_addr),
            ("http_addr", self.http_addr),
        ]
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

fn read_password_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
        path: path.into(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").trim_end().to_string())
}

fn address(
    option: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    let mut addrs = text.to_socket_addrs().map_err(|e| ConfigError::Address {
        option,
        value: text.clone(),
        reason: e.to_string(),
    })?;
    addrs.next().ok_or_else(|| ConfigError::Address {
        option,
        value: text.clone(),
        reason: "resolves to no address".into(),
    })
}

/// Issue 10: the `[[backup_schedule]]` tables, refused at startup when a cron expression,
/// kind or destination is invalid.
fn checked_schedules(
    schedules: Vec<mantis_backup::schedule::ScheduleConfig>,
) -> Result<Vec<mantis_backup::schedule::ScheduleConfig>, ConfigError> {
    mantis_backup::schedule::parse_all(&schedules).map_err(|e| ConfigError::Invalid {
        option: "backup_schedule",
        reason: e.to_string(),
    })?;
    Ok(schedules)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut full = vec!["mantisd"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap()
    }

    #[test]
    fn defaults_are_loopback_on_data() {
        let c = Config::resolve(Cli::default(), FileConfig::default()).unwrap();
        assert!(c.data_dir.is_absolute());
        assert!(c.data_dir.ends_with("data"));
        assert_eq!(
            c.resp_addr,
            "127.0.0.1:6380".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(
            c.pg_addr,
            "127.0.0.1:5433".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(
            c.http_addr,
            "127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
        assert!(c.password.is_none());
    }

    #[test]
    fn flags_win_over_file() {
        let file: FileConfig = toml::from_str(
            "data_dir = \"/from/file\"\nshards = 3\nresp_addr = \"127.0.0.1:7000\"\nidle_timeout_secs = 0\n",
        )
        .unwrap();
        let c = Config::resolve(cli(&["--shards", "2"]), file).unwrap();
        assert_eq!(c.shards, 2);
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.resp_addr.port(), 7000);
        assert_eq!(c.idle_timeout, None);
    }

    /// Issue 10: the checkpoint barrier's bound existed in the engine (30 s) but mantisd never
    /// passed one on, so an operator could not shorten or lengthen it.
    #[test]
    fn checkpoint_barrier_timeout_from_file_flag_and_default() {
        let c = Config::resolve(Cli::default(), FileConfig::default()).unwrap();
        assert_eq!(
            c.checkpoint_barrier_timeout_ms,
            mantis_engine::EngineConfig::default().checkpoint_barrier_timeout_ms
        );
        let file: FileConfig = toml::from_str("checkpoint_barrier_timeout_ms = 1500\n").unwrap();
        let c = Config::resolve(Cli::default(), file).unwrap();
        assert_eq!(c.checkpoint_barrier_timeout_ms, 1500);
        let file: FileConfig = toml::from_str("checkpoint_barrier_timeout_ms = 1500\n").unwrap();
        let c = Config::resolve(cli(&["--checkpoint-barrier-timeout-ms", "250"]), file).unwrap();
        assert_eq!(c.checkpoint_barrier_timeout_ms, 250);
        let err = Config::resolve(
            cli(&["--checkpoint-barrier-timeout-ms", "0"]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                option: "checkpoint_barrier_timeout_ms",
                ..
            }
        ));
    }

    /// Issue 9: the shards' idle-poll time, from the file or a flag, bounded.
    #[test]
    fn idle_poll_from_file_flag_and_bound() {
        let c = Config::resolve(Cli::default(), FileConfig::default()).unwrap();
        assert_eq!(c.idle_poll_us, IDLE_POLL_US_DEFAULT);
        let file: FileConfig = toml::from_str("idle_poll_us = 150\n").unwrap();
        let c = Config::resolve(Cli::default(), file).unwrap();
        assert_eq!(c.idle_poll_us, 150);
        let file: FileConfig = toml::from_str("idle_poll_us = 150\n").unwrap();
        let c = Config::resolve(cli(&["--idle-poll-us", "0"]), file).unwrap();
        assert_eq!(c.idle_poll_us, 0);
        let err =
            Config::resolve(cli(&["--idle-poll-us", "10001"]), FileConfig::default()).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                option: "idle_poll_us",
                ..
            }
        ));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("shardz = 3").is_err());
    }

    #[test]
    fn public_bind_needs_a_password() {
        let err = Config::resolve(cli(&["--http-addr", "0.0.0.0:8080"]), FileConfig::default())
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::InsecureBind {
                option: "http_addr",
                ..
            }
        ));
        assert!(err.to_string().contains("password"));
        let ok = Config::resolve(
            cli(&["--http-addr", "0.0.0.0:8080", "--password", "s3cret"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(ok.password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn password_file_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\nignored\n").unwrap();
        let c = Config::resolve(
            cli(&["--password-file", path.to_str().unwrap()]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.password.as_deref(), Some("hunter2"));
    }

    #[test]
    fn bad_addresses_are_reported() {
        let err =
            Config::resolve(cli(&["--resp-addr", "nonsense"]), FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains("resp_addr"));
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../systemd/mantisdb.toml");
        let file: FileConfig = toml::from_str(text).unwrap();
        assert!(file.data_dir.is_some());
    }
}
