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
pub mod model;
pub mod plan;
pub mod signal;

pub use duration::Seconds;
pub use error::ConfigError;
pub use signal::Signum;

use model::{Args, ConfigFile, Ident, RlimitValue, SocketConfig, Umask, WatcherConfig};

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
    pub history_lines: usize,
    pub publish_logs: bool,
    pub debug: bool,
    pub kill_mode: Option<model::KillModeSetting>,
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
    pub hooks: BTreeMap<String, HookSpec>,
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

/// Hook names, in lifecycle order.
pub const HOOKS: [&str; 9] = [
    "before_start",
    "after_start",
    "before_spawn",
    "after_spawn",
    "before_stop",
    "after_stop",
    "before_signal",
    "after_signal",
    "after_reap",
];

/// Reads, parses and validates a config file.
pub fn load(path: &Path, format: Option<Format>) -> Result<Config, ConfigError> {
    let format = format.unwrap_or_else(|| Format::guess(path));
    match format {
        Format::Toml => {
            let src = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::plain(
                    path.display().to_string(),
                    format!("cannot read config file: {e}"),
                )
            })?;
            load_toml_str(path, &src)
        }
        Format::Ini => load_ini(path),
    }
}

fn load_ini(path: &Path) -> Result<Config, ConfigError> {
    use circus_ini::Severity;
    let converted = circus_ini::convert(path).map_err(|e| match e {
        ini::IniError::Syntax(errs) => ConfigError::many(
            errs.iter()
                .map(|s| ConfigError::plain(s.location.to_string(), s.message.clone()))
                .collect(),
        )
        .unwrap_or_else(|| ConfigError::plain(path.display().to_string(), "syntax error")),
        other => ConfigError::plain(path.display().to_string(), other.to_string()),
    })?;
    let errors: Vec<ConfigError> = converted
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| ConfigError::plain(d.location.to_string(), d.message.clone()))
        .collect();
    if let Some(e) = ConfigError::many(errors) {
        return Err(e);
    }
    let text = circus_ini::to_toml_string(&converted.table);
    // Checked as TOML; an error is reported at the ini line the key came from.
    let mut cfg = load_toml_str(path, &text).map_err(|e| {
        let located: Vec<ConfigError> = e
            .one_line_each()
            .into_iter()
            .map(|line| {
                let msg = line
                    .split_once(": ")
                    .map_or(line.as_str(), |(_, m)| m)
                    .to_string();
                let key = msg.split(':').next().unwrap_or_default().trim().to_string();
                let loc = converted
                    .provenance
                    .iter()
                    .filter(|(k, _)| key.starts_with(k.as_str()))
                    .max_by_key(|(k, _)| k.len())
                    .map_or_else(|| path.display().to_string(), |(_, l)| l.to_string());
                ConfigError::plain(loc, msg)
            })
            .collect();
        ConfigError::many(located).unwrap_or(e)
    })?;
    cfg.warnings.extend(
        converted
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| format!("{}: {}", d.location, d.message)),
    );
    Ok(cfg)
}

/// Parses and validates TOML text; `path` is used in messages.
pub fn load_toml_str(path: &Path, src: &str) -> Result<Config, ConfigError> {
    let file: ConfigFile = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ConfigError::at(path, src, span, e.message().trim().to_string())
    })?;
    resolve(path, src, file)
}

struct Resolver<'a> {
    path: &'a Path,
    src: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    fn err(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>) {
        self.errors.push(ConfigError::at(self.path, self.src, span, msg));
    }

    fn err_help(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.path, self.src, span, msg).with_help(help));
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
}

