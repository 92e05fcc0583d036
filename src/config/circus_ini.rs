//! A Circus ini file, converted to Ringmaster's TOML model so that it runs
//! exactly as it ran under circusd. Every key keeps its ini location, so an
//! error in the converted config names the ini file and line.
//!
//! | Circus | Ringmaster | severity when unsupported |
//! |---|---|---|
//! | `[circus]` endpoint, pubsub_endpoint (defaults tcp://127.0.0.1:5555/5556, as Circus), stats_endpoint, statsd, endpoint_owner, warmup_delay, umask, pidfile, loglevel, logoutput, debug | `[ringmaster]` | – |
//! | check_delay, multicast_endpoint, debug_gc, fqdn_prefix, statsd_close_outputs, httpd_close_outputs, stream_backend | – | warning: no effect |
//! | httpd = true, loggerconfig | – | error |
//! | `[env]`, `[env:PAT,…]` | top-level `env`, merged into matching watchers' `env` | – |
//! | `[socket:N]` (host default localhost, port 8080, umask read as *decimal* like Circus) | `[sockets.n]` | proto: warning |
//! | `[watcher:N]` options | `[watchers.n]` | – |
//! | stdout_stream.* / stderr_stream.* with a built-in class | `stdout_stream` / `stderr_stream` | class as a dotted Python path: error |
//! | hooks.*, virtualenv, on_demand = true, stdin_socket | – | error (cannot be honoured) |
//! | check_flapping, flapping.*, copy_path (PYTHONPATH), virtualenv_py_ver, other free-form keys | – | warning: ignored |
//! | `[plugin:flapping]` | built-in restart policy (`[watchers.X.restart]`) | warning |
//! | other `[plugin:*]` | – | error |
//!
//! Circus's clean environment has no PATH: watchers without `copy_env` get
//! `copy_path = false` to keep that behaviour.

use super::ini::{self, Document, EnvMap, Location};
use std::collections::BTreeMap;
use std::path::Path;
use toml::{Table, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub location: Location,
}

#[derive(Debug, Clone, Default)]
pub struct Converted {
    pub table: Table,
    pub diagnostics: Vec<Diagnostic>,
    /// Dotted TOML key path → where it was written in the ini.
    pub provenance: BTreeMap<String, Location>,
}

struct Conv {
    out: Converted,
}

enum Kind {
    Str,
    Int,
    Num,
    Bool,
    Ident,
    Rlimit,
}

impl Conv {
    fn diag(&mut self, severity: Severity, loc: &Location, message: impl Into<String>) {
        self.out.diagnostics.push(Diagnostic {
            severity,
            message: message.into(),
            location: loc.clone(),
        });
    }

    fn typed(&mut self, kind: Kind, key: &str, raw: &str, loc: &Location) -> Option<Value> {
        let v = raw.trim();
        let bad = |what: &str| format!("{key} = {raw:?}: expected {what}");
        match kind {
            Kind::Str => Some(Value::String(raw.to_string())),
            Kind::Int => match v.parse::<i64>() {
                Ok(i) => Some(Value::Integer(i)),
                Err(_) => {
                    self.diag(Severity::Error, loc, bad("an integer"));
                    None
                }
            },
            Kind::Num => match v.parse::<i64>() {
                Ok(i) => Some(Value::Integer(i)),
                Err(_) => match v.parse::<f64>() {
                    Ok(f) => Some(Value::Float(f)),
                    Err(_) => {
                        self.diag(Severity::Error, loc, bad("a number"));
                        None
                    }
                },
            },
            Kind::Bool => match v.to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" => Some(Value::Boolean(true)),
                "no" | "false" | "off" | "0" => Some(Value::Boolean(false)),
                _ => {
                    self.diag(
                        Severity::Error,
                        loc,
                        bad("a boolean (yes/true/on/1 or no/false/off/0)"),
                    );
                    None
                }
            },
            Kind::Ident => Some(match v.parse::<i64>() {
                Ok(i) => Value::Integer(i),
                Err(_) => Value::String(v.to_string()),
            }),
            Kind::Rlimit => Some(if v.is_empty() {
                Value::String("unlimited".into())
            } else {
                match v.parse::<i64>() {
                    Ok(i) => Value::Integer(i),
                    Err(_) => Value::String(v.to_string()),
                }
            }),
        }
    }

    fn put(&mut self, table: &mut Table, path: &str, key: &str, v: Value, loc: &Location) {
        self.out.provenance.insert(format!("{path}.{key}"), loc.clone());
        table.insert(key.to_string(), v);
    }
}

