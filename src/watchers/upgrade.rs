//! A watcher across an upgrade: its snapshot (the watcher and all its slots
//! frozen) and its restoration in the next image with the slots' processes
//! adopted. What was in progress is begun again: a rollout as a new rolling
//! replacement, a stop as a new stop.

use super::actor::{inherited, WatcherActor};
use super::state::{RestartHow, WatcherState};
use super::Command;
use crate::config::WatcherSpec;
use crate::events::Events;
use crate::processes::{FreezeSlot, ProcessActor};
use crate::sockets::SocketInfo;
use crate::streams::WatcherLogs;
use crate::upgrade::snapshot::{SlotMode, SlotSnap, WatcherMode, WatcherSnap};
use actix::prelude::*;
use futures::future::{join_all, Shared};
use std::os::fd::OwnedFd;
use tokio::sync::oneshot;

/// Upgrade: answer the watcher's state with every slot's, then do nothing
/// until `thaw` resolves (or the exec ends this image).
#[derive(Message)]
#[rtype(result = "Result<WatcherSnap, String>")]
pub(crate) struct FreezeWatcher {
    pub thaw: Shared<oneshot::Receiver<()>>,
}

impl Handler<FreezeWatcher> for WatcherActor {
    type Result = ResponseFuture<Result<WatcherSnap, String>>;

    fn handle(&mut self, m: FreezeWatcher, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let live: Vec<_> = self.slots.live.values().map(|s| s.addr.clone()).collect();
        let retiring: Vec<_> = self.slots.retiring.values().cloned().collect();
        let freeze = |addrs: Vec<Addr<ProcessActor>>, thaw: &Shared<oneshot::Receiver<()>>| {
            join_all(
                addrs
                    .into_iter()
                    .map(|a| a.send(FreezeSlot { thaw: thaw.clone() })),
            )
        };
        let (l, r) = (freeze(live, &m.thaw), freeze(retiring, &m.thaw));
        let thaw = m.thaw;
        // Waited on: the watcher handles nothing else meanwhile (its slots do).
        ctx.wait(
            async move { (l.await, r.await) }
                .into_actor(self)
                .map(move |(l, r), act, ctx| {
                    let all =
                        |v: Vec<Result<SlotSnap, MailboxError>>| v.into_iter().collect::<Result<Vec<_>, _>>();
                    let snap = match (all(l), all(r)) {
                        (Ok(slots), Ok(retiring)) => Ok(WatcherSnap {
                            name: act.spec.name.clone(),
                            mode: mode(act.life.state, act.rolling_to.is_some()),
                            numprocesses: act.numprocesses,
                            slots,
                            retiring,
                            // Taken by the root once the captures stopped reading.
                            history: Vec::new(),
                        }),
                        (Err(e), _) | (_, Err(e)) => {
                            Err(format!("watcher {}: a slot did not answer: {e}", act.spec.name))
                        }
                    };
                    let _ = tx.send(snap);
                    ctx.wait(
                        async move {
                            let _ = thaw.await;
                        }
                        .into_actor(act),
                    );
                }),
        );
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err("the watcher went away".into())) })
    }
}

fn mode(s: WatcherState, rolling: bool) -> WatcherMode {
    match s {
        WatcherState::Reloading => WatcherMode::Rolling,
        WatcherState::Starting | WatcherState::Active if rolling => WatcherMode::Rolling,
        WatcherState::Starting | WatcherState::Active => WatcherMode::Active,
        WatcherState::Stopping { failed: false } => WatcherMode::Stopping,
        WatcherState::Stopping { failed: true } | WatcherState::Failed => WatcherMode::Failed,
        WatcherState::Stopped | WatcherState::Removed => WatcherMode::Stopped,
    }
}

/// The inherited fds of one slot (stdout, stderr), already taken by the caller.
pub(crate) type SlotFds = [Option<OwnedFd>; 2];

