//! Validation: a parsed [`ConfigFile`] becomes a [`Config`], every problem
//! collected with the location of its key.

use super::error::{self, ConfigError};
use super::model::{ConfigFile, RlimitValue, SocketConfig, Umask};
use super::watcher::resolve_watcher;
use super::{Config, GlobalSpec, Seconds, SockType, SocketAddrSpec, SocketSpec};
use std::collections::BTreeMap;
use std::path::Path;

/// `[ringmaster] shutdown_timeout` when unset.
const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) struct Resolver<'a> {
    src: &'a error::Source,
    pub(super) errors: error::Errors,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    pub(super) fn err(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>) {
        let src = self.src;
        self.errors.push_with(|| ConfigError::at(src, span, msg));
    }

    pub(super) fn err_help(
        &mut self,
        span: std::ops::Range<usize>,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        let src = self.src;
        self.errors
            .push_with(|| ConfigError::at(src, span, msg).with_help(help));
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
}

pub(super) fn resolve(path: &Path, src: &error::Source, file: ConfigFile) -> Result<Config, ConfigError> {
    let mut r = Resolver {
        src,
        errors: error::Errors::default(),
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
    for (key, ep) in [
        ("endpoint", &g.endpoint),
        ("pubsub_endpoint", &g.pubsub_endpoint),
        ("stats_endpoint", &g.stats_endpoint),
    ] {
        if let Some(ep) = ep {
            if let Some(problem) = endpoint_problem(ep.get_ref()) {
                r.err(ep.span(), format!("{key}: {problem}"));
            }
        }
    }
    let http_endpoint = g.http_endpoint.as_ref().and_then(|e| {
        let parsed = e.get_ref().parse::<std::net::SocketAddr>();
        if parsed.is_err() {
            r.err_help(
                e.span(),
                format!("http_endpoint: {:?} is not an IP address and port", e.get_ref()),
                "write it as IP:PORT, e.g. \"127.0.0.1:9770\" (port 0 picks a free port)",
            );
        }
        parsed.ok()
    });
    let http_token_file = g.http_token_file.as_ref().map(|f| {
        let f = f.get_ref();
        match path.parent() {
            Some(dir) if f.is_relative() => dir.join(f),
            _ => f.clone(),
        }
    });
    let global_env = check_env(&mut r, &file.env, None);
    let global = GlobalSpec {
        endpoint: g.endpoint.as_ref().map(|e| e.get_ref().clone()),
        pubsub_endpoint: g.pubsub_endpoint.as_ref().map(|e| e.get_ref().clone()),
        stats_endpoint: g.stats_endpoint.as_ref().map(|e| e.get_ref().clone()),
        endpoint_owner: g.endpoint_owner.clone(),
        statsd: g.statsd,
        check_delay: g.check_delay.map(Seconds::get),
        warmup_delay: g.warmup_delay.get(),
        umask: g.umask.as_ref().map(|u| u.get_ref().0),
        pidfile: g.pidfile.clone(),
        loglevel: g.loglevel.clone(),
        log_format: g.log_format,
        history_lines: g.history_lines.unwrap_or(1000),
        publish_logs: g.publish_logs,
        debug: g.debug,
        kill_mode: g.kill_mode,
        shutdown_timeout: g.shutdown_timeout.map_or(DEFAULT_SHUTDOWN_TIMEOUT, Seconds::get),
        http_endpoint,
        http_token_file,
        http_metrics_auth: g.http_metrics_auth,
    };

    // Socket and watcher names are case-insensitive, as in Circus: a socket
    // is known by its lower-cased name (which `$(circus.sockets.X)` and
    // `sockets = [...]` are matched against), a watcher keeps its spelling.
    let mut sockets: Vec<SocketSpec> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    // In file order, so that the second spelling of a name is the one refused.
    let mut in_order: Vec<_> = file.sockets.iter().collect();
    in_order.sort_by_key(|(_, sc)| sc.span().start);
    for (written, sc) in in_order {
        let span = sc.span();
        if !valid_name(written) {
            r.err(
                span.clone(),
                format!("invalid socket name {written:?}: use letters, digits, '_', '-' or ':'"),
            );
            continue;
        }
        let name = written.to_ascii_lowercase();
        if let Some(first) = seen.insert(name.clone(), written.as_str()) {
            r.err(
                span.clone(),
                format!(
                    "socket {written:?} is already defined as {first:?} (socket names are case-insensitive)"
                ),
            );
            continue;
        }
        if let Some(s) = resolve_socket(&mut r, &name, sc.get_ref(), span) {
            sockets.push(s);
        }
    }
    sockets.sort_by(|a, b| a.name.cmp(&b.name));
    let socket_names: Vec<String> = sockets.iter().map(|s| s.name.clone()).collect();

    let mut watchers = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut in_order: Vec<_> = file.watchers.iter().collect();
    in_order.sort_by_key(|(_, wc)| wc.span().start);
    for (name, wc) in in_order {
        let span = wc.span();
        if !valid_name(name) {
            r.err(span.clone(), format!("invalid watcher name {name:?}: use letters, digits, '_', '-' or ':' (a '.' would break event topics)"));
            continue;
        }
        if let Some(first) = seen.insert(name.to_lowercase(), name.as_str()) {
            r.err(
                span.clone(),
                format!(
                    "watcher {name:?} is already defined as {first:?} (watcher names are case-insensitive)"
                ),
            );
            continue;
        }
        if let Some(w) = resolve_watcher(&mut r, name, wc.get_ref(), &global_env, &socket_names) {
            watchers.push(w);
        }
    }
    watchers.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));

    if let Some(e) = std::mem::take(&mut r.errors).into_error() {
        return Err(e);
    }
    Ok(Config {
        path: path.to_path_buf(),
        global,
        sockets,
        watchers,
        warnings: r.warnings,
        global_env,
    })
}

