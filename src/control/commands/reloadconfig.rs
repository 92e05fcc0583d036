//! `reloadconfig` (and SIGHUP, and `ringmaster reload-config`): re-read the
//! config file and apply only what changed (see `crate::reload`). With
//! `dry_run`, only the plan is returned. An invalid file changes nothing and
//! the reply names the file, line and key.
use super::util::one;
use super::Reply;
use crate::arbiter::{new_watcher, socket_infos, StopSocket};
use crate::config::{self, Format};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, CommandError};
use crate::reload::{plan, same_address, Plan};
use crate::sockets::{self, GetSocketInfo, SocketActor};
use crate::watchers::{StartWatcher, StopWatcher, UpdateSpec};
use actix::Actor;
use futures::future::join_all;
use serde_json::{json, Map, Value};
use std::os::fd::AsRawFd;

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let dry_run = prop_bool(&p, "dry_run")?.unwrap_or(false);
    let _waiting = prop_bool(&p, "waiting")?;
    let plan = reload_config(ctx, dry_run).await?;
    let mut m = one("plan", plan.to_json());
    m.insert("summary".into(), json!(plan.to_string()));
    Ok(m)
}

/// Re-reads the config and applies the difference; returns the plan.
pub async fn reload_config(ctx: Ctx, dry_run: bool) -> Result<Plan, CommandError> {
    let path = ctx.config.borrow().path.clone();
    let new = config::load(&path, Some(Format::guess(&path))).map_err(|e| {
        CommandError::message(format!(
            "invalid config, nothing changed: {}",
            config::error::OneLine(&e)
        ))
    })?;
    let old = ctx.config.borrow().clone();
    let plan = plan(&old, &new);
    if dry_run || plan.is_empty() {
        return Ok(plan);
    }
    tracing::info!("reloading configuration: {plan}");

    // 1. Bind every new or changed socket first: a failure here changes nothing.
    let mut fresh = Vec::new();
    let mut in_place = Vec::new();
    for name in plan.sockets_added.iter().chain(&plan.sockets_changed) {
        let Some(spec) = new.sockets.iter().find(|s| &s.name == name) else {
            continue;
        };
        let old_spec = old.sockets.iter().find(|s| &s.name == name);
        if let Some(o) = old_spec.filter(|o| same_address(o, spec)) {
            // The old workers still hold this address: adjust the socket in place.
            in_place.push((o.clone(), spec.clone()));
            continue;
        }
        let b = sockets::bind(spec)
            .map_err(|e| CommandError::os(format!("cannot bind socket {name:?}, nothing changed: {e:#}")))?;
        fresh.push(b);
    }
    for (o, n) in &in_place {
        if let Some((_, info)) = ctx.sockets.borrow().get(&n.name) {
            let fd = info.fd.as_raw_fd();
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
    }
    // 2. Register them; keep the replaced ones until their watchers moved.
    let mut retired = Vec::new();
    for b in fresh {
        let name = b.spec.name.clone();
        let addr = SocketActor::new(b).start();
        let info = addr
            .send(GetSocketInfo)
            .await
            .map_err(|e| CommandError::command(e.to_string()))?;
        tracing::info!(socket = %name, address = %info.local, "listening");
        if let Some(old) = ctx.sockets.borrow_mut().insert(name, (addr, info)) {
            retired.push(old.0);
        }
    }
    let infos = socket_infos(&ctx.sockets);
    *ctx.config.borrow_mut() = new.clone();

    // 3. Watchers.
    let mut errors = Vec::new();
    let mut work: Vec<futures::future::LocalBoxFuture<'static, ()>> = Vec::new();
    for name in &plan.watchers_added {
        if let Some(spec) = new.watchers.iter().find(|w| &w.name == name) {
            let e = match new_watcher(spec.clone(), &infos, &ctx.events, &ctx.hub) {
                Ok(e) => e,
                Err(err) => {
                    errors.push(format!("{err:#}"));
                    continue;
                }
            };
            ctx.registry.borrow_mut().insert(e.name.clone(), e.clone());
            ctx.events
                .watcher(name, "add", json!({"time": crate::watchers::now_f64()}));
            if e.autostart {
                work.push(Box::pin(async move {
                    let _ = e.addr.send(StartWatcher).await;
                }));
            }
        }
    }
    let mut scaled = Vec::new();
    for (name, _, to) in &plan.watchers_scaled {
        if let (Ok(w), Some(spec)) = (ctx.watcher(name), new.watchers.iter().find(|w| &w.name == name)) {
            // The new spec carries the new numprocesses: the watcher scales
            // to it and replies once the added processes exist.
            debug_assert_eq!(spec.numprocesses, *to);
            scaled.push(w.addr.send(UpdateSpec {
                spec: spec.clone(),
                sockets: None,
                logs: None,
                roll: false,
            }));
        }
    }
    // Replies once the added processes exist (their pids show in `list`).
    join_all(scaled).await;
    let mut rolls = Vec::new();
    for name in &plan.watchers_changed {
        if let (Ok(w), Some(spec)) = (ctx.watcher(name), new.watchers.iter().find(|w| &w.name == name)) {
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
                    .unwrap_or_else(|| ctx.hub.default_history_lines());
                match ctx
                    .hub
                    .add_watcher(&spec.name, &spec.stdout_stream, &spec.stderr_stream, history)
                {
                    Ok(l) => {
                        if let Some(e) = ctx.registry.borrow_mut().get_mut(&w.name) {
                            let old_logs = std::mem::replace(&mut e.logs, l.clone());
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
            let msg = UpdateSpec {
                spec: spec.clone(),
                sockets: Some(infos.clone()),
                logs,
                roll: true,
            };
            rolls.push(async move { w.addr.send(msg).await });
        }
    }
    for name in &plan.watchers_removed {
        let removed = ctx.registry.borrow_mut().remove(&name.to_lowercase());
        if let Some(w) = removed {
            ctx.events
                .watcher(name, "remove", json!({"time": crate::watchers::now_f64()}));
            work.push(Box::pin(async move {
                let _ = w.addr.send(StopWatcher).await;
                w.logs.close().await;
            }));
        }
    }
    for r in join_all(rolls).await {
        match r {
            Ok(info) => errors.extend(info.errors),
            Err(e) => errors.push(e.to_string()),
        }
    }
    join_all(work).await;

    // 4. Close sockets nobody uses any more.
    for name in &plan.sockets_removed {
        let gone = ctx.sockets.borrow_mut().remove(name);
        if let Some((addr, _)) = gone {
            retired.push(addr);
        }
    }
    for addr in retired {
        addr.do_send(StopSocket);
    }
    if !errors.is_empty() {
        return Err(CommandError::bad_msg_data(format!(
            "configuration applied, but: {}",
            errors.join("; ")
        )));
    }
    Ok(plan)
}
