//! Config reload by diff (`reloadconfig`, SIGHUP): re-read the file, compare
//! it with what runs, and touch only what changed. The plan is computed and
//! applied here, by the root actor, in one step: new sockets are bound before
//! anything else, so an invalid config or an address in use changes nothing.
//!
//! - watchers added → created and started; removed → stopped, then dropped;
//! - only `numprocesses` changed → scaled in place;
//! - anything else changed (or one of its sockets changed) → rolled onto the
//!   new spec and fds (start new, wait ready, stop old);
//! - sockets added → bound; changed → bound anew, watchers rolled onto the new
//!   fd, then the old one closed; removed → closed after their watchers stopped.

use super::api::{ApiError, Done};
use super::root::Supervisor;
use crate::config::{self, Config, Format, SocketAddrSpec, SocketSpec, WatcherSpec};
use crate::events::WatcherEvent;
use crate::sockets::{self, SocketActor, StopSocket};
use crate::watchers::{Command, Outcome, UpdateSpec};
use actix::prelude::*;
use futures::future::{join_all, LocalBoxFuture};
use serde_json::json;
use std::fmt;
use std::os::fd::AsRawFd;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub sockets_added: Vec<String>,
    pub sockets_removed: Vec<String>,
    pub sockets_changed: Vec<String>,
    pub watchers_added: Vec<String>,
    pub watchers_removed: Vec<String>,
    /// Rolled onto the new spec.
    pub watchers_changed: Vec<String>,
    /// (name, from, to)
    pub watchers_scaled: Vec<(String, u32, u32)>,
    pub watchers_unchanged: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.sockets_added.is_empty()
            && self.sockets_removed.is_empty()
            && self.sockets_changed.is_empty()
            && self.watchers_added.is_empty()
            && self.watchers_removed.is_empty()
            && self.watchers_changed.is_empty()
            && self.watchers_scaled.is_empty()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sockets": {"added": self.sockets_added, "removed": self.sockets_removed, "changed": self.sockets_changed},
            "watchers": {
                "added": self.watchers_added, "removed": self.watchers_removed, "changed": self.watchers_changed,
                "scaled": self.watchers_scaled.iter().map(|(n, a, b)| serde_json::json!({"name": n, "from": a, "to": b})).collect::<Vec<_>>(),
                "unchanged": self.watchers_unchanged,
            },
        })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let scaled: Vec<String> = self
            .watchers_scaled
            .iter()
            .map(|(n, a, b)| format!("{n} {a}→{b}"))
            .collect();
        let lists: [(&str, &[String]); 8] = [
            ("sockets added", &self.sockets_added),
            ("sockets removed", &self.sockets_removed),
            ("sockets rebound", &self.sockets_changed),
            ("watchers added", &self.watchers_added),
            ("watchers removed", &self.watchers_removed),
            ("watchers rolled", &self.watchers_changed),
            ("watchers scaled", &scaled),
            ("unchanged", &self.watchers_unchanged),
        ];
        let parts: Vec<String> = lists
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}: {}", v.join(", ")))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

fn same_but_count(a: &WatcherSpec, b: &WatcherSpec) -> bool {
    let mut b2 = b.clone();
    b2.numprocesses = a.numprocesses;
    *a == b2
}

/// The address part of a socket: a change there needs a new bind.
pub fn same_address(a: &SocketSpec, b: &SocketSpec) -> bool {
    match (&a.addr, &b.addr) {
        (
            SocketAddrSpec::Inet {
                host: h1,
                port: p1,
                v6: v1,
            },
            SocketAddrSpec::Inet {
                host: h2,
                port: p2,
                v6: v2,
            },
        ) => h1 == h2 && p1 == p2 && v1 == v2 && *p1 != 0,
        (SocketAddrSpec::Unix { path: p1, .. }, SocketAddrSpec::Unix { path: p2, .. }) => p1 == p2,
        _ => false,
    }
}

