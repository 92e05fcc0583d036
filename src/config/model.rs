//! The configuration file's shape, key for key. Names follow Circus wherever
//! Circus has the option, so a Circus user recognises every key. Every table
//! denies unknown keys: a typo is an error with its location, never ignored.

use super::duration::Seconds;
use super::signal::Signum;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn yes() -> bool {
    true
}

/// The whole file.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Daemon-wide options; `[circus]` is accepted as an alias.
    #[serde(default, alias = "circus")]
    pub ringmaster: GlobalConfig,
    /// Variables given to every watcher (Circus's `[env]`).
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub sockets: BTreeMap<String, Spanned<SocketConfig>>,
    #[serde(default)]
    pub watchers: BTreeMap<String, Spanned<WatcherConfig>>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// Control channel (ZeroMQ ROUTER). Default: an ipc:// socket in a private runtime directory.
    pub endpoint: Option<Spanned<String>>,
    /// Events (ZeroMQ PUB). Default: ipc:// next to the control socket.
    pub pubsub_endpoint: Option<Spanned<String>>,
    /// `stat.*` messages; off unless set (or `statsd = true`).
    pub stats_endpoint: Option<Spanned<String>>,
    /// chown the ipc:// endpoints to this user.
    pub endpoint_owner: Option<String>,
    #[serde(default)]
    pub statsd: bool,
    /// Accepted for Circus compatibility; Ringmaster reaps on SIGCHLD and has no tick.
    pub check_delay: Option<Seconds>,
    /// Accepted for Circus compatibility; UDP discovery is not implemented.
    pub multicast_endpoint: Option<String>,
    /// Pause between starting two watchers.
    #[serde(default)]
    pub warmup_delay: Seconds,
    /// umask of the daemon (and default for children).
    pub umask: Option<Spanned<Umask>>,
    pub pidfile: Option<PathBuf>,
    pub loglevel: Option<String>,
    pub logoutput: Option<String>,
    /// The daemon's own log on stderr: `text` (default) or `json`; `run --log-format` wins.
    pub log_format: Option<crate::streams::LogFormat>,
    /// Lines of output kept in memory per watcher for `ringmaster logs`.
    pub history_lines: Option<usize>,
    /// Publish every output line on the pubsub socket (`logs.<watcher>.<stream>`),
    /// even when nobody follows (for log shippers). Default: only while followed.
    #[serde(default)]
    pub publish_logs: bool,
    #[serde(default)]
    pub debug: bool,
    /// How a stop finds every descendant: `auto` (default), `cgroup` or `tree`.
    pub kill_mode: Option<KillModeSetting>,
    /// How long a shutdown may take before every process is SIGKILLed and
    /// the daemon exits (default 30 s).
    pub shutdown_timeout: Option<Seconds>,
    /// The HTTP endpoint (dashboard, /metrics, /healthz, /readyz): `IP:PORT`.
    /// Off unless set.
    pub http_endpoint: Option<Spanned<String>>,
    /// A file holding the dashboard's token (else $RINGMASTER_HTTP_TOKEN,
    /// else one generated at start).
    pub http_token_file: Option<Spanned<PathBuf>>,
    /// Require the token for /metrics, /healthz and /readyz too.
    #[serde(default)]
    pub http_metrics_auth: bool,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KillModeSetting {
    Auto,
    Cgroup,
    Tree,
}

/// A umask or file mode: a string is read as octal (`"022"`), an integer is
/// taken as its value (write `0o022` in TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Umask(pub u32);

impl From<Umask> for String {
    fn from(u: Umask) -> String {
        format!("{:03o}", u.0)
    }
}

