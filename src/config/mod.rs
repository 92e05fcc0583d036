//! Configuration: read a TOML file (or a Circus ini file), validate it, and
//! resolve it into the specs the daemon runs. Every error names the file,
//! line, column and key.

// Config errors are built once, on a cold path, and carry a source excerpt for
// miette; boxing them would only add noise at every `?`.
#![allow(clippy::result_large_err)]

pub mod circus_ini;
pub mod duration;
pub mod error;
pub mod ini;
mod json;
mod load;
pub mod model;
pub mod plan;
mod resolve;
pub mod signal;
#[cfg(test)]
mod tests;
mod watcher;

pub use duration::Seconds;
pub use error::ConfigError;
pub use json::watcher_from_json;
pub use load::{load, load_toml_str};
pub use resolve::{command_problem, endpoint_problem};
pub use signal::Signum;

use model::{Args, Ident};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which syntax a config file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Toml,
    Ini,
}

impl Format {
    pub fn guess(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ini") | Some("cfg") | Some("conf") => Format::Ini,
            _ => Format::Toml,
        }
    }
}

/// A validated configuration, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub global: GlobalSpec,
    /// Sorted by name.
    pub sockets: Vec<SocketSpec>,
    /// In start order: priority descending, then name.
    pub watchers: Vec<WatcherSpec>,
    /// Non-fatal remarks (e.g. Circus options that have no effect here).
    pub warnings: Vec<String>,
    /// The `[env]` table, for watchers added at run time.
    pub global_env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalSpec {
    pub endpoint: Option<String>,
    pub pubsub_endpoint: Option<String>,
    pub stats_endpoint: Option<String>,
    pub endpoint_owner: Option<String>,
    pub statsd: bool,
    pub check_delay: Option<Duration>,
    pub warmup_delay: Duration,
    pub umask: Option<u32>,
    pub pidfile: Option<PathBuf>,
    pub loglevel: Option<String>,
    /// The daemon's own log format, when the file sets one.
    pub log_format: Option<crate::streams::LogFormat>,
    pub history_lines: usize,
    pub publish_logs: bool,
    pub debug: bool,
    pub kill_mode: Option<model::KillModeSetting>,
    pub shutdown_timeout: Duration,
    /// Where the HTTP endpoint listens; `None`: off.
    pub http_endpoint: Option<std::net::SocketAddr>,
    /// Relative paths are relative to the config file's directory.
    pub http_token_file: Option<PathBuf>,
    pub http_metrics_auth: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddrSpec {
    Inet {
        host: String,
        port: u16,
        v6: bool,
    },
    Unix {
        path: PathBuf,
        umask: Option<u32>,
        replace: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockType {
    Stream,
    Dgram,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSpec {
    pub name: String,
    pub addr: SocketAddrSpec,
    pub socktype: SockType,
    pub backlog: u32,
    pub reuseport: bool,
    pub interface: Option<String>,
    pub blocking: bool,
    pub nodelay: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    pub min_uptime: Duration,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    pub jitter: f64,
    /// Consecutive quick failures that put the watcher in `failed`; negative = never.
    pub max_retry: i64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            min_uptime: Duration::from_secs(1),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.1,
            max_retry: 5,
        }
    }
}

/// An rlimit to apply in the child: (resource, value); None = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: i32,
    pub value: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatcherSpec {
    pub name: String,
    pub cmd: String,
    pub args: Option<Args>,
    pub shell: bool,
    pub shell_args: Option<String>,
    pub executable: Option<String>,
    pub working_dir: Option<PathBuf>,
    /// `[env]` merged with the watcher's own `env` (the watcher wins).
    pub env: BTreeMap<String, String>,
    pub copy_env: bool,
    pub copy_path: bool,
    pub uid: Option<Ident>,
    pub gid: Option<Ident>,
    pub umask: Option<u32>,
    pub numprocesses: u32,
    pub warmup_delay: Duration,
    pub stop_signal: Signum,
    pub graceful_timeout: Duration,
    pub respawn: bool,
    pub critical: bool,
    pub autostart: bool,
    pub singleton: bool,
    pub priority: i64,
    pub max_age: Duration,
    pub max_age_variance: Duration,
    /// Socket names passed to the children, in fd order (3, 4, …).
    pub sockets: Vec<String>,
    pub use_sockets: bool,
    pub rlimits: Vec<Rlimit>,
    pub close_child_stdin: bool,
    pub close_child_stdout: bool,
    pub close_child_stderr: bool,
    pub send_hup: bool,
    pub restart: RestartPolicy,
    pub ready: ReadySpec,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub hooks: BTreeMap<crate::hooks::Hook, HookSpec>,
    pub stdout_stream: crate::streams::StreamConfig,
    pub stderr_stream: crate::streams::StreamConfig,
    pub history_lines: Option<usize>,
}

/// How readiness is decided for a watcher's processes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadySpec {
    pub kind: model::ReadyKind,
    pub address: Option<String>,
    pub url: Option<String>,
    pub command: Option<String>,
    pub pattern: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: Option<u32>,
    pub start_timeout: Duration,
    pub watchdog_timeout: Option<Duration>,
}

impl Default for ReadySpec {
    fn default() -> Self {
        ReadySpec {
            kind: model::ReadyKind::Delay,
            address: None,
            url: None,
            command: None,
            pattern: None,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            retries: None,
            start_timeout: Duration::from_secs(60),
            watchdog_timeout: None,
        }
    }
}

/// A hook command and its timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct HookSpec {
    pub cmd: String,
    pub timeout: Duration,
}