fn global_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "endpoint" | "pubsub_endpoint" | "stats_endpoint" | "endpoint_owner" | "pidfile" | "loglevel"
        | "logoutput" | "umask" => Kind::Str,
        "statsd" | "debug" => Kind::Bool,
        "warmup_delay" | "check_delay" => Kind::Num,
        _ => return None,
    })
}

fn socket_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "host" | "path" | "family" | "type" | "interface" => Kind::Str,
        "port" | "backlog" | "umask" => Kind::Int,
        "replace" | "so_reuseport" | "blocking" => Kind::Bool,
        _ => return None,
    })
}

fn watcher_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "cmd" | "args" | "working_dir" | "shell_args" | "executable" | "stop_signal" => Kind::Str,
        "numprocesses" | "max_retry" | "priority" => Kind::Int,
        "warmup_delay" | "graceful_timeout" | "max_age" | "max_age_variance" => Kind::Num,
        "shell" | "copy_env" | "send_hup" | "stop_children" | "singleton" | "use_sockets" | "autostart"
        | "respawn" | "close_child_stdin" | "close_child_stdout" | "close_child_stderr" => Kind::Bool,
        "uid" | "gid" => Kind::Ident,
        _ => return None,
    })
}

const FLAT_RLIMITS: [&str; 9] = [
    "nofile", "nproc", "core", "as", "cpu", "data", "fsize", "memlock", "stack",
];
const BUILTIN_STREAMS: [&str; 8] = [
    "FileStream",
    "WatchedFileStream",
    "TimedRotatingFileStream",
    "StdoutStream",
    "FancyStdoutStream",
    "file",
    "stdout",
    "null",
];

/// Reads and converts a Circus ini file (with its includes).
pub fn convert(path: &Path) -> Result<Converted, ini::IniError> {
    let process_env = EnvMap::from_process();
    let doc = ini::load(path, &process_env)?;
    Ok(convert_doc(&doc, &process_env))
}

