//! `[watcher:NAME]` sections.

use super::values::py_int;
use super::{Cx, RawWatcher, Severity, NAMED_RLIMITS, OTHER_RLIMITS};
use crate::config::ini::{Entry, EnvMap, FoldedEnv};
use crate::config::signal::Signum;
use std::collections::BTreeMap;
use toml::{Table, Value};

impl Cx<'_> {
    pub(super) fn watcher(
        &mut self,
        w: &RawWatcher<'_>,
        global_env: &EnvMap,
        global: &FoldedEnv,
    ) -> Option<Table> {
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
}
