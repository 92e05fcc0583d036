//! Turns a Circus 0.19 `circus.ini` into Ringmaster's TOML document (the
//! shape of [`super::model::ConfigFile`]), so `ringmaster run circus.ini`
//! behaves as circusd did and `ringmaster convert circus.ini` prints the
//! equivalent TOML.
//!
//! Values are interpreted as `circus.config.get_config` interprets them.
//! `$(circus.env.X)` is resolved *now*, against the process environment plus
//! `[env]` (and, for a watcher's string options, its `[env:…]` variables), as
//! circusd resolved it at load time: a converted file holds the values the
//! converting shell saw. `$UPPER` in env values is left as written, because
//! the daemon expands it at spawn against its own environment, which is what
//! circusd did; we only warn about names that are unset now. `$(circus.wid)`,
//! `$(circus.sockets.X)` and other run-time names are left for the daemon.
//!
//! Where Circus's default differs from Ringmaster's, the Circus default is
//! written out explicitly (marked "emitted" below) so the ini keeps its meaning.
//!
//! Nothing is dropped silently: every option below that is not honoured
//! produces a [`Diagnostic`] naming its file and line. *Error* means the ini
//! would behave differently and we cannot make it behave the same; the caller
//! must refuse to run it. *Warning* means the option had no effect in Circus
//! either, or the difference is harmless.
//!
//! | Circus option | Ringmaster | Severity |
//! |---|---|---|
//! | `[circus] endpoint`, `pubsub_endpoint` | same keys; **emitted** as `tcp://127.0.0.1:5555` / `:5556` when absent (Ringmaster's default is ipc://, which circusctl would not find) | – |
//! | `[circus] stats_endpoint`, `statsd` | same keys; setting `stats_endpoint` implies `statsd = true` (as Circus); `statsd = true` alone **emits** `stats_endpoint = tcp://127.0.0.1:5557` | – |
//! | `[circus] endpoint_owner`, `pidfile`, `loglevel`, `logoutput`, `debug` | same keys (empty values mean unset, as Circus) | – |
//! | `[circus] warmup_delay` | seconds (fractions accepted, unlike Circus) | – |
//! | `[circus] umask` | octal, as Circus (`int(v, 8)`); written as an octal string | – |
//! | `[circus] check_delay` | kept (ignored by Ringmaster; negative values dropped) | Warning: Ringmaster reaps on SIGCHLD |
//! | `[circus] multicast_endpoint` | kept | Warning: UDP discovery is not implemented |
//! | `[circus] httpd = true` | – | Error: circus-web cannot run; `httpd = false` is fine |
//! | `[circus] httpd_host`, `httpd_port`, `debug_gc`, `fqdn_prefix` | – | Warning: no effect |
//! | `[circus] loggerconfig` | – (`default` is accepted silently) | Error: Python logging config files cannot be honoured |
//! | `[circus] statsd_close_outputs`, `httpd_close_outputs`, `stream_backend` | – | Warning: documented but never read by Circus 0.19 |
//! | `[circus] include`, `include_dir` | read (see [`super::ini`]) | Warning when a pattern matches nothing |
//! | `[env]` | top-level `env`, `$(circus.env.X)` expanded against the process environment | Warning for an unset `$UPPER` name (empty at spawn, as in Circus) |
//! | `[env:PAT,…]` | merged into each matching watcher's `env` (case-sensitive fnmatch, file order, later wins), values raw | Warning when no watcher matches; as above for `$UPPER` |
//! | `[socket:NAME]` | `[sockets.name]` (lower-cased, as Circus); `host`/`port` **emitted** as `localhost`/`8080`, `backlog` as 2048, `nodelay = false` (Circus never set TCP_NODELAY) for inet stream sockets | – |
//! | socket `umask` | integer `int(v, 10) & 0o777` — Circus reads it as *decimal*; **emitted** as 8 for unix sockets | Warning when written with a leading 0 (`022` means 0o026) |
//! | socket `family`, `type` | `AF_INET`… strings, upper-cased | Error for unknown names |
//! | socket `path`, `replace`, `so_reuseport`, `interface`, `blocking` | same keys | Warning for `host`/`port` beside `path` (ignored, as in Circus) |
//! | socket `proto` | – | Warning for `tcp`/`udp`/`ip` (same as the default), Error otherwise |
//! | `[plugin:X]` with `use = circus.plugins.flapping.Flapping` | – | Warning: Ringmaster's built-in restart policy replaces it |
//! | any other `[plugin:X]` | – | Error: Python plugins cannot run |
//! | watcher `cmd`, `args`, `shell`, `shell_args`, `executable`, `working_dir`, `uid`, `gid`, `send_hup`, `stop_children`, `stop_signal`, `use_sockets`, `singleton`, `respawn`, `autostart`, `priority`, `close_child_*`, `copy_env`, `max_retry` | same keys | Error for bad values (e.g. a boolean other than yes/true/on/1/no/false/off/0) |
//! | watcher `numprocesses` | same; **emitted** as 1 when absent | – |
//! | watcher `graceful_timeout` | seconds; **emitted** as 30 when absent | – |
//! | watcher `warmup_delay`, `max_age`, `max_age_variance` | seconds; `max_age_variance` **emitted** as 30 when `max_age` is set | – |
//! | watcher `copy_path` | `copy_path = false` is **emitted** unless `copy_env` (Circus's clean env has no PATH) | Warning when true: Circus put circusd's own `sys.path` in PYTHONPATH, which has no Ringmaster equivalent; Error when true without `copy_env` (Circus refused it) |
//! | watcher `rlimit_X` | `rlimit_X` for nofile/nproc/core/as/cpu/data/fsize/memlock/stack, `rlimits.X` for other Linux limits; empty or -1 → `"unlimited"` | Error for unknown limits |
//! | watcher `stdout_stream.*`, `stderr_stream.*` | `[watchers.X.stdout_stream]` with the keys the Circus class reads: FileStream (filename, max_bytes, backup_count, time_format), WatchedFileStream (filename, time_format), TimedRotatingFileStream (filename, backup_count, time_format, rotate_when, rotate_interval, utc), FancyStdoutStream (color, time_format), StdoutStream (none); `circus.stream.X` is accepted as X | Error for another dotted (Python) class, an unknown class, `QueueStream`, no class/filename, a file class without filename, TimedRotatingFileStream without rotate_when; Warning for keys the class ignores (as Circus did), `refresh_time`, an unknown `color` (Circus picked one at random) |
//! | stream `utc` | bool, **true for any non-empty value** as in Circus (`bool("false")`) | Warning when the value reads as false |
//! | stream `rotate_when` | upper-cased (Circus rejected lower case) | Warning when lower case; Error when invalid |
//! | watcher `hooks.*`, `virtualenv`, `stdin_socket`, `on_demand = true` | – | Error (hooks: Ringmaster runs command hooks instead) |
//! | watcher `virtualenv_py_ver` | – | Warning: only meaningful with `virtualenv` |
//! | watcher `check_flapping`, `flapping.*` | – | Warning: no effect / replaced by `[watchers.X.restart]` |
//! | watcher `env` | – | Warning: Circus overwrote it; use `[env:NAME]` |
//! | watcher `name` | renames the watcher, as Circus did | Warning |
//! | any other watcher, socket or `[circus]` key, or unknown section | – | Warning: unknown option ignored (Circus ignored it too) |
//! | `$WID` in `cmd`/`args` | left as is (Circus never replaced it) | Warning |
//!
//! Not reproduced on purpose: `__name__` (a parser artefact Circus leaked into
//! env and options), `$UPPER` expansion of values inherited with `copy_env`,
//! and circusd skipping a watcher or socket whose options are invalid (we
//! report an error instead).

