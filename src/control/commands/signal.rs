//! `signal`: send a signal to a watcher's processes (one `pid` or all), to
//! their `children`, to one `childpid`, or `recursive`ly to every descendant.
use super::kill::signum;
use super::util::status_of;
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_int, prop_required_str, CommandError};
use serde_json::{Map, Value};

/// Direct children of `pid`, from /proc.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        if out.len() > 100_000 {
            break;
        }
        todo.extend(children(p));
        out.push(p);
    }
    out
}

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let sig = signum(&p, "signum")?.ok_or_else(|| CommandError::missing_property("signum"))?;
    let pid = prop_int(&p, "pid")?.map(|n| n as i32);
    // Circus reads `childpid`; its docs (and resource_watcher) say `child_pid`.
    let childpid = match prop_int(&p, "childpid")? {
        Some(c) => Some(c as i32),
        None => prop_int(&p, "child_pid")?.map(|c| c as i32),
    };
    let children_only = prop_bool(&p, "children")?.unwrap_or(false);
    let recursive = prop_bool(&p, "recursive")?.unwrap_or(false);
    let w = ctx.watcher(&name)?;
    let st = status_of(&w.addr).await?;
    let pids: Vec<i32> = st.processes.iter().filter_map(|p| p.pid).collect();
    let roots: Vec<i32> = match pid {
        Some(p) if !pids.contains(&p) => {
            return Err(CommandError::message(format!(
                "process {p} not found in '{name}'"
            )))
        }
        Some(p) => vec![p],
        None => pids,
    };
    let mut targets = Vec::new();
    if let Some(c) = childpid {
        let parent = pid.ok_or_else(|| CommandError::message("'childpid' needs 'pid'"))?;
        if !children(parent).contains(&c) {
            return Err(CommandError::message(format!(
                "child {c} not found in process {parent}"
            )));
        }
        targets.push(c);
    } else {
        for r in roots {
            if children_only {
                targets.extend(if recursive { descendants(r) } else { children(r) });
            } else {
                targets.push(r);
                if recursive {
                    targets.extend(descendants(r));
                }
            }
        }
    }
    let spec = super::util::spec_of(&w.addr).await?;
    let mut vetoed = Vec::new();
    for t in targets {
        if !crate::hooks::run(&spec, &ctx.events, "before_signal", Some(t), None).await {
            vetoed.push(t);
            continue;
        }
        // SAFETY: plain syscall; targets are this watcher's processes or their descendants.
        if unsafe { libc::kill(t, sig.0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(CommandError::os(format!("cannot signal {t}: {e}")));
            }
        }
        crate::hooks::run(&spec, &ctx.events, "after_signal", Some(t), None).await;
    }
    if !vetoed.is_empty() {
        return Err(CommandError::message(format!(
            "before_signal hook failed: not signalled: {vetoed:?}"
        )));
    }
    Ok(Map::new())
}