fn resolve(path: &Path, src: &str, file: ConfigFile) -> Result<Config, ConfigError> {
    let mut r = Resolver {
        path,
        src,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let g = &file.ringmaster;
    if g.check_delay.is_some() {
        r.warnings.push(
            "check_delay has no effect: Ringmaster reaps children as soon as they exit (SIGCHLD)".into(),
        );
    }
    if g.multicast_endpoint.is_some() {
        r.warnings
            .push("multicast_endpoint is accepted but UDP discovery is not implemented".into());
    }
    let global = GlobalSpec {
        endpoint: g.endpoint.clone(),
        pubsub_endpoint: g.pubsub_endpoint.clone(),
        stats_endpoint: g.stats_endpoint.clone(),
        endpoint_owner: g.endpoint_owner.clone(),
        statsd: g.statsd,
        check_delay: g.check_delay.map(Seconds::get),
        warmup_delay: g.warmup_delay.get(),
        umask: g.umask.as_ref().map(|u| u.get_ref().0),
        pidfile: g.pidfile.clone(),
        loglevel: g.loglevel.clone(),
        history_lines: g.history_lines.unwrap_or(1000),
        publish_logs: g.publish_logs,
        debug: g.debug,
        kill_mode: g.kill_mode,
    };

    let mut sockets = Vec::new();
    for (name, sc) in &file.sockets {
        let span = sc.span();
        if !valid_name(name) {
            r.err(
                span.clone(),
                format!("invalid socket name {name:?}: use letters, digits, '_', '-' or ':'"),
            );
            continue;
        }
        if let Some(s) = resolve_socket(&mut r, name, sc.get_ref(), span) {
            sockets.push(s);
        }
    }
    let socket_names: Vec<String> = sockets.iter().map(|s| s.name.clone()).collect();

    let mut watchers = Vec::new();
    for (name, wc) in &file.watchers {
        let span = wc.span();
        if !valid_name(name) {
            r.err(span.clone(), format!("invalid watcher name {name:?}: use letters, digits, '_', '-' or ':' (a '.' would break event topics)"));
            continue;
        }
        if let Some(w) = resolve_watcher(&mut r, name, wc.get_ref(), &file.env, &socket_names) {
            watchers.push(w);
        }
    }
    watchers.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));

    if let Some(e) = ConfigError::many(std::mem::take(&mut r.errors)) {
        return Err(e);
    }
    Ok(Config {
        path: path.to_path_buf(),
        global,
        sockets,
        watchers,
        warnings: r.warnings,
        global_env: file.env.clone(),
    })
}

fn resolve_socket(
    r: &mut Resolver<'_>,
    name: &str,
    sc: &SocketConfig,
    span: std::ops::Range<usize>,
) -> Option<SocketSpec> {
    let family = match &sc.family {
        None => None,
        Some(f) => match f.get_ref().to_ascii_lowercase().trim_start_matches("af_") {
            "inet" | "inet4" | "ipv4" => Some("inet"),
            "inet6" | "ipv6" => Some("inet6"),
            "unix" => Some("unix"),
            other => {
                r.err(
                    f.span(),
                    format!("unknown socket family {other:?}: expected \"inet\", \"inet6\" or \"unix\""),
                );
                return None;
            }
        },
    };
    let socktype = match &sc.socktype {
        None => SockType::Stream,
        Some(t) => match t.get_ref().to_ascii_lowercase().trim_start_matches("sock_") {
            "stream" => SockType::Stream,
            "dgram" => SockType::Dgram,
            other => {
                r.err(
                    t.span(),
                    format!("unsupported socket type {other:?}: expected \"stream\" or \"dgram\""),
                );
                return None;
            }
        },
    };
    let addr = match (family, &sc.path) {
        (Some("unix"), None) => {
            r.err(span, format!("socket {name}: family \"unix\" needs a path"));
            return None;
        }
        (Some("unix"), Some(p)) | (None, Some(p)) => SocketAddrSpec::Unix {
            path: p.clone(),
            umask: sc.umask.map(|Umask(u)| u),
            replace: sc.replace,
        },
        (Some(fam), Some(_)) => {
            r.err(
                span,
                format!("socket {name}: path is only valid for family \"unix\", not {fam:?}"),
            );
            return None;
        }
        (fam, None) => {
            let v6 = fam == Some("inet6");
            let host = sc
                .host
                .clone()
                .unwrap_or_else(|| if v6 { "::1".into() } else { "127.0.0.1".into() });
            SocketAddrSpec::Inet {
                host,
                port: sc.port.unwrap_or(8080),
                v6,
            }
        }
    };
    let is_tcp = matches!(addr, SocketAddrSpec::Inet { .. }) && socktype == SockType::Stream;
    Some(SocketSpec {
        name: name.to_string(),
        addr,
        socktype,
        backlog: sc.backlog.unwrap_or(2048),
        reuseport: sc.so_reuseport,
        interface: sc.interface.clone(),
        blocking: sc.blocking,
        nodelay: sc.nodelay.unwrap_or(is_tcp),
    })
}

