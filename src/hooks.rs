//! Exec hooks: a command run at a point of a watcher's lifecycle, with the
//! watcher name, hook, pid and wid in its environment and a timeout. Each run
//! is published as `hook_success` or `hook_failure`. A failing
//! `before_start`, `before_spawn` or `before_signal` aborts that step (as
//! Circus); a failing `before_stop` does not — a stop always happens.

use crate::config::WatcherSpec;
use crate::events::{Events, WatcherEvent};
use crate::reaper::{self, ExitStatus};
use serde_json::json;

/// The points of a watcher's lifecycle where a hook can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    BeforeStart,
    AfterStart,
    BeforeSpawn,
    AfterSpawn,
    BeforeStop,
    AfterStop,
    BeforeSignal,
    AfterSignal,
    AfterReap,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Hook::BeforeStart,
        Hook::AfterStart,
        Hook::BeforeSpawn,
        Hook::AfterSpawn,
        Hook::BeforeStop,
        Hook::AfterStop,
        Hook::BeforeSignal,
        Hook::AfterSignal,
        Hook::AfterReap,
    ];

    /// The name used in configs, events and `RINGMASTER_HOOK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::BeforeStart => "before_start",
            Hook::AfterStart => "after_start",
            Hook::BeforeSpawn => "before_spawn",
            Hook::AfterSpawn => "after_spawn",
            Hook::BeforeStop => "before_stop",
            Hook::AfterStop => "after_stop",
            Hook::BeforeSignal => "before_signal",
            Hook::AfterSignal => "after_signal",
            Hook::AfterReap => "after_reap",
        }
    }
}

/// True when `spec` has a command for `hook`.
pub fn configured(spec: &WatcherSpec, hook: Hook) -> bool {
    spec.hooks.contains_key(&hook)
}

/// Runs `hook` of `spec` if configured. Returns false only when it ran and failed.
pub async fn run(
    spec: &WatcherSpec,
    events: &Events,
    hook: Hook,
    pid: Option<i32>,
    wid: Option<u32>,
) -> bool {
    let Some(h) = spec.hooks.get(&hook) else {
        return true;
    };
    let hook = hook.as_str();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&h.cmd)
        .stdin(std::process::Stdio::null())
        .env("RINGMASTER_WATCHER", &spec.name)
        .env("RINGMASTER_HOOK", hook);
    if let Some(p) = pid {
        cmd.env("RINGMASTER_PID", p.to_string());
    }
    if let Some(w) = wid {
        cmd.env("RINGMASTER_WID", w.to_string());
    }
    if let Some(d) = &spec.working_dir {
        cmd.current_dir(d);
    }
    let res = reaper::run_command(&mut cmd, h.timeout).await;
    let now = crate::watchers::now_f64();
    match res {
        Ok(ExitStatus::Code(0)) => {
            tracing::info!(watcher = %spec.name, hook, "hook succeeded");
            events.watcher(
                &spec.name,
                WatcherEvent::HookSuccess,
                json!({"name": hook, "time": now, "pid": pid, "wid": wid}),
            );
            true
        }
        other => {
            let error = match other {
                Ok(st) => st.to_string(),
                Err(e) => e,
            };
            tracing::warn!(watcher = %spec.name, hook, %error, "hook failed");
            events.watcher(
                &spec.name,
                WatcherEvent::HookFailure,
                json!({"name": hook, "time": now, "error": error, "pid": pid, "wid": wid}),
            );
            false
        }
    }
}
