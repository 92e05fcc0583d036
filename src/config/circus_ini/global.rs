//! The `[circus]`, `[socket:NAME]` and `[plugin:NAME]` sections.

use super::values::{py_int, seconds_value};
use super::{Cx, Severity, DEFAULT_ENDPOINT, DEFAULT_PUBSUB, DEFAULT_STATS, FLAPPING_CLASS};
use crate::config::ini::{Entry, FoldedEnv, Section};
use toml::{Table, Value};

impl Cx<'_> {
    pub(super) fn global_options(&mut self, env: &FoldedEnv) -> Table {
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

    pub(super) fn socket(
        &mut self,
        section: &Section,
        entries: &[&Entry],
        name: &str,
        env: &FoldedEnv,
    ) -> Table {
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

    pub(super) fn plugin(&mut self, section: &Section, entries: &[&Entry], env: &FoldedEnv) {
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
}
