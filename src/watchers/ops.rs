//! The long operations a watcher runs for its lifecycle table: start, stop
//! and rolling replacement. Each is stamped with the operation number it was
//! begun with; every step that adds or removes a slot goes back through the
//! actor and is refused once another operation has begun, so a cancelled
//! start or rollout can never add a process after a stop.

use super::actor::WatcherActor;
use super::state::Event;
use super::StartInfo;
use crate::config::model::ReadyKind;
use crate::events::WatcherEvent;
use crate::hooks::Hook;
use crate::processes::{ProcessActor, StartSlot, StopSlot, WaitReady};
use actix::prelude::*;
use futures::future::join_all;
use serde_json::json;

type Op<T> = ResponseActFuture<WatcherActor, T>;

fn collect(info: &mut StartInfo, results: Vec<Result<Result<i32, String>, MailboxError>>) {
    for r in results {
        match r {
            Ok(Ok(pid)) => info.started.push(pid),
            Ok(Err(e)) => info.errors.push(e),
            Err(e) => info.errors.push(e.to_string()),
        }
    }
}

impl WatcherActor {
    /// before_start, then every slot up to numprocesses is started; done
    /// when each process is ready or failed readiness, after after_start.
    pub(super) fn run_start(&mut self, op: u64) -> Op<()> {
        let before = self.hook(Hook::BeforeStart);
        Box::pin(before.into_actor(self).then(move |ok, act, ctx| {
            if act.life.op() != op {
                return Box::pin(fut::ready(())) as Op<()>;
            }
            if !ok {
                let info = StartInfo {
                    errors: vec!["before_start hook failed".into()],
                    ..Default::default()
                };
                act.feed(
                    Event::StartDone {
                        op,
                        info,
                        aborted: true,
                    },
                    ctx,
                );
                return Box::pin(fut::ready(()));
            }
            // A scale sent while stopped: drop the slots above numprocesses.
            while act.slots.live.len() as u32 > act.numprocesses {
                let Some(wid) = act.slots.live.keys().next_back().copied() else {
                    break;
                };
                if let Some(f) = act.retire(wid) {
                    ctx.spawn(f);
                }
            }
            let kept: Vec<i32> = act.slots.running().into_iter().map(|(_, p)| p).collect();
            // Circus's warmup: one process at a time, `warmup_delay` apart
            // (readiness "delay" waits that long); other readiness kinds start
            // all at once, a window at a time (see `grow.rs`).
            let sequential = act.spec.ready.kind == ReadyKind::Delay && !act.spec.warmup_delay.is_zero();
            let work = if sequential {
                while (act.slots.live.len() as u32) < act.numprocesses {
                    act.add_slot(ctx);
                }
                let to_start: Vec<(u32, Addr<ProcessActor>)> = act
                    .slots
                    .live
                    .iter()
                    .filter(|(_, s)| s.pid.is_none())
                    .map(|(w, s)| (*w, s.addr.clone()))
                    .collect();
                let me = ctx.address();
                Box::pin(async move {
                    let mut info = StartInfo {
                        kept,
                        ..Default::default()
                    };
                    for (wid, a) in &to_start {
                        match me.send(StartIfCurrent { op, wid: *wid }).await {
                            Ok(true) => {}
                            _ => break,
                        }
                        collect(&mut info, vec![a.send(WaitReady).await]);
                    }
                    info
                }) as futures::future::LocalBoxFuture<'static, StartInfo>
            } else {
                let idle = act
                    .slots
                    .live
                    .values()
                    .filter(|s| s.pid.is_none())
                    .map(|s| s.addr.clone())
                    .collect();
                let started = act.grow_start(op, idle, ctx);
                Box::pin(async move {
                    let mut info = StartInfo {
                        kept,
                        ..Default::default()
                    };
                    let started = started.await.unwrap_or_default();
                    collect(
                        &mut info,
                        join_all(started.iter().map(|a| a.send(WaitReady))).await,
                    );
                    info
                })
            };
            Box::pin(work.into_actor(act).then(move |info, act, _| {
                // A start cancelled meanwhile runs no after_start (its stop ran after_stop).
                let after = (act.life.op() == op).then(|| act.hook(Hook::AfterStart));
                async move {
                    if let Some(a) = after {
                        a.await;
                    }
                }
                .into_actor(act)
                .map(move |_, act, ctx| {
                    act.feed(
                        Event::StartDone {
                            op,
                            info,
                            aborted: false,
                        },
                        ctx,
                    )
                })
            }))
        }))
    }

