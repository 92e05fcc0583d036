//! A watcher across an upgrade: its snapshot (the watcher and all its slots
//! frozen) and its restoration in the next image with the slots' processes
//! adopted. A rollout in progress is resumed (the slots it had replaced
//! stay, the others roll), and whoever waited for it can join it
//! ([`JoinResumed`]); a stop is begun again.

use super::actor::{inherited, WatcherActor};
use super::state::Outcome;
use super::state::{RestartHow, WatcherState};
use super::Command;
use crate::config::WatcherSpec;
use crate::events::Events;
use crate::processes::{FreezeSlot, ProcessActor};
use crate::sockets::SocketInfo;
use crate::streams::WatcherLogs;
use crate::upgrade::snapshot::{RolloutSnap, SlotMode, SlotSnap, WatcherMode, WatcherSnap};
use actix::prelude::*;
use futures::future::{join_all, FutureExt, Shared};
use std::os::fd::OwnedFd;
use tokio::sync::oneshot;

/// A watcher's rollout across an upgrade.
#[derive(Default)]
pub(crate) struct Resume {
    /// The rollout in progress rolls one at a time (for the snapshot).
    pub sequential: bool,
    /// In the next image, until the rollout resumes: the slots already rolled.
    pub rolled: Option<std::collections::HashSet<u64>>,
    /// The resumed rollout's outcome.
    pub outcome: Option<Shared<oneshot::Receiver<Outcome>>>,
    /// The resumed rollout's first step, taken by `rollout`.
    pub first: Option<FirstStep>,
}

/// Where a resumed rollout starts: the processes it started before the
/// exec must be ready, then as many old ones as it had added beyond
/// numprocesses stop (they were already replaced).
pub(crate) struct FirstStep {
    pub ready: Vec<Addr<ProcessActor>>,
    pub replaced: Vec<(u32, u64, i32)>,
}

impl WatcherActor {
    /// The rollout resumed in the next image: the slots it `rolled` before
    /// the exec stay; returns the old slots still to roll (of `olds`).
    pub(super) fn resume_rollout(
        &mut self,
        rolled: std::collections::HashSet<u64>,
        mut olds: Vec<(u32, u64, i32)>,
    ) -> Vec<(u32, u64, i32)> {
        olds.retain(|(_, id, _)| !rolled.contains(id));
        let ready = self
            .slots
            .live
            .values()
            .filter(|s| rolled.contains(&s.id))
            .map(|s| s.addr.clone())
            .collect();
        let surplus = self
            .slots
            .live
            .len()
            .saturating_sub(self.numprocesses as usize)
            .min(olds.len());
        let replaced = olds.drain(..surplus).collect();
        self.resume.first = Some(FirstStep { ready, replaced });
        self.rollout_slots.extend(rolled);
        olds
    }
}

/// The outcome of the rollout this watcher resumed after an upgrade (None
/// if it resumed none).
#[derive(Message)]
#[rtype(result = "Option<Shared<oneshot::Receiver<Outcome>>>")]
pub(crate) struct JoinResumed;

impl Handler<JoinResumed> for WatcherActor {
    type Result = Option<Shared<oneshot::Receiver<Outcome>>>;
    fn handle(&mut self, _: JoinResumed, _: &mut Self::Context) -> Self::Result {
        self.resume.outcome.clone()
    }
}

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
                            rollout: (mode(act.life.state, act.rolling_to.is_some()) == WatcherMode::Rolling)
                                .then(|| RolloutSnap {
                                    rolled: act.rollout_slots.iter().copied().collect(),
                                    sequential: act.resume.sequential,
                                }),
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
        let then = match (snap.mode, &snap.rollout) {
            (WatcherMode::Rolling, Some(r)) => {
                w.resume.rolled = Some(r.rolled.iter().copied().collect());
                Some(Command::Restart(if r.sequential {
                    RestartHow::Sequential
                } else {
                    RestartHow::Rolling
                }))
            }
            (WatcherMode::Rolling, None) => Some(Command::Restart(RestartHow::Rolling)),
            (WatcherMode::Stopping, _) => Some(Command::Stop),
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
            // Freed only once numbering is past them: `take_wid` hands out
            // free wids first, so freeing one inside the loop never ended it.
            if let Some(placeholder) = any {
                let mut gaps = Vec::new();
                loop {
                    let wid = w.slots.take_wid();
                    if wid >= max_wid {
                        break;
                    }
                    if !w.slots.live.contains_key(&wid) && !w.slots.retiring.contains_key(&wid) {
                        gaps.push(wid);
                    }
                }
                for wid in gaps {
                    w.slots.retiring.insert(wid, placeholder.clone());
                    w.slots.retired(wid, &placeholder);
                }
            }
            if let Some(c) = then {
                let what = match c {
                    Command::Stop => "upgrade: stopping again",
                    _ if w.resume.rolled.is_some() => "upgrade: resuming the rollout",
                    _ => "upgrade: rolling again",
                };
                tracing::info!(watcher = %w.spec.name, "{what}");
                let (tx, rx) = oneshot::channel();
                if !matches!(c, Command::Stop) {
                    w.resume.outcome = Some(rx.shared());
                }
                let f = ctx.address().send(c);
                ctx.spawn(
                    async move {
                        let o = f.await.unwrap_or(Outcome::Canceled("the watcher went away"));
                        let _ = tx.send(o);
                    }
                    .into_actor(&w),
                );
            }
            w
        })
    }
}
