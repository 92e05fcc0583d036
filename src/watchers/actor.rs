//! The watcher actor: performs what its lifecycle table (`state.rs`)
//! decides, and feeds back the outcomes of the operations it runs.

use super::commands::Gate;
use super::slots::Slots;
use super::state::{Action, Event, Lifecycle, Outcome, Publish, Ticket, WatcherState};
use super::StartInfo;
use crate::config::{Signum, WatcherSpec};
use crate::events::{Events, WatcherEvent};
use crate::hooks::Hook;
use crate::processes::spawn::InheritedSocket;
use crate::processes::{DetachSlot, KillSlot, ProcessActor, SignalSlot, StartSlot, StopSlot, UpdateSlotSpec};
use crate::sockets::SocketInfo;
use crate::streams::WatcherLogs;
use actix::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::oneshot;

/// Mailboxes hold every command: a full one would let a later message
/// overtake an earlier one, and a stop must never be overtaken by a start.
const MAILBOX: usize = 1 << 16;

pub struct WatcherActor {
    pub(super) spec: Arc<WatcherSpec>,
    /// The spec the running processes were last started or rolled with: a
    /// failed rollout puts it back.
    pub(super) last_good: Arc<WatcherSpec>,
    /// Bumped by every change of the spec other than numprocesses.
    pub(super) spec_version: u64,
    /// Versions of `last_good` and of the spec the rollout in progress rolls onto.
    pub(super) last_good_version: u64,
    pub(super) rolling_to: Option<u64>,
    /// Slots a rollout in progress added: their failure is the rollout's, not the watcher's.
    pub(super) rollout_slots: std::collections::HashSet<u64>,
    pub(super) sockets: Arc<Vec<InheritedSocket>>,
    /// Keeps the daemon's socket fds open as long as a child may need them.
    pub(super) fds: Vec<Arc<OwnedFd>>,
    pub(super) slots: Slots,
    pub(super) numprocesses: u32,
    pub(super) life: Lifecycle,
    pub(super) events: Events,
    pub(super) logs: WatcherLogs,
    pub(super) waiters: HashMap<Ticket, oneshot::Sender<Outcome>>,
    pub(super) next_ticket: Ticket,
    /// Resolves once the slots added by the last `Scale` have spawned, for whoever asked for it.
    pub(super) scaled: Option<futures::future::LocalBoxFuture<'static, ()>>,
    /// The slots being added and started a few at a time (see `grow.rs`).
    pub(super) growing: Option<super::grow::Grow>,
    pub(super) grow_ids: u64,
    /// What the next operation waits for before it begins (see [`Sequenced`]).
    pub(super) gate: Option<Gate>,
    /// The gate of a sequenced command the table queued behind the operation in progress.
    pub(super) queued_gate: Option<Gate>,
    /// (wid, failures) of the slot that gave up, for the `failed` event.
    pub(super) last_failure: (u32, u32),
    /// A rollout across an upgrade (see `upgrade.rs`).
    pub(super) resume: super::upgrade::Resume,
}

pub(super) fn inherited(
    spec: &WatcherSpec,
    sockets: &[SocketInfo],
) -> (Vec<InheritedSocket>, Vec<Arc<OwnedFd>>) {
    let chosen: Vec<&SocketInfo> = spec
        .sockets
        .iter()
        .filter_map(|n| sockets.iter().find(|s| &s.name == n))
        .collect();
    (
        chosen
            .iter()
            .map(|s| InheritedSocket {
                name: s.name.clone(),
                fd: s.raw_fd,
            })
            .collect(),
        chosen.iter().map(|s| s.fd.clone()).collect(),
    )
}

