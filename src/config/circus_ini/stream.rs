//! `stdout_stream.*` / `stderr_stream.*` options of a watcher.

use super::values::{py_int, to_bool};
use super::{Cx, STREAM_CLASSES};
use crate::config::ini::Entry;
use toml::{Table, Value};

impl Cx<'_> {
    pub(super) fn stream(
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