pub fn convert_doc(doc: &Document, process_env: &EnvMap) -> Converted {
    let mut c = Conv {
        out: Converted::default(),
    };
    for w in &doc.warnings {
        c.diag(Severity::Warning, &w.location, w.message.clone());
    }
    // [env]: for every watcher; values expanded against the process environment.
    let process = process_env.folded();
    let mut global_env = EnvMap::new();
    let mut env_table = Table::new();
    if let Some(s) = doc.section("env") {
        for e in doc.items(s) {
            let v = process.expand(&e.value);
            global_env.insert(e.key.clone(), v.clone());
            c.put(&mut env_table, "env", &e.key, Value::String(v), &e.location);
        }
    }
    let mut with_global = process_env.clone();
    for (k, v) in global_env.iter() {
        with_global.insert(k, v);
    }
    let vars = with_global.folded();

    // [circus]
    let mut g = Table::new();
    if let Some(s) = doc.section("circus") {
        for e in doc.items(s) {
            let key = e.key.as_str();
            let raw = vars.expand(&e.value);
            match key {
                "include" | "include_dir" => continue,
                "check_delay" => c.diag(
                    Severity::Warning,
                    &e.location,
                    "check_delay has no effect: Ringmaster reaps children as soon as they exit",
                ),
                "httpd"
                    if matches!(
                        raw.trim().to_ascii_lowercase().as_str(),
                        "true" | "yes" | "on" | "1"
                    ) =>
                {
                    c.diag(
                        Severity::Error,
                        &e.location,
                        "httpd (circus-web) is not supported",
                    );
                    continue;
                }
                "loggerconfig" => {
                    c.diag(Severity::Error, &e.location, "loggerconfig (a Python logging config) is not supported; use --log-level/--log-format");
                    continue;
                }
                _ => {}
            }
            match global_kind(key) {
                Some(Kind::Num) if key == "check_delay" => {}
                Some(k) => {
                    if let Some(v) = c.typed(k, key, &raw, &e.location) {
                        c.put(&mut g, "ringmaster", key, v, &e.location);
                    }
                }
                None => c.diag(
                    Severity::Warning,
                    &e.location,
                    format!("[circus] option {key:?} has no effect in Ringmaster; ignored"),
                ),
            }
        }
    }
    // Circus's default endpoints, so circusctl finds the daemon unchanged.
    g.entry("endpoint")
        .or_insert_with(|| Value::String("tcp://127.0.0.1:5555".into()));
    g.entry("pubsub_endpoint")
        .or_insert_with(|| Value::String("tcp://127.0.0.1:5556".into()));
    c.out.table.insert("ringmaster".into(), Value::Table(g));
    if !env_table.is_empty() {
        c.out.table.insert("env".into(), Value::Table(env_table));
    }

    let mut sockets = Table::new();
    let mut watchers = Table::new();
    let mut env_sections: Vec<(Vec<String>, &ini::Section)> = Vec::new();
    for s in doc.sections() {
        let name = s.name.as_str();
        if let Some(n) = name.strip_prefix("socket:") {
            let n = n.trim().to_lowercase();
            let path = format!("sockets.{n}");
            let mut t = Table::new();
            for e in doc.items(s) {
                let raw = vars.expand(&e.value);
                match socket_kind(&e.key) {
                    Some(k) => {
                        if let Some(v) = c.typed(k, &e.key, &raw, &e.location) {
                            c.put(&mut t, &path, &e.key, v, &e.location);
                        }
                    }
                    None => c.diag(
                        Severity::Warning,
                        &e.location,
                        format!("socket option {:?} is not supported; ignored", e.key),
                    ),
                }
            }
            if !t.contains_key("path") {
                t.entry("host")
                    .or_insert_with(|| Value::String("localhost".into()));
                t.entry("port").or_insert(Value::Integer(8080));
            }
            if !t.contains_key("umask") && t.contains_key("path") {
                // Circus's default socket umask is 8 (decimal), i.e. 0o010.
                t.insert("umask".into(), Value::Integer(8));
            }
            c.out.provenance.insert(path.clone(), s.location.clone());
            sockets.insert(n, Value::Table(t));
        } else if let Some(n) = name.strip_prefix("watcher:") {
            let n = n.trim().to_lowercase();
            let t = convert_watcher(&mut c, doc, s, &n, &vars);
            watchers.insert(n, Value::Table(t));
        } else if let Some(p) = name.strip_prefix("env:") {
            env_sections.push((p.split(',').map(|x| x.trim().to_string()).collect(), s));
        } else if let Some(p) = name.strip_prefix("plugin:") {
            let use_ = s.get("use").map(|e| e.value.clone()).unwrap_or_default();
            if use_.ends_with("flapping.Flapping") {
                c.diag(Severity::Warning, &s.location, format!("[plugin:{p}]: Ringmaster's built-in restart policy replaces the flapping plugin; see [watchers.X.restart]"));
            } else {
                c.diag(
                    Severity::Error,
                    &s.location,
                    format!("[plugin:{p}] ({use_}): Circus plugins are not supported"),
                );
            }
        } else if name != "circus" && name != "env" {
            c.diag(
                Severity::Warning,
                &s.location,
                format!("section [{name}] is not a Circus section; ignored"),
            );
        }
    }
    // [env:PAT,…]: raw values, in file order, later sections win.
    for (patterns, s) in env_sections {
        for (wname, w) in watchers.iter_mut() {
            if !patterns.iter().any(|p| ini::fnmatch(wname, &p.to_lowercase())) {
                continue;
            }
            let Some(wt) = w.as_table_mut() else { continue };
            let env = wt.entry("env").or_insert_with(|| Value::Table(Table::new()));
            if let Some(et) = env.as_table_mut() {
                for e in doc.items(s) {
                    et.insert(e.key.clone(), Value::String(e.value.clone()));
                    c.out
                        .provenance
                        .insert(format!("watchers.{wname}.env.{}", e.key), e.location.clone());
                }
            }
        }
    }
    if !sockets.is_empty() {
        c.out.table.insert("sockets".into(), Value::Table(sockets));
    }
    if !watchers.is_empty() {
        c.out.table.insert("watchers".into(), Value::Table(watchers));
    }
    c.out
}

