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
//! | socket `path`, `replace`, `so_reuseport`, `interface`, `blocking` | same keys | – |
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

use super::ini::{self, Document, Entry, EnvMap, FoldedEnv, Section};
pub use super::ini::{IniError, Location};
use super::signal::Signum;
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
        render(&self.table, &rank)
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

        // [env:PAT,…] sections, in file order; later ones win. A plain name
        // is looked up, only a glob scans the watchers, and a watcher gets a
        // section's entries once however many of its patterns match.
        let mut by_name: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
        for (i, w) in watchers.iter().enumerate() {
            by_name.entry(w.name.clone()).or_default().push(i);
        }
        let mut given: Vec<usize> = vec![usize::MAX; watchers.len()];
        for (si, section) in doc.sections().enumerate() {
            let Some(patterns) = section.name.strip_prefix("env:") else {
                continue;
            };
            let mut hits: Vec<usize> = Vec::new();
            for pattern in patterns.split(',').map(str::trim) {
                if pattern.contains(['*', '?', '[']) {
                    hits.extend(
                        watchers
                            .iter()
                            .enumerate()
                            .filter(|(_, w)| crate::fnmatch::fnmatch(&w.name, pattern))
                            .map(|(i, _)| i),
                    );
                } else if let Some(ix) = by_name.get(pattern) {
                    hits.extend(ix.iter().copied());
                }
            }
            if hits.is_empty() {
                self.diag(
                    Severity::Warning,
                    &section.location,
                    format!("[{}] matches no watcher", section.name),
                );
                continue;
            }
            let items: Vec<&Entry> = doc.items(section).collect();
            for i in hits {
                if given[i] == si {
                    continue;
                }
                given[i] = si;
                let w = &mut watchers[i];
                w.env.extend(items.iter().map(|e| (*e, section.name.as_str())));
            }
        }

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

    /// An env value as the daemon will see it: `$UPPER` is left for the daemon,
    /// which expands it at spawn against its own environment exactly as Circus
    /// did at load time; we only warn now about names that are unset.
    fn env_value(&mut self, value: &str, e: &Entry, section: &str) -> String {
        let env = self.process_env;
        let (_, unset) = ini::expand_dollar_upper(value, |n| env.get(n).map(str::to_string));
        for name in unset {
            self.warn(
                e,
                section,
                format!("${name} is not set in the environment; it becomes an empty string, as in Circus"),
            );
        }
        value.trim().to_string()
    }

    fn global_options(&mut self, env: &FoldedEnv) -> Table {
        let mut t = Table::new();
        let doc = self.doc;
        let section = doc.section("circus");
        let entries: Vec<&Entry> = section.map(|s| doc.items(s).collect()).unwrap_or_default();
        let sec = "circus";
        let mut statsd: Option<bool> = None;
        for e in entries {
            let v = env.expand(&e.value);
            match e.key.as_str() {
                "endpoint" | "pubsub_endpoint" | "stats_endpoint" | "endpoint_owner" | "pidfile"
                | "loglevel" | "logoutput" => {
                    if !v.is_empty() {
                        t.insert(e.key.clone(), Value::String(v));
                        self.record(&["ringmaster", &e.key], &e.location);
                    }
                }
                "statsd" | "debug" => {
                    if let Some(b) = self.boolean(e, sec, &v) {
                        if e.key == "statsd" {
                            statsd = Some(b);
                        }
                        t.insert(e.key.clone(), Value::Boolean(b));
                        self.record(&["ringmaster", &e.key], &e.location);
                    }
                }
                "check_delay" => {
                    if let Some(f) = self.float(e, sec, &v) {
                        if f >= 0.0 {
                            t.insert(e.key.clone(), seconds_value(f));
                            self.record(&["ringmaster", "check_delay"], &e.location);
                        }
                    }
                    self.warn(e, sec, "Ringmaster reaps on SIGCHLD; check_delay has no effect");
                }
                "multicast_endpoint" => {
                    t.insert(e.key.clone(), Value::String(v));
                    self.record(&["ringmaster", "multicast_endpoint"], &e.location);
                    self.warn(
                        e,
                        sec,
                        "UDP multicast discovery is not implemented in Ringmaster; ignored",
                    );
                }
                "warmup_delay" => {
                    if let Some(s) = self.duration(e, sec, &v) {
                        t.insert(e.key.clone(), s);
                        self.record(&["ringmaster", "warmup_delay"], &e.location);
                    }
                }
                "umask" => {
                    // Circus: `if config['umask']: int(v, 8)`.
                    if v.is_empty() {
                        continue;
                    }
                    match py_int(&v, 8) {
                        Some(n) if (0..=0o777).contains(&n) => {
                            t.insert("umask".into(), Value::String(format!("{n:03o}")));
                            self.record(&["ringmaster", "umask"], &e.location);
                        }
                        Some(n) if n > 0o777 => {
                            let masked = n & 0o777;
                            self.warn(
                                e,
                                sec,
                                format!("{v:?} is larger than 0o777; the kernel keeps only 0o{masked:03o}"),
                            );
                            t.insert("umask".into(), Value::String(format!("{masked:03o}")));
                            self.record(&["ringmaster", "umask"], &e.location);
                        }
                        _ => self.error(e, sec, format!("{v:?} is not an octal umask such as 022")),
                    }
                }
                "httpd" => {
                    if self.boolean(e, sec, &v) == Some(true) {
                        self.error(
                            e,
                            sec,
                            "the circus-web dashboard (circushttpd) is a Python program and cannot run under \
                             Ringmaster; remove it or set httpd = false",
                        );
                    }
                }
                "httpd_host" | "httpd_port" => {
                    self.warn(e, sec, "ignored: there is no circushttpd in Ringmaster")
                }
                "debug_gc" => {
                    self.boolean(e, sec, &v);
                    self.warn(
                        e,
                        sec,
                        "Python garbage-collector debugging has no equivalent; ignored",
                    );
                }
                "fqdn_prefix" => self.warn(e, sec, "only the circus-web dashboard used it; ignored"),
                "loggerconfig" => {
                    if !v.trim().eq_ignore_ascii_case("default") {
                        self.error(
                            e,
                            sec,
                            "a Python logging configuration file cannot be used; configure loglevel and \
                             logoutput instead",
                        );
                    }
                }
                "statsd_close_outputs" | "httpd_close_outputs" | "stream_backend" => self.warn(
                    e,
                    sec,
                    "documented by Circus but never read by Circus 0.19; ignored",
                ),
                "include" | "include_dir" => {}
                _ => self.warn(e, sec, "unknown option ignored"),
            }
        }
        let header = section.map(|s| s.location.clone());
        if !t.contains_key("endpoint") {
            t.insert("endpoint".into(), Value::String(DEFAULT_ENDPOINT.into()));
            if let Some(h) = &header {
                self.record(&["ringmaster", "endpoint"], h);
            }
        }
        if !t.contains_key("pubsub_endpoint") {
            t.insert("pubsub_endpoint".into(), Value::String(DEFAULT_PUBSUB.into()));
            if let Some(h) = &header {
                self.record(&["ringmaster", "pubsub_endpoint"], h);
            }
        }
        // Circus: an explicit stats_endpoint turns statsd on; statsd alone uses the default endpoint.
        if t.contains_key("stats_endpoint") && statsd != Some(true) {
            t.insert("statsd".into(), Value::Boolean(true));
        } else if statsd == Some(true) && !t.contains_key("stats_endpoint") {
            t.insert("stats_endpoint".into(), Value::String(DEFAULT_STATS.into()));
            if let Some(h) = &header {
                self.record(&["ringmaster", "stats_endpoint"], h);
            }
        }
        t
    }

    fn socket(&mut self, section: &Section, entries: &[&Entry], name: &str, env: &FoldedEnv) -> Table {
        let sec = section.name.as_str();
        let mut t = Table::new();
        let mut family: Option<(String, &Entry)> = None;
        for &e in entries {
            let v = env.expand(&e.value);
            let key = e.key.as_str();
            let mut set = |cx: &mut Self, k: &str, val: Value| {
                t.insert(k.to_string(), val);
                cx.record(&["sockets", name, k], &e.location);
            };
            match key {
                "host" | "interface" => set(self, key, Value::String(v)),
                "path" => {
                    if v.is_empty() {
                        self.error(e, sec, "an empty path cannot be bound");
                    } else {
                        set(self, key, Value::String(v));
                    }
                }
                "port" => match py_int(&v, 10) {
                    Some(p) if (0..=65535).contains(&p) => set(self, key, Value::Integer(p)),
                    _ => self.error(e, sec, format!("{v:?} is not a port number (0-65535)")),
                },
                "backlog" => match py_int(&v, 10) {
                    Some(b) if (0..=i64::from(u32::MAX)).contains(&b) => set(self, key, Value::Integer(b)),
                    _ => self.error(e, sec, format!("{v:?} is not a non-negative integer")),
                },
                "family" => {
                    let up = v.trim().to_uppercase();
                    if ["AF_INET", "AF_INET6", "AF_UNIX"].contains(&up.as_str()) {
                        family = Some((up, e));
                    } else {
                        self.error(e, sec, format!("{v:?} is not one of AF_INET, AF_INET6, AF_UNIX"));
                    }
                }
                "type" => {
                    let up = v.trim().to_uppercase();
                    let known = [
                        "SOCK_STREAM",
                        "SOCK_DGRAM",
                        "SOCK_RAW",
                        "SOCK_RDM",
                        "SOCK_SEQPACKET",
                    ];
                    if known.contains(&up.as_str()) {
                        set(self, key, Value::String(up));
                    } else {
                        self.error(e, sec, format!("{v:?} is not one of {}", known.join(", ")));
                    }
                }
                "umask" => match py_int(&v, 10) {
                    Some(n) if n >= 0 => {
                        let masked = n & 0o777;
                        let trimmed = v.trim();
                        if trimmed.len() > 1 && trimmed.starts_with('0') {
                            self.warn(
                                e,
                                sec,
                                format!(
                                    "Circus reads a socket umask as a decimal number, so {trimmed} means \
                                     0o{masked:03o}, not 0o{trimmed}; kept as Circus applied it"
                                ),
                            );
                        } else if n > 0o777 {
                            self.warn(
                                e,
                                sec,
                                format!("{n} is larger than 0o777; the kernel keeps only 0o{masked:03o}"),
                            );
                        }
                        set(self, key, Value::Integer(masked));
                    }
                    _ => self.error(e, sec, format!("{v:?} is not a non-negative integer")),
                },
                "replace" | "so_reuseport" | "blocking" => {
                    if let Some(b) = self.boolean(e, sec, &v) {
                        set(self, key, Value::Boolean(b));
                    }
                }
                "proto" => {
                    let p = v.trim().to_lowercase();
                    if ["tcp", "udp", "ip", "0", "6", "17"].contains(&p.as_str()) {
                        self.warn(e, sec, "ignored: the protocol follows from the socket type");
                    } else {
                        self.error(e, sec, format!("protocol {v:?} is not supported"));
                    }
                }
                "name" => self.warn(e, sec, "ignored: Circus names the socket after its section"),
                _ => self.warn(e, sec, "unknown option ignored"),
            }
        }
        let unix = t.contains_key("path") || family.as_ref().is_some_and(|(f, _)| f == "AF_UNIX");
        if let Some((f, e)) = &family {
            if t.contains_key("path") && f != "AF_UNIX" {
                self.warn(
                    e,
                    sec,
                    format!("{f} ignored: a socket with a path is a unix socket, as in Circus"),
                );
                t.insert("family".into(), Value::String("AF_UNIX".into()));
            } else {
                t.insert("family".into(), Value::String(f.clone()));
            }
            self.record(&["sockets", name, "family"], &e.location);
        }
        let loc = section.location.clone();
        let default = |cx: &mut Self, t: &mut Table, k: &str, v: Value| {
            if !t.contains_key(k) {
                t.insert(k.into(), v);
                cx.record(&["sockets", name, k], &loc);
            }
        };
        if unix {
            if !t.contains_key("path") {
                self.diag(
                    Severity::Error,
                    &section.location,
                    format!("[{sec}]: an AF_UNIX socket needs a path"),
                );
            }
            for &e in entries.iter().filter(|e| e.key == "host" || e.key == "port") {
                self.warn(
                    e,
                    sec,
                    "ignored: a socket with a path is a unix socket, as in Circus",
                );
            }
            t.remove("host");
            t.remove("port");
            default(self, &mut t, "umask", Value::Integer(8));
        } else {
            default(self, &mut t, "host", Value::String("localhost".into()));
            default(self, &mut t, "port", Value::Integer(8080));
            let stream = t
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "SOCK_STREAM");
            if stream {
                default(self, &mut t, "nodelay", Value::Boolean(false));
            }
        }
        default(self, &mut t, "backlog", Value::Integer(2048));
        t
    }

    fn plugin(&mut self, section: &Section, entries: &[&Entry], env: &FoldedEnv) {
        let sec = section.name.as_str();
        match entries.iter().find(|e| e.key == "use") {
            Some(e) if env.expand(&e.value).trim() == FLAPPING_CLASS => self.warn(
                e,
                sec,
                "Ringmaster's built-in restart policy replaces the flapping plugin; see [watchers.<name>.restart]",
            ),
            Some(e) => {
                let class = env.expand(&e.value);
                self.error(
                    e,
                    sec,
                    format!(
                        "plugin {class:?} is a Python class run by circusd; Ringmaster cannot run Circus plugins"
                    ),
                )
            }
            None => self.diag(
                Severity::Error,
                &section.location,
                format!("[{sec}]: a plugin needs `use = <class>`, and Ringmaster cannot run Circus plugins"),
            ),
        }
    }

    fn watcher(&mut self, w: &RawWatcher<'_>, global_env: &EnvMap, global: &FoldedEnv) -> Option<Table> {
        let sec = w.section.name.as_str();
        let name = w.name.as_str();
        // The watcher's own view: os.environ + [env] + its [env:…] values (raw),
        // as an overlay so that no watcher copies the whole environment.
        let mut env_table = Table::new();
        let mut own: EnvMap = EnvMap::new();
        for &(e, env_section) in &w.env {
            own.insert(e.key.clone(), e.value.clone());
            let key = e.key.trim().to_string();
            // Later [env:…] sections win, so the last entry for a key is the one kept.
            let value = if self.env_checked.insert(std::ptr::from_ref(e)) {
                self.env_value(&e.value, e, env_section)
            } else {
                e.value.trim().to_string()
            };
            self.record(&["watchers", name, "env", &key], &e.location);
            env_table.insert(key, Value::String(value));
        }
        let local = global.overlay(global_env, &own);

        let mut t = Table::new();
        let mut copy_env = false;
        let mut copy_path: Option<(bool, &Entry)> = None;
        let mut singleton = false;
        let mut numprocesses: Option<(i64, &Entry)> = None;
        let mut streams: BTreeMap<String, Vec<(String, String, &Entry)>> = BTreeMap::new();
        let mut rlimits = Table::new();
        let mut cmd_ok = false;

        for &e in &w.entries {
            let key = e.key.as_str();
            let set = |cx: &mut Self, t: &mut Table, k: &str, v: Value| {
                t.insert(k.to_string(), v);
                cx.record(&["watchers", name, k], &e.location);
            };
            match key {
                "cmd" | "args" => {
                    let v = local.expand(&e.value);
                    if v.contains("$WID") {
                        self.warn(e, sec, "$WID is not replaced (Circus 0.19 did not replace it either); use $(circus.wid)");
                    }
                    if key == "cmd" {
                        if v.trim().is_empty() {
                            self.error(e, sec, "cmd is empty");
                            continue;
                        }
                        cmd_ok = true;
                    }
                    set(self, &mut t, key, Value::String(v));
                }
                "working_dir" => {
                    let v = local.expand(&e.value);
                    if !v.is_empty() {
                        set(self, &mut t, key, Value::String(v));
                    }
                }
                "shell_args" => set(self, &mut t, key, Value::String(local.expand(&e.value))),
                "executable" => {
                    let v = local.expand(&global.expand(&e.value));
                    if !v.is_empty() {
                        set(self, &mut t, key, Value::String(v));
                    }
                }
                "uid" | "gid" => {
                    let v = local.expand(&e.value);
                    let v = v.trim();
                    if v.is_empty() {
                        continue;
                    }
                    let val = match v.parse::<u32>() {
                        Ok(n) => Value::Integer(i64::from(n)),
                        Err(_) => Value::String(v.to_string()),
                    };
                    set(self, &mut t, key, val);
                }
                "numprocesses" => {
                    let v = global.expand(&e.value);
                    match py_int(&v, 10) {
                        Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => {
                            numprocesses = Some((n, e));
                            set(self, &mut t, key, Value::Integer(n));
                        }
                        _ => self.error(e, sec, format!("{v:?} is not a non-negative integer")),
                    }
                }
                "warmup_delay" | "graceful_timeout" => {
                    let v = global.expand(&e.value);
                    if let Some(s) = self.duration(e, sec, &v) {
                        set(self, &mut t, key, s);
                    }
                }
                "max_age" | "max_age_variance" => {
                    let v = local.expand(&e.value);
                    if let Some(s) = self.duration(e, sec, &v) {
                        set(self, &mut t, key, s);
                    }
                }
                "max_retry" | "priority" => {
                    let v = global.expand(&e.value);
                    match py_int(&v, 10) {
                        Some(n) => set(self, &mut t, key, Value::Integer(n)),
                        None => self.error(e, sec, format!("{v:?} is not an integer")),
                    }
                }
                "shell" | "send_hup" | "stop_children" | "close_child_stdin" | "close_child_stdout"
                | "close_child_stderr" | "use_sockets" | "singleton" | "copy_env" | "respawn" | "autostart" => {
                    let v = global.expand(&e.value);
                    if let Some(b) = self.boolean(e, sec, &v) {
                        match key {
                            "copy_env" => copy_env = b,
                            "singleton" => singleton = b,
                            _ => {}
                        }
                        set(self, &mut t, key, Value::Boolean(b));
                    }
                }
                "copy_path" => {
                    let v = global.expand(&e.value);
                    if let Some(b) = self.boolean(e, sec, &v) {
                        copy_path = Some((b, e));
                    }
                }
                "on_demand" => {
                    let v = global.expand(&e.value);
                    if self.boolean(e, sec, &v) == Some(true) {
                        self.error(e, sec, "on_demand is not supported by Ringmaster; the watcher would start at once");
                    }
                }
                "check_flapping" => {
                    let v = global.expand(&e.value);
                    self.boolean(e, sec, &v);
                    self.warn(
                        e,
                        sec,
                        format!("had no effect in Circus 0.19; Ringmaster's restart policy is set in [watchers.{name}.restart]"),
                    );
                }
                "stop_signal" => match Signum::parse(&e.value) {
                    // Circus parses the raw value, without substitution.
                    Ok(sig) => set(self, &mut t, key, Value::String(sig.name())),
                    Err(msg) => self.error(e, sec, msg),
                },
                "virtualenv" => self.error(
                    e,
                    sec,
                    "Circus's virtualenv loading (PATH and PYTHONPATH from a Python virtualenv) is not \
                     supported; set PATH/PYTHONPATH in [env:NAME] and copy_env = true instead",
                ),
                "virtualenv_py_ver" => self.warn(
                    e,
                    sec,
                    "only used with virtualenv, which Ringmaster does not support; ignored",
                ),
                "stdin_socket" => self.error(e, sec, "feeding a socket to a process's stdin is not supported"),
                "env" => self.warn(e, sec, format!("Circus ignores an env key in a watcher section; use [env:{name}]")),
                "name" => {}
                _ if key.starts_with("hooks.") => self.error(
                    e,
                    sec,
                    format!(
                        "hooks are Python callables run inside circusd; Ringmaster cannot run them \
                         (Ringmaster runs commands: see [watchers.{name}.hooks])"
                    ),
                ),
                _ if key.starts_with("stdout_stream") || key.starts_with("stderr_stream") => {
                    match key.split_once('.') {
                        Some((stream, opt)) if stream == "stdout_stream" || stream == "stderr_stream" => {
                            streams.entry(stream.to_string()).or_default().push((
                                opt.to_string(),
                                local.expand(&e.value),
                                e,
                            ));
                        }
                        _ => self.error(e, sec, "expected stdout_stream.<option> or stderr_stream.<option>"),
                    }
                }
                _ if key.starts_with("rlimit_") => {
                    if let Some((k, v)) = self.rlimit(e, sec) {
                        if let Some(sub) = k.strip_prefix("rlimits.") {
                            rlimits.insert(sub.to_string(), v);
                            self.record(&["watchers", name, "rlimits", sub], &e.location);
                        } else {
                            set(self, &mut t, &k, v);
                        }
                    }
                }
                _ if key.starts_with("flapping.") => self.warn(
                    e,
                    sec,
                    format!(
                        "the flapping plugin does not run under Ringmaster; its built-in restart policy replaces it \
                         (see [watchers.{name}.restart])"
                    ),
                ),
                _ => self.warn(e, sec, "unknown option ignored"),
            }
        }

        if !cmd_ok {
            if !w.entries.iter().any(|e| e.key == "cmd") {
                self.diag(
                    Severity::Error,
                    &w.section.location,
                    format!("[{sec}]: the watcher has no cmd"),
                );
            }
            return None;
        }

        match copy_path {
            Some((true, e)) if !copy_env => self.error(
                e,
                sec,
                "copy_path = true requires copy_env = true (Circus refused this watcher)",
            ),
            Some((true, e)) => self.warn(
                e,
                sec,
                "Circus set PYTHONPATH to circusd's own sys.path; Ringmaster leaves PYTHONPATH as inherited \
                 (set it in [env:NAME] if the program relied on it)",
            ),
            _ => {}
        }
        let header = w.section.location.clone();
        let default = |cx: &mut Self, t: &mut Table, k: &str, v: Value| {
            if !t.contains_key(k) {
                t.insert(k.into(), v);
                cx.record(&["watchers", name, k], &header);
            }
        };
        if !copy_env {
            // Circus gives such a watcher only [env] variables: no PATH from the daemon.
            default(self, &mut t, "copy_path", Value::Boolean(false));
        }
        if singleton {
            if let Some((n, e)) = numprocesses {
                if n > 1 {
                    self.error(e, sec, format!("a singleton watcher cannot have {n} processes"));
                    t.remove("numprocesses");
                }
            }
        }
        default(self, &mut t, "numprocesses", Value::Integer(1));
        default(self, &mut t, "graceful_timeout", Value::Integer(30));
        if t.get("max_age")
            .is_some_and(|v| v.as_integer() != Some(0) && v.as_float() != Some(0.0))
        {
            default(self, &mut t, "max_age_variance", Value::Integer(30));
        }

        for (stream, opts) in streams {
            if let Some(st) = self.stream(sec, name, &stream, &opts) {
                t.insert(stream, Value::Table(st));
            }
        }
        if !rlimits.is_empty() {
            t.insert("rlimits".into(), Value::Table(rlimits));
        }
        if !env_table.is_empty() {
            t.insert("env".into(), Value::Table(env_table));
        }
        Some(t)
    }

    /// `rlimit_X = N`: returns the model key (`rlimit_X` or `rlimits.X`) and value.
    fn rlimit(&mut self, e: &Entry, sec: &str) -> Option<(String, Value)> {
        let raw_name = &e.key["rlimit_".len()..];
        let mut lname = raw_name.to_lowercase();
        if lname == "ofile" {
            // Linux's RLIMIT_OFILE is RLIMIT_NOFILE.
            lname = "nofile".into();
        }
        let key = if NAMED_RLIMITS.contains(&lname.as_str()) {
            format!("rlimit_{lname}")
        } else if OTHER_RLIMITS.contains(&lname.as_str()) {
            format!("rlimits.{lname}")
        } else {
            self.error(
                e,
                sec,
                format!("RLIMIT_{} is not a resource limit", raw_name.to_uppercase()),
            );
            return None;
        };
        // Circus reads rlimits raw (no substitution); empty means RLIM_INFINITY.
        let v = e.value.as_str();
        if v.is_empty() {
            return Some((key, Value::String("unlimited".into())));
        }
        match py_int(v, 10) {
            Some(-1) => Some((key, Value::String("unlimited".into()))),
            Some(n) if n >= 0 => Some((key, Value::Integer(n))),
            _ => {
                self.error(
                    e,
                    sec,
                    format!("{v:?} is not a limit (a non-negative integer, or empty for unlimited)"),
                );
                None
            }
        }
    }

    fn stream(
        &mut self,
        sec: &str,
        watcher: &str,
        stream: &str,
        opts: &[(String, String, &Entry)],
    ) -> Option<Table> {
        let class_entry = opts.iter().find(|(k, _, _)| k == "class");
        let class: &str = match class_entry {
            Some((_, written, e)) => match builtin_stream_class(written.trim()) {
                Ok(c) => c,
                Err(msg) => {
                    self.error(e, sec, msg);
                    return None;
                }
            },
            None if opts.iter().any(|(k, _, _)| k == "filename") => "FileStream",
            None => {
                if let Some((_, _, e)) = opts.first() {
                    self.error(
                        e,
                        sec,
                        format!("{stream} needs {stream}.class or {stream}.filename (Circus: \"stream configuration invalid\")"),
                    );
                }
                return None;
            }
        };
        let is_file = class.ends_with("FileStream");
        if is_file && !opts.iter().any(|(k, v, _)| k == "filename" && !v.is_empty()) {
            if let Some((_, _, e)) = class_entry.or(opts.first()) {
                self.error(
                    e,
                    sec,
                    format!(
                        "{class} needs {stream}.filename (Circus would have written to a temporary file)"
                    ),
                );
            }
            return None;
        }
        if class == "TimedRotatingFileStream" && !opts.iter().any(|(k, _, _)| k == "rotate_when") {
            if let Some((_, _, e)) = class_entry {
                self.error(
                    e,
                    sec,
                    "TimedRotatingFileStream needs rotate_when (S, M, H, D, MIDNIGHT or W0-W6)",
                );
            }
            return None;
        }
        // What each Circus class actually reads; it swallows any other keyword.
        let used: &[&str] = match class {
            "FileStream" => &["filename", "max_bytes", "backup_count", "time_format"],
            "WatchedFileStream" => &["filename", "time_format"],
            "TimedRotatingFileStream" => &[
                "filename",
                "backup_count",
                "time_format",
                "rotate_when",
                "rotate_interval",
                "utc",
            ],
            "FancyStdoutStream" => &["color", "time_format"],
            _ => &[],
        };
        let mut t = Table::new();
        if class_entry.is_some() {
            t.insert("class".into(), Value::String(class.to_string()));
            if let Some((_, _, e)) = class_entry {
                self.record(&["watchers", watcher, stream, "class"], &e.location);
            }
        }
        for (k, v, e) in opts {
            let k = k.as_str();
            if k == "class" {
                continue;
            }
            if k == "refresh_time" {
                self.warn(e, sec, "deprecated in Circus and without effect; ignored");
                continue;
            }
            if !used.contains(&k) {
                let known = [
                    "filename",
                    "max_bytes",
                    "backup_count",
                    "time_format",
                    "rotate_when",
                    "rotate_interval",
                    "utc",
                    "color",
                ];
                if known.contains(&k) {
                    self.warn(e, sec, format!("ignored: Circus's {class} does not use {k}"));
                } else {
                    self.warn(
                        e,
                        sec,
                        "unknown stream option ignored (the Circus stream class ignored it too)",
                    );
                }
                continue;
            }
            let val = match k {
                "filename" | "time_format" => Value::String(v.clone()),
                "color" => {
                    let c = v.trim().to_lowercase();
                    let colors = ["red", "green", "yellow", "blue", "magenta", "cyan", "white"];
                    if !colors.contains(&c.as_str()) {
                        self.warn(
                            e,
                            sec,
                            format!("{v:?} is not one of {}; Circus picked a random colour, Ringmaster picks one per watcher", colors.join(", ")),
                        );
                        continue;
                    }
                    Value::String(c)
                }
                "max_bytes" | "backup_count" | "rotate_interval" => match py_int(v, 10) {
                    Some(n) if n >= 0 => Value::Integer(n),
                    _ => {
                        self.error(e, sec, format!("{v:?} is not a non-negative integer"));
                        continue;
                    }
                },
                "utc" => {
                    if !v.is_empty() && to_bool(v) == Some(false) {
                        self.warn(
                            e,
                            sec,
                            format!(
                                "Circus treats any non-empty utc value as true (bool({v:?})), so UTC is kept; \
                                 remove the line for local time"
                            ),
                        );
                    }
                    Value::Boolean(!v.is_empty())
                }
                "rotate_when" => {
                    let up = v.trim().to_uppercase();
                    let weekday = up.len() == 2
                        && up.starts_with('W')
                        && up[1..].chars().all(|c| ('0'..='6').contains(&c));
                    if !(matches!(up.as_str(), "S" | "M" | "H" | "D" | "MIDNIGHT") || weekday) {
                        self.error(e, sec, format!("{v:?} is not one of S, M, H, D, MIDNIGHT, W0-W6"));
                        continue;
                    }
                    if up != v.trim() {
                        self.warn(
                            e,
                            sec,
                            format!("Circus 0.19 accepted only upper case here; read as {up:?}"),
                        );
                    }
                    Value::String(up)
                }
                _ => continue,
            };
            self.record(&["watchers", watcher, stream, k], &e.location);
            t.insert(k.to_string(), val);
        }
        Some(t)
    }

    fn boolean(&mut self, e: &Entry, sec: &str, v: &str) -> Option<bool> {
        let b = to_bool(v);
        if b.is_none() {
            self.error(
                e,
                sec,
                format!("{v:?} is not a boolean (expected yes/true/on/1 or no/false/off/0)"),
            );
        }
        b
    }

    fn float(&mut self, e: &Entry, sec: &str, v: &str) -> Option<f64> {
        let f = py_float(v);
        if f.is_none() {
            self.error(e, sec, format!("{v:?} is not a number"));
        }
        f
    }

    fn duration(&mut self, e: &Entry, sec: &str, v: &str) -> Option<Value> {
        let f = self.float(e, sec, v)?;
        if !f.is_finite() || !(0.0..=1e12).contains(&f) {
            self.error(e, sec, format!("{v:?} is not a non-negative number of seconds"));
            return None;
        }
        Some(seconds_value(f))
    }
}