impl<'de> Deserialize<'de> for Umask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Umask;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an octal string such as \"022\" or an integer such as 0o022")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Umask, E> {
                if !(0..=0o777).contains(&v) {
                    return Err(E::custom(format!(
                        "invalid umask {v}: expected a value between 0 and 0o777 (write \"022\" or 0o022)"
                    )));
                }
                Ok(Umask(v as u32))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Umask, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Umask, E> {
                let v = i64::from_str_radix(s.trim().trim_start_matches("0o"), 8).map_err(|_| {
                    E::custom(format!(
                        "invalid umask {s:?}: expected an octal string such as \"022\""
                    ))
                })?;
                self.visit_i64(v)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// Address to bind (inet/inet6). Default "127.0.0.1" (Circus: "localhost").
    pub host: Option<Spanned<String>>,
    /// Port (inet/inet6); 0 picks a free port. Default 8080 as Circus.
    pub port: Option<Spanned<u16>>,
    /// Path of a UNIX socket; implies `family = "unix"`; excludes host and port.
    pub path: Option<Spanned<PathBuf>>,
    /// "inet" | "inet6" | "unix" (Circus's AF_INET… accepted).
    pub family: Option<Spanned<String>>,
    /// "stream" | "dgram" (Circus's SOCK_STREAM… accepted).
    #[serde(rename = "type")]
    pub socktype: Option<Spanned<String>>,
    pub backlog: Option<u32>,
    /// umask applied while binding a UNIX socket (octal string or integer).
    pub umask: Option<Umask>,
    /// Unlink an existing UNIX socket path before binding.
    #[serde(default)]
    pub replace: bool,
    #[serde(default)]
    pub so_reuseport: bool,
    /// Bind to this network interface (SO_BINDTODEVICE).
    pub interface: Option<String>,
    /// Leave the socket blocking (default: non-blocking, as Circus).
    #[serde(default)]
    pub blocking: bool,
    /// TCP_NODELAY on the listening socket, inherited by accepted connections. Default true.
    pub nodelay: Option<bool>,
}

/// `args` as a string (shell-split) or a list of words.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Args {
    Line(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a command-line string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Args, E> {
                Ok(Args::Line(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut words = Vec::new();
                while let Some(w) = seq.next_element::<String>()? {
                    words.push(w);
                }
                Ok(Args::List(words))
            }
        }
        d.deserialize_any(V)
    }
}

/// A user or group: a name or a numeric id.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Ident {
    Id(u32),
    Name(String),
}