fn convert_watcher(
    c: &mut Conv,
    doc: &Document,
    s: &ini::Section,
    name: &str,
    vars: &ini::FoldedEnv,
) -> Table {
    let path = format!("watchers.{name}");
    c.out.provenance.insert(path.clone(), s.location.clone());
    let mut t = Table::new();
    let mut rlimits = Table::new();
    let mut streams: [Table; 2] = [Table::new(), Table::new()];
    for e in doc.items(s) {
        let key = e.key.as_str();
        let raw = vars.expand(&e.value);
        let loc = &e.location;
        if let Some(k) = watcher_kind(key) {
            if let Some(v) = c.typed(k, key, &raw, loc) {
                c.put(&mut t, &path, key, v, loc);
            }
            continue;
        }
        if let Some(r) = key.strip_prefix("rlimit_") {
            if let Some(v) = c.typed(Kind::Rlimit, key, &raw, loc) {
                if FLAT_RLIMITS.contains(&r) {
                    c.put(&mut t, &path, key, v, loc);
                } else {
                    c.put(&mut rlimits, &format!("{path}.rlimits"), r, v, loc);
                }
            }
            continue;
        }
        let stream = key
            .strip_prefix("stdout_stream.")
            .map(|k| (0, k))
            .or_else(|| key.strip_prefix("stderr_stream.").map(|k| (1, k)));
        if let Some((i, k)) = stream {
            let spath = format!(
                "{path}.{}",
                if i == 0 { "stdout_stream" } else { "stderr_stream" }
            );
            let v = match k {
                "class" if !BUILTIN_STREAMS.contains(&raw.trim()) => {
                    c.diag(Severity::Error, loc, format!("{key} = {raw:?}: only Circus's built-in stream classes are supported (FileStream, WatchedFileStream, TimedRotatingFileStream, StdoutStream, FancyStdoutStream)"));
                    continue;
                }
                "max_bytes" | "backup_count" | "rotate_interval" => c.typed(Kind::Int, key, &raw, loc),
                "utc" => c.typed(Kind::Bool, key, &raw, loc),
                "class" | "filename" | "time_format" | "rotate_when" | "color" => {
                    Some(Value::String(raw.trim().to_string()))
                }
                "refresh_time" => {
                    c.diag(
                        Severity::Warning,
                        loc,
                        format!("{key} is deprecated in Circus and ignored"),
                    );
                    continue;
                }
                _ => {
                    c.diag(
                        Severity::Warning,
                        loc,
                        format!("stream option {key:?} is not supported; ignored"),
                    );
                    continue;
                }
            };
            if let Some(v) = v {
                c.put(&mut streams[i], &spath, k, v, loc);
            }
            continue;
        }
        match key {
            "hooks" | "virtualenv" | "stdin_socket" => c.diag(Severity::Error, loc, format!("{key}: not supported by Ringmaster (Circus-specific Python feature)")),
            _ if key.starts_with("hooks.") => c.diag(Severity::Error, loc, format!("{key}: Circus's Python hooks cannot run in Ringmaster; use [watchers.{name}.hooks] commands")),
            "on_demand" => {
                if c.typed(Kind::Bool, key, &raw, loc) == Some(Value::Boolean(true)) {
                    c.diag(Severity::Error, loc, "on_demand = true is not supported");
                }
            }
            "check_flapping" | "virtualenv_py_ver" | "copy_path" => c.diag(Severity::Warning, loc, format!("{key} has no equivalent in Ringmaster; ignored")),
            _ if key.starts_with("flapping.") => c.diag(Severity::Warning, loc, format!("{key}: the flapping plugin is replaced by [watchers.{name}.restart]; ignored")),
            _ => c.diag(Severity::Warning, loc, format!("unknown option {key:?} ignored")),
        }
    }
    // Circus gives a non-copy_env watcher only its [env] variables: no PATH.
    if t.get("copy_env") != Some(&Value::Boolean(true)) {
        t.insert("copy_path".into(), Value::Boolean(false));
    }
    if !rlimits.is_empty() {
        t.insert("rlimits".into(), Value::Table(rlimits));
    }
    let [out, err] = streams;
    for (k, v) in [("stdout_stream", out), ("stderr_stream", err)] {
        if !v.is_empty() {
            t.insert(k.into(), Value::Table(v));
        }
    }
    t
}

/// The converted config as readable TOML (for `ringmaster convert`).
pub fn to_toml_string(table: &Table) -> String {
    let mut out = String::new();
    for key in ["ringmaster", "env", "sockets", "watchers"] {
        if let Some(v) = table.get(key) {
            let mut one = Table::new();
            one.insert(key.to_string(), v.clone());
            out.push_str(&toml::to_string(&one).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}