pub fn plan(old: &Config, new: &Config) -> Plan {
    let mut p = Plan::default();
    for s in &new.sockets {
        match old.sockets.iter().find(|o| o.name == s.name) {
            None => p.sockets_added.push(s.name.clone()),
            Some(o) if o != s => p.sockets_changed.push(s.name.clone()),
            Some(_) => {}
        }
    }
    for o in &old.sockets {
        if !new.sockets.iter().any(|s| s.name == o.name) {
            p.sockets_removed.push(o.name.clone());
        }
    }
    for w in &new.watchers {
        match old.watchers.iter().find(|o| o.name == w.name) {
            None => p.watchers_added.push(w.name.clone()),
            Some(o) => {
                let socket_moved = w.sockets.iter().any(|s| p.sockets_changed.contains(s));
                if o == w && !socket_moved {
                    p.watchers_unchanged.push(w.name.clone());
                } else if same_but_count(o, w) && !socket_moved {
                    p.watchers_scaled
                        .push((w.name.clone(), o.numprocesses, w.numprocesses));
                } else {
                    p.watchers_changed.push(w.name.clone());
                }
            }
        }
    }
    for o in &old.watchers {
        if !new.watchers.iter().any(|w| w.name == o.name) {
            p.watchers_removed.push(o.name.clone());
        }
    }
    p
}

/// Re-read the config file and apply the difference. The reply carries the
/// plan at once; the handle yields the problems met while applying it
/// (a rollout that failed, an unwritable log file), empty when all went well.
#[derive(Message)]
#[rtype(result = "Result<(Plan, Done<Vec<String>>), ApiError>")]
pub struct ReloadConfig {
    pub dry_run: bool,
}

impl Handler<ReloadConfig> for Supervisor {
    type Result = MessageResult<ReloadConfig>;
    fn handle(&mut self, m: ReloadConfig, _: &mut Self::Context) -> Self::Result {
        let notifier = match &self.notifier {
            Some(n) if !m.dry_run && !self.stopping => n.clone(),
            _ => return MessageResult(self.reload(m.dry_run)),
        };
        // The service manager sees RELOADING=1 … READY=1 around the whole reload.
        notifier.reloading();
        let ready = self.announce_ready();
        MessageResult(match self.reload(false) {
            Ok((plan, done)) => Ok((
                plan,
                Done::spawn(async move {
                    let errors = done.wait().await.unwrap_or_default();
                    ready.await;
                    errors
                }),
            )),
            Err(e) => {
                actix::spawn(ready);
                Err(e)
            }
        })
    }
}

/// Adjusts a listening socket whose address did not change in place.
fn adjust_in_place(fd: i32, o: &SocketSpec, n: &SocketSpec) {
    if o.backlog != n.backlog {
        // SAFETY: listen() on our own listening socket only changes its backlog.
        unsafe { libc::listen(fd, i32::try_from(n.backlog).unwrap_or(i32::MAX)) };
    }
    if o.nodelay != n.nodelay {
        let v: libc::c_int = n.nodelay.into();
        // SAFETY: setsockopt with a valid int option value.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&v as *const libc::c_int).cast(),
                4,
            )
        };
    }
}