/// A `stdout_stream.class` value as one of Circus's built-in class names.
/// Circus resolves a dotted value as a Python import, which also reaches the
/// built-ins through `circus.stream`.
fn builtin_stream_class(written: &str) -> Result<&'static str, String> {
    let short = match written.strip_prefix("circus.stream.") {
        Some(rest) => rest.strip_prefix("file_stream.").unwrap_or(rest),
        None if written.contains('.') => {
            return Err(format!(
                "{written:?} is a Python stream class, which Ringmaster cannot load; use one of {}",
                STREAM_CLASSES.join(", ")
            ))
        }
        None => written,
    };
    if short == "QueueStream" {
        return Err(
            "QueueStream is an in-memory queue for Circus's tests; use StdoutStream or FileStream".into(),
        );
    }
    STREAM_CLASSES
        .iter()
        .copied()
        .find(|c| *c == short)
        .ok_or_else(|| {
            format!(
                "unknown stream class {written:?}; expected one of {} (case-sensitive, as in Circus)",
                STREAM_CLASSES.join(", ")
            )
        })
}

fn seconds_value(f: f64) -> Value {
    if f.fract() == 0.0 && f < 9.0e15 {
        Value::Integer(f as i64)
    } else {
        Value::Float(f)
    }
}

/// Circus's `to_bool`.
fn to_bool(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Python's `int(s, radix)` for radix 8 or 10: surrounding whitespace, a
/// sign, `_` between digits, and for octal an optional `0o` prefix.
fn py_int(s: &str, radix: u32) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let t = if radix == 8 {
        t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")).unwrap_or(t)
    } else {
        t
    };
    let digits = strip_underscores(t)?;
    let n = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -n } else { n })
}