mod env;
mod global;
mod render;
mod stream;
mod values;
mod watcher;

use super::ini::{self, Document, Entry, EnvMap, Section};
pub use super::ini::{IniError, Location};
pub use render::{key_path, to_toml_string};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub location: Location,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {sev}: {}", self.location, self.message)
    }
}

/// The converted document. When [`Converted::has_errors`] is true the table
/// is a best effort (options in error are left out, a watcher without a
/// usable `cmd` is left out) and must not be run.
#[derive(Debug, Clone)]
pub struct Converted {
    pub table: Table,
    pub diagnostics: Vec<Diagnostic>,
    /// Where each emitted value came from, by dotted TOML key path (segments
    /// that are not bare keys are quoted as in TOML: `watchers."a.b".cmd`).
    /// Defaults we emit point at their section's header when there is one.
    pub provenance: BTreeMap<String, Location>,
    /// Every file read, the main file first (for reload watching).
    pub files: Vec<PathBuf>,
}

impl Converted {
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Like [`to_toml_string`], with sockets and watchers in the order the
    /// ini files define them.
    pub fn to_toml_string(&self) -> String {
        let rank = |group: &str, name: &str| -> Option<(usize, usize)> {
            let loc = self.provenance.get(&key_path(&[group, name]))?;
            let file = self.files.iter().position(|f| *f == loc.file)?;
            Some((file, loc.line))
        };
        render::render(&self.table, &rank)
    }
}