pub fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl WatcherActor {
    pub fn new(spec: WatcherSpec, sockets: &[SocketInfo], events: Events, logs: WatcherLogs) -> Self {
        let (inh, fds) = inherited(&spec, sockets);
        let spec = Arc::new(spec);
        WatcherActor {
            numprocesses: spec.numprocesses,
            last_good: spec.clone(),
            spec: spec.clone(),
            spec_version: 0,
            last_good_version: 0,
            rolling_to: None,
            rollout_slots: Default::default(),
            sockets: Arc::new(inh),
            fds,
            slots: Slots::default(),
            life: Lifecycle::default(),
            events,
            logs,
            waiters: HashMap::new(),
            next_ticket: 0,
            scaled: None,
            growing: None,
            grow_ids: 0,
            gate: None,
            queued_gate: None,
            last_failure: (0, 0),
            resume: Default::default(),
        }
    }

    /// Starts the actor with a mailbox that never reorders commands.
    pub fn launch(self) -> Addr<WatcherActor> {
        WatcherActor::create(move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX);
            self
        })
    }

    pub(super) fn publish(&self, event: WatcherEvent, mut payload: serde_json::Value) {
        if let Some(o) = payload.as_object_mut() {
            o.insert("time".into(), json!(now_f64()));
        }
        self.events.watcher(&self.spec.name, event, payload);
    }

    pub(super) fn hook(&self, hook: Hook) -> impl std::future::Future<Output = bool> {
        let (spec, events) = (self.spec.clone(), self.events.clone());
        async move { crate::hooks::run(&spec, &events, hook, None, None).await }
    }

    /// A new live slot at the smallest free wid.
    pub(super) fn add_slot(&mut self, ctx: &mut Context<Self>) -> (u32, Addr<ProcessActor>) {
        let wid = self.slots.take_wid();
        let actor = ProcessActor::new(
            wid,
            self.spec.clone(),
            self.sockets.clone(),
            ctx.address().recipient(),
            self.events.clone(),
            self.logs.clone(),
        );
        let id = actor.slot_id;
        let addr = ProcessActor::create(move |c| {
            c.set_mailbox_capacity(MAILBOX);
            actor
        });
        self.slots.insert(wid, addr.clone(), id);
        (wid, addr)
    }

    /// Takes slot `wid` out and stops it; its wid is free once it is gone.
    pub(super) fn retire(&mut self, wid: u32) -> Option<ResponseActFuture<Self, ()>> {
        let addr = self.slots.retire(wid)?;
        let stop = addr.send(StopSlot);
        let fut = async move {
            let _ = stop.await;
        }
        .into_actor(self)
        .map(move |_, act: &mut Self, _| act.slots.retired(wid, &addr));
        Some(Box::pin(fut))
    }

    pub(super) fn state(&self) -> WatcherState {
        self.life.state
    }

    pub(super) fn ticket(&mut self) -> (Ticket, oneshot::Receiver<Outcome>) {
        self.next_ticket += 1;
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(self.next_ticket, tx);
        (self.next_ticket, rx)
    }

    /// Feeds a command to the table; resolves with its outcome.
    pub(super) fn command(
        &mut self,
        make: impl FnOnce(Ticket) -> Event,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Outcome> {
        let (t, rx) = self.ticket();
        self.feed(make(t), ctx);
        Box::pin(async move { rx.await.unwrap_or(Outcome::Canceled("the watcher went away")) })
    }

    /// Feeds an event to the lifecycle table and performs what it decides.
    pub(super) fn feed(&mut self, ev: Event, ctx: &mut Context<Self>) {
        let before = self.state();
        let rolled =
            matches!(&ev, Event::RolloutDone { op, info } if *op == self.life.op() && info.errors.is_empty());
        if rolled {
            if let Some(to) = self.rolling_to.take() {
                if to == self.spec_version {
                    self.last_good = self.spec.clone();
                }
                self.last_good_version = to;
            }
        }
        let actions = self.life.step(ev);
        for a in actions {
            self.perform(a, ctx);
        }
        let after = self.state();
        if before != after {
            tracing::info!(watcher = %self.spec.name, state = after.as_str(), "watcher state");
        }
    }

    pub(super) fn reply(&mut self, tickets: Vec<Ticket>, outcome: Outcome) {
        for t in tickets {
            if let Some(tx) = self.waiters.remove(&t) {
                let _ = tx.send(outcome.clone());
            }
        }
    }

    pub(super) fn perform(&mut self, a: Action, ctx: &mut Context<Self>) {
        match a {
            Action::RunStart { op } => {
                self.last_good = self.spec.clone();
                self.last_good_version = self.spec_version;
                self.after_gate(ctx, move |act, ctx| {
                    if act.life.op() == op {
                        let f = act.run_start(op);
                        ctx.spawn(f);
                    }
                });
            }
            Action::RunStop { op, hooks } => {
                self.after_gate(ctx, move |act, ctx| {
                    let f = act.run_stop(op, hooks);
                    ctx.spawn(f);
                });
            }
            Action::RunRollout { op, sequential } => {
                self.after_gate(ctx, move |act, ctx| {
                    if act.life.op() != op {
                        return;
                    }
                    let (surge, unavailable) = if sequential {
                        (0, 1)
                    } else {
                        (act.spec.max_surge, act.spec.max_unavailable)
                    };
                    act.rolling_to = Some(act.spec_version);
                    let mut olds = act.slots.running_ids();
                    act.resume.sequential = sequential;
                    if let Some(rolled) = act.resume.rolled.take() {
                        olds = act.resume_rollout(rolled, olds);
                    }
                    let f = act.rollout(op, olds, surge, unavailable, ctx);
                    ctx.spawn(f.map(move |info, act, ctx| act.feed(Event::RolloutDone { op, info }, ctx)));
                });
            }
            Action::Scale | Action::ScaleUp => {
                // Only waits: the starts go on without it.
                self.scaled = Some(self.scale_up(ctx));
                if a == Action::Scale {
                    self.scale_down(ctx);
                }
            }
            Action::Trim => self.scale_down(ctx),
            Action::KillAll => {
                self.end_grow();
                for a in self.slots.all_addrs() {
                    a.do_send(KillSlot);
                }
            }
            Action::Hup => {
                for s in self.slots.live.values().filter(|s| s.pid.is_some()) {
                    s.addr.do_send(SignalSlot {
                        signal: Signum(libc::SIGHUP),
                        group: false,
                    });
                }
            }
            Action::Forget => {
                for a in self.slots.all_addrs() {
                    a.do_send(DetachSlot);
                }
                self.slots = Slots::default();
                ctx.stop();
            }
            Action::RevertSpec => {
                // Unless a newer spec came meanwhile (its own rollout is queued).
                let to = self.rolling_to.take();
                if to == Some(self.spec_version) && self.last_good_version != self.spec_version {
                    tracing::warn!(watcher = %self.spec.name, "rollout failed: new processes use the previous spec again");
                    let mut prev = (*self.last_good).clone();
                    prev.numprocesses = self.numprocesses;
                    self.set_spec(Arc::new(prev));
                    self.last_good_version = self.spec_version;
                }
            }
            Action::Reply(tickets, outcome) => self.reply(tickets, outcome),
            Action::ReplyRunning(t) => {
                let kept = self.slots.running().into_iter().map(|(_, p)| p).collect();
                self.reply(
                    vec![t],
                    Outcome::Done(StartInfo {
                        kept,
                        ..Default::default()
                    }),
                );
            }
            Action::Publish(p) => {
                let (ev, payload) = match p {
                    Publish::Start => (WatcherEvent::Start, json!({})),
                    Publish::Stop => (WatcherEvent::Stop, json!({})),
                    Publish::Reload => (WatcherEvent::Reload, json!({})),
                    Publish::RolloutFailed => (WatcherEvent::RolloutFailed, json!({})),
                    Publish::Failed => {
                        let (wid, failures) = self.last_failure;
                        tracing::error!(watcher = %self.spec.name, failures, "watcher failed: its processes keep exiting; stopping them (start it again to retry)");
                        if self.spec.critical {
                            self.events
                                .critical_ended(&self.spec.name, format!("failed after {failures} failures"));
                        }
                        (WatcherEvent::Failed, json!({"wid": wid, "failures": failures}))
                    }
                };
                self.publish(ev, payload);
            }
        }
    }

    /// Runs `f` now, or once the gate of the command being handled opens.
    pub(super) fn after_gate(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        match self.gate.take().or_else(|| self.queued_gate.take()) {
            None => f(self, ctx),
            Some(g) => {
                ctx.spawn(g.0.into_actor(self).map(move |_, act, ctx| f(act, ctx)));
            }
        }
    }

    /// Uses `spec` for every slot's next spawn.
    pub(super) fn set_spec(&mut self, spec: Arc<WatcherSpec>) {
        self.spec_version += 1;
        self.spec = spec.clone();
        for s in self.slots.live.values() {
            s.addr.do_send(UpdateSlotSpec(
                spec.clone(),
                self.sockets.clone(),
                self.logs.clone(),
            ));
        }
    }

    /// Adds slots up to numprocesses and starts them: a few at a time (see
    /// `grow.rs`), or `warmup_delay` apart. Resolves once the processes
    /// started at once have been spawned.
    pub(super) fn scale_up(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> futures::future::LocalBoxFuture<'static, ()> {
        let warmup = self.spec.warmup_delay;
        if warmup.is_zero() {
            let done = self.grow_join(ctx);
            return Box::pin(async move {
                let _ = done.await;
            });
        }
        let op = self.life.op();
        let mut first = None;
        let mut k = 0u32;
        while (self.slots.live.len() as u32) < self.numprocesses {
            let (wid, addr) = self.add_slot(ctx);
            if k == 0 {
                first = Some(addr.send(StartSlot));
            } else {
                ctx.run_later(warmup * k, move |act, _| {
                    // Only if no other operation began meanwhile and the slot is still there.
                    if act.life.op() == op
                        && act.state().running()
                        && act.slots.live.get(&wid).is_some_and(|s| s.addr == addr)
                    {
                        addr.do_send(StartSlot);
                    }
                });
            }
            k += 1;
        }
        Box::pin(async move {
            if let Some(f) = first {
                let _ = f.await;
            }
        })
    }

    /// Stops and takes out the highest slots above numprocesses.
    pub(super) fn scale_down(&mut self, ctx: &mut Context<Self>) {
        while self.slots.live.len() as u32 > self.numprocesses {
            let Some(wid) = self.slots.live.keys().next_back().copied() else {
                break;
            };
            if let Some(f) = self.retire(wid) {
                ctx.spawn(f);
            }
        }
    }
}

impl Actor for WatcherActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        for a in self.slots.all_addrs() {
            a.do_send(KillSlot);
        }
    }
}