/// Rlimit names accepted as `rlimits.<name>` / `rlimit_<name>`.
pub fn rlimit_resource(name: &str) -> Option<(&'static str, i32)> {
    let n = name.to_ascii_lowercase();
    let table: &[(&'static str, i32)] = &[
        ("nofile", libc::RLIMIT_NOFILE as i32),
        ("nproc", libc::RLIMIT_NPROC as i32),
        ("core", libc::RLIMIT_CORE as i32),
        ("as", libc::RLIMIT_AS as i32),
        ("cpu", libc::RLIMIT_CPU as i32),
        ("data", libc::RLIMIT_DATA as i32),
        ("fsize", libc::RLIMIT_FSIZE as i32),
        ("memlock", libc::RLIMIT_MEMLOCK as i32),
        ("stack", libc::RLIMIT_STACK as i32),
        ("rss", libc::RLIMIT_RSS as i32),
        ("locks", libc::RLIMIT_LOCKS as i32),
        ("sigpending", libc::RLIMIT_SIGPENDING as i32),
        ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
        ("nice", libc::RLIMIT_NICE as i32),
        ("rtprio", libc::RLIMIT_RTPRIO as i32),
        ("rttime", libc::RLIMIT_RTTIME as i32),
    ];
    table.iter().find(|(k, _)| *k == n).copied()
}

fn rlimit_value(v: &RlimitValue) -> Result<Option<u64>, String> {
    match v {
        RlimitValue::Num(n) => Ok(Some(*n)),
        RlimitValue::Word(w) => match w.trim().to_ascii_lowercase().as_str() {
            "unlimited" | "infinity" | "" => Ok(None),
            other => other
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("invalid rlimit {w:?}: expected a number or \"unlimited\"")),
        },
    }
}

/// Socket names a command line refers to with `$(circus.sockets.X)` or `((circus.sockets.X))`.
pub fn referenced_sockets(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    for prefix in ["circus.sockets.", "ringmaster.sockets."] {
        let mut rest = lower.as_str();
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
                .collect();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
            rest = after;
        }
    }
    out
}

/// Why `cmd` cannot be run, if it cannot; the config and `set` both ask.
pub fn command_problem(cmd: &str, shell: bool) -> Option<&'static str> {
    let cmd = cmd.trim();
    if cmd.is_empty() {
        Some("cmd is empty")
    } else if cmd.contains('\0') {
        Some("cmd contains a NUL byte")
    } else if !shell && shlex::split(cmd).is_none() {
        Some("cmd has unbalanced quotes")
    } else {
        None
    }
}