impl WatcherActor {
    /// Starts the watcher of `snap` in the next image, its slots restored.
    pub(crate) fn launch_restored(
        spec: WatcherSpec,
        sockets: &[SocketInfo],
        events: Events,
        logs: WatcherLogs,
        snap: &WatcherSnap,
        mut fds: impl FnMut(&SlotSnap) -> SlotFds,
    ) -> Addr<WatcherActor> {
        logs.restore_history(snap.history.iter().map(|l| l.record(&spec.name)).collect());
        let mut w = WatcherActor::new(spec, sockets, events, logs);
        w.numprocesses = snap.numprocesses;
        w.life.state = match snap.mode {
            WatcherMode::Active | WatcherMode::Rolling | WatcherMode::Stopping => WatcherState::Active,
            WatcherMode::Stopped => WatcherState::Stopped,
            WatcherMode::Failed => WatcherState::Failed,
        };
        let (inh, _) = inherited(&w.spec, sockets);
        let inh = std::sync::Arc::new(inh);
        let mut slots: Vec<(SlotSnap, SlotFds, bool)> = Vec::new();
        for (list, retiring) in [(&snap.slots, false), (&snap.retiring, true)] {
            for s in list {
                slots.push((s.clone(), fds(s), retiring));
            }
        }
        let then = match snap.mode {
            WatcherMode::Rolling => Some(Command::Restart(RestartHow::Rolling)),
            WatcherMode::Stopping => Some(Command::Stop),
            _ => None,
        };
        WatcherActor::create(move |ctx| {
            ctx.set_mailbox_capacity(1 << 16);
            let mut max_wid = 0;
            let mut any = None;
            for (s, pipes, retiring) in slots {
                let (spec, events, logs, sockets) =
                    (w.spec.clone(), w.events.clone(), w.logs.clone(), inh.clone());
                let me = ctx.address().recipient();
                let snap = s.clone();
                let addr = ProcessActor::create(move |c| {
                    c.set_mailbox_capacity(1 << 16);
                    ProcessActor::restored(&snap, pipes, spec, sockets, me, events, logs, c)
                });
                if s.mode == SlotMode::Idle && w.life.state.running() {
                    addr.do_send(crate::processes::StartSlot);
                }
                max_wid = max_wid.max(s.wid);
                any = Some(addr.clone());
                if retiring {
                    w.slots.retiring.insert(s.wid, addr.clone());
                    let stop = addr.send(crate::processes::StopSlot);
                    let wid = s.wid;
                    ctx.spawn(
                        async move {
                            let _ = stop.await;
                        }
                        .into_actor(&w)
                        .map(move |_, act: &mut WatcherActor, _| act.slots.retired(wid, &addr)),
                    );
                } else {
                    let pid = matches!(s.mode, SlotMode::Running | SlotMode::Stopping)
                        .then_some(s.pid)
                        .flatten();
                    let ended = matches!(s.mode, SlotMode::Stopped | SlotMode::Failed);
                    w.slots.insert(s.wid, addr, s.slot_id);
                    if let Some(slot) = w.slots.current(s.wid, s.slot_id) {
                        slot.pid = pid;
                    }
                    w.slots.set_ended(s.wid, s.slot_id, ended);
                }
            }
            // Wid numbering goes on above the restored slots; the gaps are free.
            if let Some(placeholder) = any {
                loop {
                    let wid = w.slots.take_wid();
                    if wid >= max_wid {
                        break;
                    }
                    if !w.slots.live.contains_key(&wid) && !w.slots.retiring.contains_key(&wid) {
                        w.slots.retiring.insert(wid, placeholder.clone());
                        w.slots.retired(wid, &placeholder);
                    }
                }
            }
            if let Some(c) = then {
                let what = match c {
                    Command::Stop => "upgrade: stopping again",
                    _ => "upgrade: rolling again",
                };
                tracing::info!(watcher = %w.spec.name, "{what}");
                let f = ctx.address().send(c);
                ctx.spawn(
                    async move {
                        let _ = f.await;
                    }
                    .into_actor(&w),
                );
            }
            w
        })
    }
}