    /// before_stop (with `hooks`), then every slot (live or retiring) is
    /// stopped; done when all are gone, after after_stop.
    pub(super) fn run_stop(&mut self, op: u64, hooks: bool) -> Op<()> {
        let pids: Vec<i32> = self.slots.running().into_iter().map(|(_, p)| p).collect();
        let before = hooks.then(|| self.hook(Hook::BeforeStop));
        Box::pin(
            async move {
                if let Some(b) = before {
                    b.await;
                }
            }
            .into_actor(self)
            .then(move |_, act, _| {
                let stops: Vec<_> = act.slots.all_addrs().iter().map(|a| a.send(StopSlot)).collect();
                async move {
                    join_all(stops).await;
                }
                .into_actor(act)
            })
            .then(move |_, act, _| {
                let after = hooks.then(|| act.hook(Hook::AfterStop));
                async move {
                    if let Some(a) = after {
                        a.await;
                    }
                }
                .into_actor(act)
            })
            .map(move |_, act, ctx| act.feed(Event::StopDone { op, pids }, ctx)),
        )
    }

    /// Replaces `olds` without dropping below the target: start a new process,
    /// wait until it is ready, then stop an old one gracefully, `max_surge` /
    /// `max_unavailable` at a time. A new process that fails readiness stops
    /// the rollout; the old ones keep serving.
    pub(super) fn rollout(
        &mut self,
        op: u64,
        olds: Vec<(u32, u64, i32)>,
        surge: u32,
        unavailable: u32,
        ctx: &mut Context<Self>,
    ) -> Op<StartInfo> {
        let me = ctx.address();
        let name = self.spec.name.clone();
        let first = self.resume.first.take();
        let fut = async move {
            let mut info = StartInfo::default();
            if let Some(first) = first {
                // Resumed after an upgrade (see `upgrade.rs`).
                collect(
                    &mut info,
                    join_all(first.ready.iter().map(|a| a.send(WaitReady))).await,
                );
                if !info.errors.is_empty() {
                    let reason = info.errors.join("; ");
                    info.errors = vec![format!("rollout of {name} stopped, old processes kept: {reason}")];
                    return info;
                }
                for (wid, id, pid) in first.replaced {
                    if let Ok(Some(gone)) = me.send(RemoveSlot { op, wid, id }).await {
                        let _ = gone.await;
                    }
                    info.stopped.push(pid);
                }
            }
            let batch = (surge + unavailable).max(1) as usize;
            let mut draining = Vec::new();
            for chunk in olds.chunks(batch) {
                let first = (unavailable as usize).min(chunk.len());
                for (wid, id, pid) in &chunk[..first] {
                    match me
                        .send(RemoveSlot {
                            op,
                            wid: *wid,
                            id: *id,
                        })
                        .await
                    {
                        Ok(Some(gone)) => {
                            let _ = gone.await;
                        }
                        _ => {
                            info.errors.push(format!("rollout of {name} canceled"));
                            return info;
                        }
                    }
                    info.stopped.push(*pid);
                }
                let mut news = Vec::new();
                for _ in 0..chunk.len() {
                    match me.send(AddSlot { op }).await {
                        Ok(Some(n)) => news.push(n),
                        _ => {
                            info.errors.push(format!("rollout of {name} canceled"));
                            return info;
                        }
                    }
                }
                let ready = join_all(news.iter().map(|(_, _, a)| a.send(WaitReady))).await;
                let before = info.errors.len();
                collect(&mut info, ready);
                if info.errors.len() > before {
                    let reason = info.errors.split_off(before).join("; ");
                    tracing::error!(watcher = %name, %reason, "rollout stopped: a new process is not ready; keeping the old ones");
                    for (wid, id, _) in &news {
                        let _ = me
                            .send(RemoveSlot {
                                op,
                                wid: *wid,
                                id: *id,
                            })
                            .await;
                    }
                    info.errors
                        .push(format!("rollout of {name} stopped, old processes kept: {reason}"));
                    break;
                }
                for (wid, id, pid) in &chunk[first..] {
                    draining.push(me.send(RemoveSlot {
                        op,
                        wid: *wid,
                        id: *id,
                    }));
                    info.stopped.push(*pid);
                }
            }
            for d in join_all(draining).await {
                if let Ok(Some(done)) = d {
                    let _ = done.await;
                }
            }
            info
        };
        Box::pin(fut.into_actor(self).map(move |info, act, _| {
            act.rollout_slots.clear();
            // A rollout cancelled by a later command did not fail.
            if !info.errors.is_empty() && act.life.op() == op {
                act.publish(
                    WatcherEvent::RolloutFailed,
                    json!({"reason": info.errors.join("; ")}),
                );
            }
            info
        }))
    }
}