fn resolve_watcher(
    r: &mut Resolver<'_>,
    name: &str,
    wc: &WatcherConfig,
    global_env: &BTreeMap<String, String>,
    socket_names: &[String],
) -> Option<WatcherSpec> {
    let before = r.errors.len();
    let cmd = wc.cmd.get_ref().trim().to_string();
    if let Some(problem) = command_problem(&cmd, wc.shell) {
        r.err(wc.cmd.span(), format!("watcher {name}: {problem}"));
    }
    let numprocesses = wc.numprocesses.as_ref().map_or(1, |n| *n.get_ref());
    if wc.singleton && numprocesses > 1 {
        let span = wc.numprocesses.as_ref().map_or(wc.cmd.span(), |n| n.span());
        r.err_help(
            span,
            format!(
                "watcher {name}: singleton watchers run at most one process, numprocesses is {numprocesses}"
            ),
            "set numprocesses = 1 or remove singleton",
        );
    }

    let mut sockets: Vec<String> = match &wc.sockets {
        Some(list) => {
            let mut v = Vec::new();
            for s in list {
                let n = s.get_ref().to_ascii_lowercase();
                if !socket_names.contains(&n) {
                    r.err(
                        s.span(),
                        format!(
                            "watcher {name}: unknown socket {:?} (defined: {})",
                            s.get_ref(),
                            socket_names.join(", ")
                        ),
                    );
                } else if !v.contains(&n) {
                    v.push(n);
                }
            }
            v
        }
        None if wc.use_sockets => socket_names.to_vec(),
        None => Vec::new(),
    };
    // A command that names a socket it is not given would get a literal `$(…)`.
    let mut text = cmd.clone();
    match &wc.args {
        Some(Args::Line(l)) => text.push_str(l),
        Some(Args::List(l)) => l.iter().for_each(|a| text.push_str(a)),
        None => {}
    }
    for s in referenced_sockets(&text) {
        if !socket_names.contains(&s) {
            r.err(
                wc.cmd.span(),
                format!("watcher {name}: cmd refers to socket {s:?}, which is not defined"),
            );
        } else if !sockets.contains(&s) {
            if wc.sockets.is_some() {
                r.err_help(
                    wc.cmd.span(),
                    format!("watcher {name}: cmd refers to socket {s:?}, which is not in its sockets list"),
                    format!("add \"{s}\" to sockets"),
                );
            } else {
                // Circus requires use_sockets; naming the socket is intent enough.
                sockets.push(s);
            }
        }
    }

    let mut rlimits = Vec::new();
    for (k, v) in &wc.rlimits {
        match (rlimit_resource(k), rlimit_value(v.get_ref())) {
            (None, _) => r.err(
                v.span(),
                format!("watcher {name}: unknown rlimit {k:?} (expected e.g. nofile, nproc, core, as)"),
            ),
            (_, Err(e)) => r.err(v.span(), format!("watcher {name}: rlimits.{k}: {e}")),
            (Some((rn, res)), Ok(val)) => rlimits.push(Rlimit {
                name: rn,
                resource: res,
                value: val,
            }),
        }
    }
    let flat = [
        ("nofile", &wc.rlimit_nofile),
        ("nproc", &wc.rlimit_nproc),
        ("core", &wc.rlimit_core),
        ("as", &wc.rlimit_as),
        ("cpu", &wc.rlimit_cpu),
        ("data", &wc.rlimit_data),
        ("fsize", &wc.rlimit_fsize),
        ("memlock", &wc.rlimit_memlock),
        ("stack", &wc.rlimit_stack),
    ];
    for (k, v) in flat {
        if let (Some(v), Some((rn, res))) = (v, rlimit_resource(k)) {
            match rlimit_value(v) {
                Ok(val) => {
                    rlimits.retain(|l: &Rlimit| l.resource != res);
                    rlimits.push(Rlimit {
                        name: rn,
                        resource: res,
                        value: val,
                    });
                }
                Err(e) => r.err(wc.cmd.span(), format!("watcher {name}: rlimit_{k}: {e}")),
            }
        }
    }

    for (ident, what) in [(&wc.uid, "uid"), (&wc.gid, "gid")] {
        if let Some(id) = ident {
            let ok = match (what, id.get_ref()) {
                ("uid", Ident::Name(n)) => matches!(nix::unistd::User::from_name(n), Ok(Some(_))),
                ("gid", Ident::Name(n)) => matches!(nix::unistd::Group::from_name(n), Ok(Some(_))),
                _ => true,
            };
            if !ok {
                r.err(
                    id.span(),
                    format!(
                        "watcher {name}: {what}: no such {} on this system",
                        if what == "uid" { "user" } else { "group" }
                    ),
                );
            }
        }
    }

    let defaults = RestartPolicy::default();
    let rc = wc.restart.clone();
    let mut restart = RestartPolicy {
        min_uptime: rc
            .as_ref()
            .and_then(|c| c.min_uptime)
            .map_or(defaults.min_uptime, Seconds::get),
        initial_delay: rc
            .as_ref()
            .and_then(|c| c.initial_delay)
            .map_or(defaults.initial_delay, Seconds::get),
        max_delay: rc
            .as_ref()
            .and_then(|c| c.max_delay)
            .map_or(defaults.max_delay, Seconds::get),
        multiplier: rc
            .as_ref()
            .and_then(|c| c.multiplier)
            .unwrap_or(defaults.multiplier),
        jitter: rc.as_ref().and_then(|c| c.jitter).unwrap_or(defaults.jitter),
        max_retry: rc
            .as_ref()
            .and_then(|c| c.max_retry)
            .or(wc.max_retry)
            .unwrap_or(defaults.max_retry),
    };
    if !(restart.multiplier >= 1.0 && restart.multiplier <= 1000.0) {
        r.err(
            wc.cmd.span(),
            format!(
                "watcher {name}: restart.multiplier must be between 1 and 1000, not {}",
                restart.multiplier
            ),
        );
    }
    if !(0.0..=1.0).contains(&restart.jitter) {
        r.err(
            wc.cmd.span(),
            format!(
                "watcher {name}: restart.jitter must be between 0 and 1, not {}",
                restart.jitter
            ),
        );
    }
    if restart.max_delay < restart.initial_delay {
        restart.max_delay = restart.initial_delay;
    }

    let mut ready = ReadySpec::default();
    if let Some(rc) = &wc.ready {
        use model::ReadyKind as K;
        ready.kind = rc.kind;
        ready.address = rc.address.clone();
        ready.url = rc.url.clone();
        ready.command = rc.command.clone();
        ready.pattern = rc.pattern.clone();
        ready.interval = rc.interval.map_or(ready.interval, Seconds::get);
        ready.timeout = rc.timeout.map_or(ready.timeout, Seconds::get);
        ready.retries = rc.retries;
        ready.start_timeout = rc.start_timeout.map_or(ready.start_timeout, Seconds::get);
        ready.watchdog_timeout = rc.watchdog_timeout.map(Seconds::get);
        let missing = match rc.kind {
            K::Tcp if rc.address.is_none() => Some("address"),
            K::Http if rc.url.is_none() => Some("url"),
            K::Command if rc.command.is_none() => Some("command"),
            K::Log if rc.pattern.is_none() => Some("pattern"),
            _ => None,
        };
        if let Some(p) = &rc.pattern {
            if let Err(e) = regex::bytes::Regex::new(p) {
                r.err(
                    wc.cmd.span(),
                    format!("watcher {name}: ready.pattern is not a valid regex: {e}"),
                );
            }
        }
        if rc.kind == K::Log && wc.close_child_stdout && wc.close_child_stderr {
            r.err(
                wc.cmd.span(),
                format!("watcher {name}: ready type \"log\" needs the process's output, but close_child_stdout and close_child_stderr are both set"),
            );
        }
        if let Some(m) = missing {
            r.err(
                wc.cmd.span(),
                format!("watcher {name}: ready type {:?} needs `{m}`", rc.kind),
            );
        }
        if let Some(u) = &rc.url {
            if !u.starts_with("http://") {
                r.err(
                    wc.cmd.span(),
                    format!("watcher {name}: ready.url must start with http:// (got {u:?})"),
                );
            }
        }
        if rc.watchdog_timeout.is_some() && rc.kind != K::Notify {
            r.err(
                wc.cmd.span(),
                format!("watcher {name}: ready.watchdog_timeout needs type = \"notify\""),
            );
        }
    }
    let max_surge = wc.max_surge.unwrap_or(1);
    let max_unavailable = wc.max_unavailable.unwrap_or(0);
    if max_surge == 0 && max_unavailable == 0 {
        r.err(
            wc.cmd.span(),
            format!("watcher {name}: max_surge and max_unavailable cannot both be 0"),
        );
    }
    let mut hooks = BTreeMap::new();
    if let Some(h) = &wc.hooks {
        let all = [
            ("before_start", &h.before_start),
            ("after_start", &h.after_start),
            ("before_spawn", &h.before_spawn),
            ("after_spawn", &h.after_spawn),
            ("before_stop", &h.before_stop),
            ("after_stop", &h.after_stop),
            ("before_signal", &h.before_signal),
            ("after_signal", &h.after_signal),
            ("after_reap", &h.after_reap),
        ];
        for (k, v) in all {
            if let Some(v) = v {
                let (cmd, timeout) = match v {
                    model::HookConfig::Cmd(c) => (c.clone(), None),
                    model::HookConfig::Full { cmd, timeout } => (cmd.clone(), *timeout),
                };
                hooks.insert(
                    k.to_string(),
                    HookSpec {
                        cmd,
                        timeout: timeout.map_or(Duration::from_secs(30), Seconds::get),
                    },
                );
            }
        }
    }

    for (kind, sc) in [
        (crate::streams::StreamKind::Stdout, &wc.stdout_stream),
        (crate::streams::StreamKind::Stderr, &wc.stderr_stream),
    ] {
        if let Some(sc) = sc {
            if let Err(e) = sc.validate(kind) {
                r.err(wc.cmd.span(), format!("watcher {name}: {kind}_stream: {e:#}"));
            }
        }
    }

    if r.errors.len() > before {
        return None;
    }
    let mut env = global_env.clone();
    env.extend(wc.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(WatcherSpec {
        name: name.to_string(),
        cmd,
        args: wc.args.clone(),
        shell: wc.shell,
        shell_args: wc.shell_args.clone(),
        executable: wc.executable.clone(),
        working_dir: wc.working_dir.clone(),
        env,
        copy_env: wc.copy_env,
        copy_path: wc.copy_path.unwrap_or(true),
        uid: wc.uid.as_ref().map(|s| s.get_ref().clone()),
        gid: wc.gid.as_ref().map(|s| s.get_ref().clone()),
        umask: wc.umask.map(|u| u.0),
        numprocesses: if wc.singleton {
            numprocesses.min(1)
        } else {
            numprocesses
        },
        warmup_delay: wc.warmup_delay.get(),
        stop_signal: wc.stop_signal.unwrap_or(Signum::TERM),
        graceful_timeout: wc.graceful_timeout.map_or(Duration::from_secs(30), Seconds::get),
        respawn: wc.respawn,
        autostart: wc.autostart,
        singleton: wc.singleton,
        priority: wc.priority,
        max_age: wc.max_age.get(),
        max_age_variance: wc.max_age_variance.map_or(Duration::from_secs(30), Seconds::get),
        use_sockets: wc.use_sockets || !sockets.is_empty(),
        sockets,
        rlimits,
        close_child_stdin: wc.close_child_stdin,
        close_child_stdout: wc.close_child_stdout,
        close_child_stderr: wc.close_child_stderr,
        send_hup: wc.send_hup,
        restart,
        ready,
        max_surge,
        max_unavailable,
        hooks,
        stdout_stream: wc.stdout_stream.clone().unwrap_or_default(),
        stderr_stream: wc.stderr_stream.clone().unwrap_or_default(),
        history_lines: wc.history_lines,
    })
}

/// Builds a watcher from JSON options (the `add` command), with the same
/// keys, types and checks as a `[watchers.NAME]` table. Errors are one line.
pub fn watcher_from_json(
    name: &str,
    mut options: serde_json::Map<String, serde_json::Value>,
    global_env: &BTreeMap<String, String>,
    socket_names: &[String],
) -> Result<WatcherSpec, String> {
    options.retain(|_, v| !v.is_null());
    // Circus spells rlimits as rlimit_<name> keys; fold the ones without a field.
    let keys: Vec<String> = options
        .keys()
        .filter(|k| k.starts_with("rlimit_"))
        .cloned()
        .collect();
    for k in keys {
        let short = &k["rlimit_".len()..];
        if !matches!(
            short,
            "nofile" | "nproc" | "core" | "as" | "cpu" | "data" | "fsize" | "memlock" | "stack"
        ) {
            if let Some(v) = options.remove(&k) {
                let rl = options.entry("rlimits").or_insert_with(|| serde_json::json!({}));
                if let Some(o) = rl.as_object_mut() {
                    o.insert(short.to_string(), v);
                }
            }
        }
    }
    let watcher = toml::Value::try_from(serde_json::Value::Object(options)).map_err(|e| e.to_string())?;
    let mut doc = toml::Table::new();
    let mut socks = toml::Table::new();
    for s in socket_names {
        let mut t = toml::Table::new();
        t.insert("port".into(), toml::Value::Integer(0));
        socks.insert(s.clone(), toml::Value::Table(t));
    }
    doc.insert("sockets".into(), toml::Value::Table(socks));
    let mut ws = toml::Table::new();
    ws.insert(name.to_string(), watcher);
    doc.insert("watchers".into(), toml::Value::Table(ws));
    let env: toml::Table = global_env
        .iter()
        .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
        .collect();
    doc.insert("env".into(), toml::Value::Table(env));
    let src = toml::to_string(&doc).map_err(|e| e.to_string())?;
    let cfg = load_toml_str(Path::new("<add>"), &src).map_err(|e| {
        e.one_line_each()
            .into_iter()
            .map(|l| l.split_once(": ").map_or(l.clone(), |(_, m)| m.to_string()))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    cfg.watchers
        .into_iter()
        .next()
        .ok_or_else(|| "no watcher built".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Config, ConfigError> {
        load_toml_str(Path::new("test.toml"), s)
    }

    #[test]
    fn minimal_watcher() {
        let c = load_str("[watchers.a]\ncmd = \"sleep 10\"\n").unwrap();
        assert_eq!(c.watchers[0].numprocesses, 1);
        assert_eq!(c.watchers[0].graceful_timeout, Duration::from_secs(30));
    }

    #[test]
    fn type_error_has_line_and_key() {
        let e = load_str("[watchers.a]\ncmd = \"x\"\nnumprocesses = \"four\"\n").unwrap_err();
        assert_eq!(e.location, "test.toml:3:16", "{e:?}");
        assert!(e.message.contains("watchers.a.numprocesses"), "{}", e.message);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = load_str("[watchers.a]\ncmd = \"x\"\nnumprocess = 2\n").unwrap_err();
        assert!(e.location.starts_with("test.toml:3:"), "{}", e.location);
        assert!(e.message.contains("numprocess"), "{}", e.message);
    }

    #[test]
    fn socket_reference_checked() {
        let e = load_str("[watchers.a]\ncmd = \"x --fd $(circus.sockets.web)\"\n").unwrap_err();
        assert!(e.message.contains("\"web\""), "{}", e.message);
        let c = load_str("[sockets.web]\nport = 0\n[watchers.a]\ncmd = \"x --fd $(circus.sockets.web)\"\n")
            .unwrap();
        assert_eq!(c.watchers[0].sockets, vec!["web".to_string()]);
    }

    #[test]
    fn durations_and_signals() {
        let c = load_str("[watchers.a]\ncmd = \"x\"\ngraceful_timeout = \"500ms\"\nstop_signal = \"INT\"\nwarmup_delay = 0.25\n").unwrap();
        let w = &c.watchers[0];
        assert_eq!(w.graceful_timeout, Duration::from_millis(500));
        assert_eq!(w.stop_signal, Signum(libc::SIGINT));
        assert_eq!(w.warmup_delay, Duration::from_millis(250));
    }

    #[test]
    fn several_errors_reported_together() {
        let e = load_str(
            "[watchers.a]\ncmd = \"\"\n[watchers.b]\ncmd = \"x\"\nsingleton = true\nnumprocesses = 3\n",
        )
        .unwrap_err();
        assert_eq!(e.one_line_each().len(), 2, "{:?}", e.one_line_each());
    }
}