/// Python's `float(s)`.
fn py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_lowercase();
    let bare = lower.trim_start_matches(['+', '-']);
    if matches!(bare, "inf" | "infinity" | "nan") {
        return lower.parse().ok();
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))
    {
        return None;
    }
    let cleaned = if t.contains('_') {
        // Python allows `_` only between two digits.
        let b = t.as_bytes();
        let ok = b.iter().enumerate().all(|(i, &c)| {
            c != b'_' || (i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
        });
        if !ok {
            return None;
        }
        t.replace('_', "")
    } else {
        t.to_string()
    };
    cleaned.parse().ok()
}

fn strip_underscores(t: &str) -> Option<String> {
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    if !t.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    Some(t.replace('_', ""))
}

fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn quote_key(k: &str) -> String {
    if is_bare_key(k) {
        return k.to_string();
    }
    let mut s = String::with_capacity(k.len() + 2);
    s.push('"');
    for c in k.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if c.is_control() => s.push_str(&format!("\\u{:04X}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A dotted TOML key path, quoting segments that are not bare keys.
pub fn key_path(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| quote_key(s))
        .collect::<Vec<_>>()
        .join(".")
}

/// Renders a converted table as a readable TOML document: `[ringmaster]`,
/// `[env]`, sockets, then watchers (sorted by name), with each table's
/// important keys first.
pub fn to_toml_string(table: &Table) -> String {
    render(table, &|_, _| None)
}

/// Keys shown first, in this order, in whichever table has them.
const KEY_ORDER: &[&str] = &[
    "endpoint",
    "pubsub_endpoint",
    "stats_endpoint",
    "statsd",
    "cmd",
    "args",
    "shell",
    "shell_args",
    "executable",
    "working_dir",
    "numprocesses",
    "singleton",
    "class",
    "filename",
    "host",
    "port",
    "path",
    "family",
    "type",
];

/// Orders the sockets or watchers of a group: (file index, line) when known.
type Rank<'a> = &'a dyn Fn(&str, &str) -> Option<(usize, usize)>;

fn render(table: &Table, rank: Rank<'_>) -> String {
    let mut out = String::new();
    // Top-level plain values must precede every header.
    write_values(&mut out, table);
    let mut top: Vec<&String> = table.keys().filter(|k| table[k.as_str()].is_table()).collect();
    let pos = |k: &str| {
        ["ringmaster", "env", "sockets", "watchers"]
            .iter()
            .position(|x| *x == k)
            .unwrap_or(usize::MAX)
    };
    top.sort_by_key(|k| (pos(k), (*k).clone()));
    for k in top {
        let Some(sub) = table[k.as_str()].as_table() else {
            continue;
        };
        if k == "sockets" || k == "watchers" {
            let mut names: Vec<&String> = sub.keys().collect();
            names.sort_by_key(|n| (rank(k, n).unwrap_or((usize::MAX, 0)), (*n).clone()));
            for n in names {
                match sub[n.as_str()].as_table() {
                    Some(t) => write_table(&mut out, &[k.as_str(), n.as_str()], t),
                    None => {
                        // Not produced by convert(); keep it rather than lose it.
                        write_table(
                            &mut out,
                            &[k.as_str()],
                            &Table::from_iter([(n.clone(), sub[n.as_str()].clone())]),
                        )
                    }
                }
            }
        } else {
            write_table(&mut out, &[k.as_str()], sub);
        }
    }
    out
}

fn write_values(out: &mut String, t: &Table) {
    let mut keys: Vec<&String> = t.keys().filter(|k| !t[k.as_str()].is_table()).collect();
    let pos = |k: &str| KEY_ORDER.iter().position(|x| *x == k).unwrap_or(usize::MAX);
    keys.sort_by_key(|k| (pos(k), (*k).clone()));
    for k in keys {
        out.push_str(&quote_key(k));
        out.push_str(" = ");
        out.push_str(&t[k.as_str()].to_string());
        out.push('\n');
    }
}

fn write_table(out: &mut String, path: &[&str], t: &Table) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push('[');
    out.push_str(&key_path(path));
    out.push_str("]\n");
    write_values(out, t);
    for (k, v) in t {
        if let Some(sub) = v.as_table() {
            let mut p = path.to_vec();
            p.push(k.as_str());
            write_table(out, &p, sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_numbers() {
        assert_eq!(py_int(" 12 ", 10), Some(12));
        assert_eq!(py_int("012", 10), Some(12));
        assert_eq!(py_int("1_000", 10), Some(1000));
        assert_eq!(py_int("-1", 10), Some(-1));
        assert_eq!(py_int("1__0", 10), None);
        assert_eq!(py_int("0x10", 10), None);
        assert_eq!(py_int("022", 8), Some(0o22));
        assert_eq!(py_int("0o22", 8), Some(0o22));
        assert_eq!(py_int("8", 8), None);
        assert_eq!(py_float("25.5"), Some(25.5));
        assert_eq!(py_float(" 1e1 "), Some(10.0));
        assert_eq!(py_float("1_0.5"), Some(10.5));
        assert!(py_float("inf").is_some_and(f64::is_infinite));
        assert_eq!(py_float("ten"), None);
        assert_eq!(py_float("1._5"), None);
    }

    #[test]
    fn booleans() {
        assert_eq!(to_bool(" YES "), Some(true));
        assert_eq!(to_bool("Off"), Some(false));
        assert_eq!(to_bool("maybe"), None);
        assert_eq!(to_bool(""), None);
    }

    #[test]
    fn key_paths() {
        assert_eq!(key_path(&["watchers", "web", "cmd"]), "watchers.web.cmd");
        assert_eq!(key_path(&["watchers", "a.b", "cmd"]), "watchers.\"a.b\".cmd");
        assert_eq!(key_path(&["watchers", "my app"]), "watchers.\"my app\"");
    }
}