/// Converts the file at `path` (and its includes) using the daemon's own
/// environment for substitutions.
pub fn convert(path: &Path) -> Result<Converted, IniError> {
    convert_with_env(path, &EnvMap::from_process())
}

/// [`convert`] with an explicit process environment (what circusd's
/// `os.environ` would have held).
pub fn convert_with_env(path: &Path, process_env: &EnvMap) -> Result<Converted, IniError> {
    let doc = ini::load(path, process_env)?;
    let mut cx = Cx {
        doc: &doc,
        process_env,
        diagnostics: Vec::new(),
        provenance: BTreeMap::new(),
        env_checked: std::collections::HashSet::new(),
    };
    for w in &doc.warnings {
        cx.diag(Severity::Warning, &w.location, w.message.clone());
    }
    let table = cx.run();
    let Cx {
        mut diagnostics,
        provenance,
        ..
    } = cx;
    // File order, then line: the order a reader goes through the files.
    diagnostics.sort_by_key(|d| {
        let file = doc
            .files
            .iter()
            .position(|f| *f == d.location.file)
            .unwrap_or(usize::MAX);
        (file, d.location.line)
    });
    Ok(Converted {
        table,
        diagnostics,
        provenance,
        files: doc.files.clone(),
    })
}

const DEFAULT_ENDPOINT: &str = "tcp://127.0.0.1:5555";
const DEFAULT_PUBSUB: &str = "tcp://127.0.0.1:5556";
const DEFAULT_STATS: &str = "tcp://127.0.0.1:5557";
const FLAPPING_CLASS: &str = "circus.plugins.flapping.Flapping";
const STREAM_CLASSES: &[&str] = &[
    "FileStream",
    "WatchedFileStream",
    "TimedRotatingFileStream",
    "StdoutStream",
    "FancyStdoutStream",
];
/// Limits with their own `rlimit_X` key in the model.
const NAMED_RLIMITS: &[&str] = &[
    "nofile", "nproc", "core", "as", "cpu", "data", "fsize", "memlock", "stack",
];
/// The rest of Linux's `RLIMIT_*`, which go to the `rlimits` table.
const OTHER_RLIMITS: &[&str] = &[
    "locks",
    "msgqueue",
    "nice",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
];

struct Cx<'a> {
    doc: &'a Document,
    process_env: &'a EnvMap,
    diagnostics: Vec<Diagnostic>,
    provenance: BTreeMap<String, Location>,
    /// `[env:…]` entries already checked for unset `$NAME`s: an entry shared
    /// by many watchers is warned about once.
    env_checked: std::collections::HashSet<*const Entry>,
}

/// A watcher section as collected before its env is known.
struct RawWatcher<'a> {
    name: String,
    section: &'a Section,
    entries: Vec<&'a Entry>,
    /// `[env:…]` variables, raw, with the entry that set them and its section.
    env: Vec<(&'a Entry, &'a str)>,
}