/// Checks an env table (names and values must fit in `NAME=value` of a C
/// environment) and returns it as plain strings.
pub(super) fn check_env(
    r: &mut Resolver<'_>,
    env: &BTreeMap<toml::Spanned<String>, toml::Spanned<String>>,
    watcher: Option<&str>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in env {
        let key = k.get_ref();
        let problem = if key.is_empty() {
            Some("an environment variable name cannot be empty".to_string())
        } else if key.contains('=') {
            Some(format!("environment variable name {key:?} contains '='"))
        } else if key.contains('\0') {
            Some(format!("environment variable name {key:?} contains a NUL byte"))
        } else if v.get_ref().contains('\0') {
            Some(format!("the value of {key} contains a NUL byte"))
        } else {
            None
        };
        match problem {
            Some(p) => match watcher {
                Some(name) => r.err(k.span(), format!("watcher {name}: env: {p}")),
                None => r.err(k.span(), p),
            },
            None => {
                out.insert(key.clone(), v.get_ref().clone());
            }
        }
    }
    out
}

/// Why a control endpoint cannot be bound, if it cannot: `tcp://host:port`
/// or `ipc://path`, parsed as the control channel parses it.
pub fn endpoint_problem(endpoint: &str) -> Option<String> {
    let expected = "expected tcp://HOST:PORT or ipc://PATH";
    match endpoint.parse::<zeromq::Endpoint>() {
        Err(e) => Some(format!("invalid endpoint {endpoint:?}: {e} ({expected})")),
        Ok(zeromq::Endpoint::Ipc(None)) => Some(format!("ipc endpoint {endpoint:?} has no path")),
        Ok(zeromq::Endpoint::Ipc(Some(p))) => unix_path_problem(&p),
        Ok(zeromq::Endpoint::Tcp(..)) => None,
        // A transport this zeromq build adds but the control channel does not bind.
        Ok(other) => Some(format!("unsupported endpoint {other} ({expected})")),
    }
}

/// The longest path a UNIX socket can bind: `sun_path` holds 108 bytes with
/// the terminating NUL.
pub(crate) const MAX_UNIX_PATH: usize = 107;

fn unix_path_problem(p: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = p.as_os_str().as_bytes();
    if bytes.is_empty() {
        Some("the socket path is empty".into())
    } else if bytes.contains(&0) {
        Some("the socket path contains a NUL byte".into())
    } else if bytes.len() > MAX_UNIX_PATH {
        Some(format!(
            "the socket path is {} bytes long; a UNIX socket path has at most {MAX_UNIX_PATH} bytes (sun_path)",
            bytes.len()
        ))
    } else {
        None
    }
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
    if let Some(p) = &sc.path {
        for (key, span) in [
            ("host", sc.host.as_ref().map(|h| h.span())),
            ("port", sc.port.as_ref().map(|p| p.span())),
        ] {
            if let Some(span) = span {
                r.err_help(
                    span,
                    format!("socket {name}: {key} cannot be combined with path (a socket with a path is a UNIX socket)"),
                    format!("remove {key}, or remove path for a TCP/UDP socket"),
                );
            }
        }
        if let Some(problem) = unix_path_problem(p.get_ref()) {
            r.err(p.span(), format!("socket {name}: {problem}"));
        }
    }
    let addr = match (family, sc.path.as_ref().map(|p| p.get_ref())) {
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
            let host = sc.host.as_ref().map_or_else(
                || if v6 { "::1".into() } else { "127.0.0.1".into() },
                |h| h.get_ref().clone(),
            );
            SocketAddrSpec::Inet {
                host,
                port: sc.port.as_ref().map_or(8080, |p| *p.get_ref()),
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
pub(crate) fn rlimit_resource(name: &str) -> Option<(&'static str, i32)> {
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

/// An rlimit's value for setrlimit; None = RLIM_INFINITY.
pub(super) fn rlimit_value(v: &RlimitValue) -> Option<u64> {
    match v {
        RlimitValue::Num(n) => Some(*n),
        RlimitValue::Unlimited => None,
    }
}

/// Socket names a command line refers to with `$(circus.sockets.X)` or `((circus.sockets.X))`.
pub(crate) fn referenced_sockets(text: &str) -> Vec<String> {
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