impl<'de> Deserialize<'de> for Ident {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ident;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a user or group name, or a numeric id (0 to 4294967295)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ident, E> {
                u32::try_from(v)
                    .map(Ident::Id)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ident, E> {
                u32::try_from(v)
                    .map(Ident::Id)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ident, E> {
                if v.is_empty() || v.contains('\0') {
                    return Err(E::invalid_value(de::Unexpected::Str(v), &self));
                }
                Ok(Ident::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An rlimit: a number, or unlimited (RLIM_INFINITY), written -1,
/// "unlimited" or "infinity" as in Circus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlimitValue {
    Num(u64),
    Unlimited,
}

impl Serialize for RlimitValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RlimitValue::Num(n) => s.serialize_u64(*n),
            RlimitValue::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for RlimitValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RlimitValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-negative integer, or -1, \"unlimited\" or \"infinity\" for no limit")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RlimitValue, E> {
                match v {
                    -1 => Ok(RlimitValue::Unlimited),
                    n => u64::try_from(n)
                        .map(RlimitValue::Num)
                        .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RlimitValue, E> {
                Ok(RlimitValue::Num(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RlimitValue, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "unlimited" | "infinity" | "" | "-1" => Ok(RlimitValue::Unlimited),
                    t => t
                        .parse::<u64>()
                        .map(RlimitValue::Num)
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// A process up at least this long is respawned at once when it exits.
    pub min_uptime: Option<Seconds>,
    /// First delay after a quick failure.
    pub initial_delay: Option<Seconds>,
    pub max_delay: Option<Seconds>,
    pub multiplier: Option<Spanned<f64>>,
    /// Random spread of each delay, as a fraction (0.1 = ±10%).
    pub jitter: Option<Spanned<f64>>,
    /// Consecutive quick failures before the watcher enters `failed`; -1 = never.
    pub max_retry: Option<i64>,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatcherConfig {
    pub cmd: Spanned<String>,
    pub args: Option<Args>,
    pub working_dir: Option<PathBuf>,
    #[serde(default)]
    pub shell: bool,
    pub shell_args: Option<String>,
    /// Program to execute instead of the first word of `cmd` (which stays argv[0]).
    pub executable: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub copy_env: bool,
    /// Give the child the daemon's PATH even with a clean environment. Default true.
    pub copy_path: Option<bool>,
    pub uid: Option<Spanned<Ident>>,
    pub gid: Option<Spanned<Ident>>,
    pub umask: Option<Umask>,
    pub numprocesses: Option<Spanned<u32>>,
    /// Pause between two spawns of this watcher.
    #[serde(default)]
    pub warmup_delay: Seconds,
    pub stop_signal: Option<Signum>,
    /// Also send stop_signal to the whole process group (always true in Ringmaster; accepted for Circus).
    pub stop_children: Option<bool>,
    pub graceful_timeout: Option<Seconds>,
    #[serde(default = "yes")]
    pub respawn: bool,
    /// The daemon stops and exits non-zero when this watcher ends `failed`,
    /// or (with `respawn = false`) when a process exits non-zero on its own.
    #[serde(default)]
    pub critical: bool,
    #[serde(default = "yes")]
    pub autostart: bool,
    #[serde(default)]
    pub singleton: bool,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub max_age: Seconds,
    pub max_age_variance: Option<Seconds>,
    /// Pass every socket to the children.
    #[serde(default)]
    pub use_sockets: bool,
    /// Pass only these sockets.
    pub sockets: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub rlimits: BTreeMap<String, Spanned<RlimitValue>>,
    pub rlimit_nofile: Option<Spanned<RlimitValue>>,
    pub rlimit_nproc: Option<Spanned<RlimitValue>>,
    pub rlimit_core: Option<Spanned<RlimitValue>>,
    pub rlimit_as: Option<Spanned<RlimitValue>>,
    pub rlimit_cpu: Option<Spanned<RlimitValue>>,
    pub rlimit_data: Option<Spanned<RlimitValue>>,
    pub rlimit_fsize: Option<Spanned<RlimitValue>>,
    pub rlimit_memlock: Option<Spanned<RlimitValue>>,
    pub rlimit_stack: Option<Spanned<RlimitValue>>,
    #[serde(default = "yes")]
    pub close_child_stdin: bool,
    #[serde(default)]
    pub close_child_stdout: bool,
    #[serde(default)]
    pub close_child_stderr: bool,
    /// `reload` sends SIGHUP instead of replacing processes.
    #[serde(default)]
    pub send_hup: bool,
    /// Circus's key; same meaning as `restart.max_retry`.
    pub max_retry: Option<i64>,
    pub restart: Option<RestartConfig>,
    /// When a new process counts as ready (default: after warmup_delay).
    pub ready: Option<Spanned<ReadyConfig>>,
    /// Rolling restarts: extra processes allowed during a restart/reload (default 1).
    pub max_surge: Option<Spanned<u32>>,
    /// Rolling restarts: processes allowed to be missing during a restart/reload (default 0).
    pub max_unavailable: Option<Spanned<u32>>,
    /// Commands run at points of the lifecycle.
    pub hooks: Option<HooksConfig>,
    /// Where stdout goes (docs/logs.md); default: the daemon's stdout, prefixed.
    pub stdout_stream: Option<Spanned<crate::streams::StreamConfig>>,
    /// Where stderr goes; default: the daemon's stderr, prefixed.
    pub stderr_stream: Option<Spanned<crate::streams::StreamConfig>>,
    /// Lines of output kept in memory for `ringmaster logs` (default: [ringmaster] history_lines).
    pub history_lines: Option<usize>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadyKind {
    /// `READY=1` on `NOTIFY_SOCKET` (systemd's sd_notify).
    Notify,
    /// A TCP connect to `address` succeeds.
    Tcp,
    /// A GET of `url` answers 2xx/3xx.
    Http,
    /// `command` exits 0.
    Command,
    /// A line of the process's own output matches `pattern` (a regex), e.g.
    /// uvicorn's "Uvicorn running on".
    Log,
    /// After `warmup_delay` (Circus's behaviour).
    Delay,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReadyConfig {
    #[serde(rename = "type")]
    pub kind: ReadyKind,
    /// `tcp`: host:port to connect to.
    pub address: Option<String>,
    /// `http`: `http://host:port/path`.
    pub url: Option<Spanned<String>>,
    /// `command`: run (with /bin/sh -c) until it exits 0.
    pub command: Option<String>,
    /// `log`: a regex matched against each line the process writes (stdout or stderr).
    pub pattern: Option<Spanned<String>>,
    /// Pause between two probes (default 100ms; 0 is refused, it would busy-probe).
    pub interval: Option<Spanned<Seconds>>,
    /// Time allowed for one probe (default 1s).
    pub timeout: Option<Seconds>,
    /// Probes before giving up (default: unlimited within start_timeout).
    pub retries: Option<u32>,
    /// Time allowed to become ready (default 60s).
    pub start_timeout: Option<Seconds>,
    /// `notify`: a ready process that sends no `WATCHDOG=1` for this long is restarted.
    pub watchdog_timeout: Option<Spanned<Seconds>>,
}

/// A hook: a command line, or a table with a timeout.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum HookConfig {
    Cmd(String),
    Full { cmd: String, timeout: Option<Seconds> },
}

/// The table form of a hook; any other key is a typo.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookTable {
    cmd: String,
    timeout: Option<Seconds>,
}

impl<'de> Deserialize<'de> for HookConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HookConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a command string, or a table with `cmd` and an optional `timeout`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HookConfig, E> {
                Ok(HookConfig::Cmd(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HookConfig, A::Error> {
                let t = HookTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(HookConfig::Full {
                    cmd: t.cmd,
                    timeout: t.timeout,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub before_start: Option<HookConfig>,
    pub after_start: Option<HookConfig>,
    pub before_spawn: Option<HookConfig>,
    pub after_spawn: Option<HookConfig>,
    pub before_stop: Option<HookConfig>,
    pub after_stop: Option<HookConfig>,
    pub before_signal: Option<HookConfig>,
    pub after_signal: Option<HookConfig>,
    pub after_reap: Option<HookConfig>,
}