impl<'a> Cx<'a> {
    fn diag(&mut self, severity: Severity, location: &Location, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            message,
            location: location.clone(),
        });
    }

    fn warn(&mut self, e: &Entry, section: &str, message: impl fmt::Display) {
        self.diag(
            Severity::Warning,
            &e.location,
            format!("[{section}] {}: {message}", e.key),
        );
    }

    fn error(&mut self, e: &Entry, section: &str, message: impl fmt::Display) {
        self.diag(
            Severity::Error,
            &e.location,
            format!("[{section}] {}: {message}", e.key),
        );
    }

    fn record(&mut self, path: &[&str], location: &Location) {
        self.provenance.insert(key_path(path), location.clone());
    }

    fn run(&mut self) -> Table {
        let doc = self.doc;
        // [env] sees only the process environment; everything after sees both.
        let process_folded = self.process_env.folded();
        let mut local_env: Vec<(String, String, &Entry)> = Vec::new();
        if let Some(env) = doc.section("env") {
            for e in doc.items(env) {
                local_env.push((e.key.clone(), process_folded.expand(&e.value), e));
            }
        }
        let mut global_env = self.process_env.clone();
        for (k, v, _) in &local_env {
            global_env.insert(k.clone(), v.clone());
        }
        let global = global_env.folded();

        let mut out = Table::new();
        out.insert("ringmaster".into(), Value::Table(self.global_options(&global)));

        let mut env_table = Table::new();
        for (k, v, e) in &local_env {
            let key = k.trim().to_string();
            let value = self.env_value(v, e, "env");
            self.record(&["env", &key], &e.location);
            env_table.insert(key, Value::String(value));
        }
        if !env_table.is_empty() {
            out.insert("env".into(), Value::Table(env_table));
        }

        let mut sockets = Table::new();
        let mut watchers: Vec<RawWatcher<'a>> = Vec::new();
        for section in doc.sections() {
            let name = section.name.as_str();
            if matches!(name, "circus" | "env") || name.starts_with("env:") {
                continue;
            }
            let is_known = ["socket:", "plugin:", "watcher:"]
                .iter()
                .any(|p| name.starts_with(p));
            if !is_known {
                self.diag(
                    Severity::Warning,
                    &section.location,
                    format!(
                        "unknown section [{name}] ignored (Circus knows [circus], [env], [env:…], \
                         [watcher:…], [socket:…] and [plugin:…], case-sensitively)"
                    ),
                );
                continue;
            }
            let entries: Vec<&Entry> = doc.items(section).collect();
            if entries.is_empty() {
                self.diag(
                    Severity::Warning,
                    &section.location,
                    format!("empty section [{name}] skipped, as Circus does"),
                );
                continue;
            }
            if let Some(sock) = name.strip_prefix("socket:") {
                // Circus: section.split("socket:")[-1].lower()
                let sock_name = name.rsplit("socket:").next().unwrap_or(sock).to_lowercase();
                if sockets.contains_key(&sock_name) {
                    self.diag(
                        Severity::Error,
                        &section.location,
                        format!("[{name}]: a socket named {sock_name:?} is already defined (socket names are lower-cased)"),
                    );
                    continue;
                }
                let t = self.socket(section, &entries, &sock_name, &global);
                self.record(&["sockets", &sock_name], &section.location);
                sockets.insert(sock_name, Value::Table(t));
            } else if name.starts_with("plugin:") {
                self.plugin(section, &entries, &global);
            } else if let Some(wname) = name.strip_prefix("watcher:") {
                let mut wname = wname.to_string();
                if let Some(e) = entries.iter().find(|e| e.key == "name") {
                    self.warn(
                        e,
                        name,
                        format!(
                            "renames the watcher to {:?}, as in Circus; rename the section instead",
                            e.value
                        ),
                    );
                    wname = e.value.clone();
                }
                watchers.push(RawWatcher {
                    name: wname,
                    section,
                    entries,
                    env: Vec::new(),
                });
            }
        }

        self.assign_env_sections(&mut watchers);

        let mut watcher_table = Table::new();
        for w in &watchers {
            if w.name.is_empty() {
                self.diag(
                    Severity::Error,
                    &w.section.location,
                    format!("[{}]: the watcher has no name", w.section.name),
                );
                continue;
            }
            if watcher_table.contains_key(&w.name) {
                self.diag(
                    Severity::Error,
                    &w.section.location,
                    format!(
                        "[{}]: a watcher named {:?} is already defined",
                        w.section.name, w.name
                    ),
                );
                continue;
            }
            if let Some(t) = self.watcher(w, &global_env, &global) {
                self.record(&["watchers", &w.name], &w.section.location);
                watcher_table.insert(w.name.clone(), Value::Table(t));
            }
        }

        if !sockets.is_empty() {
            out.insert("sockets".into(), Value::Table(sockets));
        }
        if !watcher_table.is_empty() {
            out.insert("watchers".into(), Value::Table(watcher_table));
        }
        out
    }
}