impl Supervisor {
    fn reload(&mut self, dry_run: bool) -> Result<(Plan, Done<Vec<String>>), ApiError> {
        if self.stopping {
            return Err(ApiError::ShuttingDown);
        }
        let path = self.config.borrow().path.clone();
        let new = config::load(&path, Some(Format::guess(&path))).map_err(|e| {
            ApiError::Invalid(format!(
                "invalid config, nothing changed: {}",
                config::error::OneLine(&e)
            ))
        })?;
        let old = self.config.borrow().clone();
        let plan = plan(&old, &new);
        if dry_run || plan.is_empty() {
            return Ok((plan, Done::ready(Vec::new())));
        }
        tracing::info!("reloading configuration: {plan}");

        // 1. Bind every new or changed socket first: a failure here changes nothing.
        let mut fresh = Vec::new();
        let mut in_place = Vec::new();
        for name in plan.sockets_added.iter().chain(&plan.sockets_changed) {
            let Some(spec) = new.sockets.iter().find(|s| &s.name == name) else {
                continue;
            };
            if let Some(o) = old
                .sockets
                .iter()
                .find(|o| &o.name == name && same_address(o, spec))
            {
                // The old workers still hold this address: adjust the socket in place.
                in_place.push((o.clone(), spec.clone()));
                continue;
            }
            let b = sockets::bind(spec)
                .map_err(|e| ApiError::Os(format!("cannot bind socket {name:?}, nothing changed: {e:#}")))?;
            fresh.push(b);
        }
        for (o, n) in &in_place {
            if let Some(info) = self.sockets.get(&n.name) {
                adjust_in_place(info.fd.as_raw_fd(), o, n);
            }
        }
        // 2. Register them; the replaced ones close once their watchers moved.
        let mut retired = Vec::new();
        for b in fresh {
            let (addr, info) = SocketActor::launch(b);
            tracing::info!(socket = %info.name, address = %info.local, "listening");
            retired.extend(self.sockets.insert(info, addr));
        }
        for name in &plan.sockets_removed {
            retired.extend(self.sockets.remove(name));
        }
        let infos = self.sockets.infos();
        *self.config.borrow_mut() = new.clone();

        // 3. Watchers: every command is queued now, in plan order.
        let mut errors = Vec::new();
        let mut work: Vec<LocalBoxFuture<'static, Option<String>>> = Vec::new();
        let find = |name: &String| new.watchers.iter().find(|w| &w.name == name);
        for name in &plan.watchers_added {
            let Some(spec) = find(name) else { continue };
            // Added at run time under the same name: it takes the file's spec.
            if let Some(w) = self.registry.get(name) {
                let r = w.addr.send(UpdateSpec {
                    spec: spec.clone(),
                    sockets: Some(infos.clone()),
                    logs: None,
                    roll: true,
                });
                work.push(Box::pin(async move { failure(r.await.ok()) }));
                continue;
            }
            match self.add_watcher(spec.clone()) {
                Ok(e) => {
                    self.events.watcher(
                        name,
                        WatcherEvent::Add,
                        json!({"time": crate::watchers::now_f64()}),
                    );
                    if e.autostart {
                        let r = e.addr.send(Command::Start);
                        work.push(Box::pin(async move { failure(r.await.ok()) }));
                    }
                }
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
        for (name, _, _) in &plan.watchers_scaled {
            if let (Some(w), Some(spec)) = (self.registry.get(name), find(name)) {
                // The new spec carries the new numprocesses: the watcher scales
                // to it and answers once the added processes exist.
                let r = w.addr.send(UpdateSpec {
                    spec: spec.clone(),
                    sockets: None,
                    logs: None,
                    roll: false,
                });
                work.push(Box::pin(async move { failure(r.await.ok()) }));
            }
        }
        for name in &plan.watchers_changed {
            let (Some(w), Some(spec)) = (self.registry.get(name), find(name)) else {
                continue;
            };
            self.registry.set_priority(name, spec.priority);
            // New log destinations: open them now; the old ones close once unused.
            let same_logs = old.watchers.iter().find(|o| &o.name == name).is_some_and(|o| {
                o.stdout_stream == spec.stdout_stream
                    && o.stderr_stream == spec.stderr_stream
                    && o.history_lines == spec.history_lines
            });
            let logs = if same_logs {
                None
            } else {
                let history = spec
                    .history_lines
                    .unwrap_or_else(|| self.hub.default_history_lines());
                match self
                    .hub
                    .add_watcher(&spec.name, &spec.stdout_stream, &spec.stderr_stream, history)
                {
                    Ok(l) => {
                        if let Some(old_logs) = self.registry.replace_logs(&w.name, l.clone()) {
                            actix::spawn(async move { old_logs.close().await });
                        }
                        Some(l)
                    }
                    Err(e) => {
                        errors.push(format!("{e:#}"));
                        None
                    }
                }
            };
            let r = w.addr.send(UpdateSpec {
                spec: spec.clone(),
                sockets: Some(infos.clone()),
                logs,
                roll: true,
            });
            work.push(Box::pin(async move { failure(r.await.ok()) }));
        }
        for name in &plan.watchers_removed {
            if let Some(gone) = self.remove_watcher(name, true) {
                work.push(Box::pin(async move {
                    gone.await;
                    None
                }));
            }
        }
        // 4. Sockets nobody uses any more close once the watchers moved off them.
        Ok((
            plan,
            Done::spawn(async move {
                errors.extend(join_all(work).await.into_iter().flatten());
                for addr in retired {
                    addr.do_send(StopSocket);
                }
                errors
            }),
        ))
    }
}

fn failure(o: Option<Outcome>) -> Option<String> {
    match o {
        None => Some("a watcher went away during the reload".into()),
        Some(o) => {
            let e = o.into_info().errors;
            (!e.is_empty()).then(|| e.join("; "))
        }
    }
}
