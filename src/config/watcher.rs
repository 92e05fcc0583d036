//! Validation of one `[watchers.NAME]` table into a [`WatcherSpec`].

use super::model::{self, Args, Ident, WatcherConfig};
use super::resolve::{
    check_env, command_problem, referenced_sockets, rlimit_resource, rlimit_value, Resolver,
};
use super::{HookSpec, ReadySpec, RestartPolicy, Rlimit, Seconds, Signum, WatcherSpec};
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) fn resolve_watcher(
    r: &mut Resolver<'_>,
    name: &str,
    wc: &WatcherConfig,
    global_env: &BTreeMap<String, String>,
    socket_names: &[String],
) -> Option<WatcherSpec> {
    let before = r.errors.len();
    let own_env = check_env(r, &wc.env, Some(name));
    let cmd = wc.cmd.get_ref().trim().to_string();
    if let Some(problem) = command_problem(&cmd, wc.shell) {
        r.err(wc.cmd.span(), format!("watcher {name}: {problem}"));
    }
    let numprocesses = wc.numprocesses.as_ref().map_or(1, |n| *n.get_ref());
    if let Some(n) = &wc.numprocesses {
        if *n.get_ref() > crate::watchers::MAX_PROCESSES {
            r.err(
                n.span(),
                format!(
                    "watcher {name}: numprocesses is {numprocesses}, more than the limit of {}",
                    crate::watchers::MAX_PROCESSES
                ),
            );
        }
    }
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
        match rlimit_resource(k) {
            None => r.err(
                v.span(),
                format!("watcher {name}: unknown rlimit {k:?} (expected e.g. nofile, nproc, core, as)"),
            ),
            Some((rn, res)) => rlimits.push(Rlimit {
                name: rn,
                resource: res,
                value: rlimit_value(v.get_ref()),
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
            rlimits.retain(|l: &Rlimit| l.resource != res);
            rlimits.push(Rlimit {
                name: rn,
                resource: res,
                value: rlimit_value(v.get_ref()),
            });
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
            .and_then(|c| c.multiplier.as_ref())
            .map_or(defaults.multiplier, |m| *m.get_ref()),
        jitter: rc
            .as_ref()
            .and_then(|c| c.jitter.as_ref())
            .map_or(defaults.jitter, |j| *j.get_ref()),
        max_retry: rc
            .as_ref()
            .and_then(|c| c.max_retry)
            .or(wc.max_retry)
            .unwrap_or(defaults.max_retry),
    };
    let at = |field: Option<&toml::Spanned<f64>>| field.map_or(wc.cmd.span(), |f| f.span());
    if !(restart.multiplier >= 1.0 && restart.multiplier <= 1000.0) {
        r.err(
            at(rc.as_ref().and_then(|c| c.multiplier.as_ref())),
            format!(
                "watcher {name}: restart.multiplier must be between 1 and 1000, not {}",
                restart.multiplier
            ),
        );
    }
    if !(0.0..=1.0).contains(&restart.jitter) {
        r.err(
            at(rc.as_ref().and_then(|c| c.jitter.as_ref())),
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
    if let Some(spanned) = &wc.ready {
        use model::ReadyKind as K;
        let table = spanned.span();
        let rc = spanned.get_ref();
        ready.kind = rc.kind;
        ready.address = rc.address.clone();
        ready.url = rc.url.as_ref().map(|u| u.get_ref().clone());
        ready.command = rc.command.clone();
        ready.pattern = rc.pattern.as_ref().map(|p| p.get_ref().clone());
        ready.interval = rc.interval.as_ref().map_or(ready.interval, |i| i.get_ref().get());
        ready.timeout = rc.timeout.map_or(ready.timeout, Seconds::get);
        ready.retries = rc.retries;
        ready.start_timeout = rc.start_timeout.map_or(ready.start_timeout, Seconds::get);
        ready.watchdog_timeout = rc.watchdog_timeout.as_ref().map(|w| w.get_ref().get());
        let missing = match rc.kind {
            K::Tcp if rc.address.is_none() => Some("address"),
            K::Http if rc.url.is_none() => Some("url"),
            K::Command if rc.command.is_none() => Some("command"),
            K::Log if rc.pattern.is_none() => Some("pattern"),
            _ => None,
        };
        if let Some(p) = &rc.pattern {
            if let Err(e) = regex::bytes::Regex::new(p.get_ref()) {
                r.err(
                    p.span(),
                    format!("watcher {name}: ready.pattern is not a valid regex: {e}"),
                );
            }
        }
        if let Some(i) = &rc.interval {
            if i.get_ref().is_zero() {
                r.err_help(
                    i.span(),
                    format!("watcher {name}: ready.interval cannot be 0 (the probe would never pause)"),
                    "leave it out for the default of 100ms",
                );
            }
        }
        if rc.kind == K::Log && wc.close_child_stdout && wc.close_child_stderr {
            r.err(
                table.clone(),
                format!("watcher {name}: ready type \"log\" needs the process's output, but close_child_stdout and close_child_stderr are both set"),
            );
        }
        if let Some(m) = missing {
            r.err(
                table.clone(),
                format!("watcher {name}: ready type {:?} needs `{m}`", rc.kind),
            );
        }
        if let Some(u) = &rc.url {
            if !u.get_ref().starts_with("http://") {
                r.err(
                    u.span(),
                    format!(
                        "watcher {name}: ready.url must start with http:// (got {:?})",
                        u.get_ref()
                    ),
                );
            }
        }
        if let Some(w) = &rc.watchdog_timeout {
            if rc.kind != K::Notify {
                r.err(
                    w.span(),
                    format!("watcher {name}: ready.watchdog_timeout needs type = \"notify\""),
                );
            }
        }
    }
    let max_surge = wc.max_surge.as_ref().map_or(1, |m| *m.get_ref());
    let max_unavailable = wc.max_unavailable.as_ref().map_or(0, |m| *m.get_ref());
    if max_surge == 0 && max_unavailable == 0 {
        let span = [&wc.max_surge, &wc.max_unavailable]
            .into_iter()
            .flatten()
            .next()
            .map_or(wc.cmd.span(), |m| m.span());
        r.err(
            span,
            format!("watcher {name}: max_surge and max_unavailable cannot both be 0"),
        );
    }
    let mut hooks = BTreeMap::new();
    if let Some(h) = &wc.hooks {
        use crate::hooks::Hook;
        let all = [
            (Hook::BeforeStart, &h.before_start),
            (Hook::AfterStart, &h.after_start),
            (Hook::BeforeSpawn, &h.before_spawn),
            (Hook::AfterSpawn, &h.after_spawn),
            (Hook::BeforeStop, &h.before_stop),
            (Hook::AfterStop, &h.after_stop),
            (Hook::BeforeSignal, &h.before_signal),
            (Hook::AfterSignal, &h.after_signal),
            (Hook::AfterReap, &h.after_reap),
        ];
        for (k, v) in all {
            if let Some(v) = v {
                let (cmd, timeout) = match v {
                    model::HookConfig::Cmd(c) => (c.clone(), None),
                    model::HookConfig::Full { cmd, timeout } => (cmd.clone(), *timeout),
                };
                hooks.insert(
                    k,
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
            if let Err(e) = sc.get_ref().validate(kind) {
                r.err(sc.span(), format!("watcher {name}: {kind}_stream: {e:#}"));
            }
        }
    }

    if r.errors.len() > before {
        return None;
    }
    let mut env = global_env.clone();
    env.extend(own_env);
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
        critical: wc.critical,
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
        stdout_stream: wc
            .stdout_stream
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default(),
        stderr_stream: wc
            .stderr_stream
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default(),
        history_lines: wc.history_lines,
    })
}