/// Internal: start slot `wid` if operation `op` is still the current one.
#[derive(Message)]
#[rtype(result = "bool")]
struct StartIfCurrent {
    op: u64,
    wid: u32,
}

impl Handler<StartIfCurrent> for WatcherActor {
    type Result = bool;
    fn handle(&mut self, m: StartIfCurrent, _: &mut Self::Context) -> bool {
        let Some(s) = self.slots.live.get(&m.wid) else {
            return false;
        };
        if self.life.op() != m.op {
            return false;
        }
        s.addr.do_send(StartSlot);
        true
    }
}

/// Internal: a new slot for a rollout, started at once; refused once
/// another operation has begun.
#[derive(Message)]
#[rtype(result = "Option<(u32, u64, Addr<ProcessActor>)>")]
struct AddSlot {
    op: u64,
}

impl Handler<AddSlot> for WatcherActor {
    type Result = Option<(u32, u64, Addr<ProcessActor>)>;
    fn handle(&mut self, m: AddSlot, ctx: &mut Self::Context) -> Self::Result {
        if self.life.op() != m.op || !self.life.state.running() {
            return None;
        }
        let (wid, addr) = self.add_slot(ctx);
        let id = self.slots.live.get(&wid).map_or(0, |s| s.id);
        self.rollout_slots.insert(id);
        addr.do_send(StartSlot);
        Some((wid, id, addr))
    }
}

/// Internal: stop a slot gracefully and take it out; the reply carries a
/// receiver that resolves when it is gone. Refused once another operation
/// has begun (the wid may belong to a new slot by then).
#[derive(Message)]
#[rtype(result = "Option<tokio::sync::oneshot::Receiver<()>>")]
struct RemoveSlot {
    op: u64,
    wid: u32,
    /// The slot actor meant: the wid may have been freed and reused since.
    id: u64,
}

impl Handler<RemoveSlot> for WatcherActor {
    type Result = Option<tokio::sync::oneshot::Receiver<()>>;
    fn handle(&mut self, m: RemoveSlot, ctx: &mut Self::Context) -> Self::Result {
        if self.life.op() != m.op {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.slots.live.get(&m.wid).is_none_or(|s| s.id != m.id) {
            let _ = tx.send(());
            return Some(rx);
        }
        match self.retire(m.wid) {
            Some(f) => {
                ctx.spawn(f.map(move |_, _, _| {
                    let _ = tx.send(());
                }));
            }
            None => {
                let _ = tx.send(());
            }
        }
        Some(rx)
    }
}
