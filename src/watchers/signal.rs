//! `signal` on a watcher: to its processes, their children, one child, or
//! recursively to every descendant, each wrapped in the before_signal /
//! after_signal hooks (a failing before_signal spares that target).

use super::actor::WatcherActor;
use crate::config::Signum;
use crate::hooks::Hook;
use actix::prelude::*;

/// Direct children of `pid`, from /proc.
pub(crate) fn children(pid: i32) -> Vec<i32> {
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

/// Every descendant of `pid` still attached to its tree (at most 100,000).
pub(crate) fn descendants(pid: i32) -> Vec<i32> {
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

/// Send `signal` to the watcher's processes (all, or `pid`), to their
/// `children` instead, to one `childpid` of `pid`, with `recursive` to every
/// descendant too.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), String>")]
pub struct SignalWatcher {
    pub signal: Signum,
    pub pid: Option<i32>,
    pub childpid: Option<i32>,
    pub children: bool,
    pub recursive: bool,
}

impl SignalWatcher {
    fn targets(&self, pids: Vec<i32>, name: &str) -> Result<Vec<i32>, String> {
        let roots = match self.pid {
            Some(p) if !pids.contains(&p) => return Err(format!("process {p} not found in '{name}'")),
            Some(p) => vec![p],
            None => pids,
        };
        if let Some(c) = self.childpid {
            let parent = self.pid.ok_or("'childpid' needs 'pid'")?;
            if !children(parent).contains(&c) {
                return Err(format!("child {c} not found in process {parent}"));
            }
            return Ok(vec![c]);
        }
        let mut targets = Vec::new();
        for r in roots {
            match (self.children, self.recursive) {
                (true, true) => targets.extend(descendants(r)),
                (true, false) => targets.extend(children(r)),
                (false, recursive) => {
                    targets.push(r);
                    if recursive {
                        targets.extend(descendants(r));
                    }
                }
            }
        }
        Ok(targets)
    }
}

impl Handler<SignalWatcher> for WatcherActor {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, m: SignalWatcher, _: &mut Self::Context) -> Self::Result {
        let pids = self.slots.running().into_iter().map(|(_, p)| p).collect();
        let targets = m.targets(pids, &self.spec.name);
        let (spec, events) = (self.spec.clone(), self.events.clone());
        Box::pin(async move {
            let mut vetoed = Vec::new();
            for t in targets? {
                if !crate::hooks::run(&spec, &events, Hook::BeforeSignal, Some(t), None).await {
                    vetoed.push(t);
                    continue;
                }
                // SAFETY: plain syscall; targets are this watcher's processes or their descendants.
                if unsafe { libc::kill(t, m.signal.0) } != 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        return Err(format!("cannot signal {t}: {e}"));
                    }
                }
                crate::hooks::run(&spec, &events, Hook::AfterSignal, Some(t), None).await;
            }
            if vetoed.is_empty() {
                Ok(())
            } else {
                Err(format!("before_signal hook failed: not signalled: {vetoed:?}"))
            }
        })
    }
}
