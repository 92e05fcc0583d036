//! Exec hooks: a command run at a point of a watcher's lifecycle, with the
//! watcher name, hook, pid and wid in its environment and a timeout. Each run
//! is published as `hook_success` or `hook_failure`. A failing
//! `before_start`, `before_spawn` or `before_signal` aborts that step (as
//! Circus); a failing `before_stop` does not — a stop always happens.

use crate::config::WatcherSpec;
use crate::events::Events;
use crate::reaper::{self, ExitStatus};
use serde_json::json;

/// Runs `hook` of `spec` if configured. Returns false only when it ran and failed.
pub async fn run(
    spec: &WatcherSpec,
    events: &Events,
    hook: &str,
    pid: Option<i32>,
    wid: Option<u32>,
) -> bool {
    let Some(h) = spec.hooks.get(hook) else {
        return true;
    };
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
                "hook_success",
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
                "hook_failure",
                json!({"name": hook, "time": now, "error": error, "pid": pid, "wid": wid}),
            );
            false
        }
    }
}
