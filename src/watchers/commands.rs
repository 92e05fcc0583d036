//! The messages that change a watcher: commands fed to its lifecycle table
//! (start, stop, restart, remove, and their sequenced form), scaling, spec
//! changes, `kill` of processes, and the immediate kill of shutdown.

use super::actor::{inherited, WatcherActor};
use super::state::{Event, Outcome, RestartHow};
use super::StartInfo;
use crate::config::{Signum, WatcherSpec};
use crate::events::WatcherEvent;
use crate::processes::{ProcessActor, ReplaceSlot};
use crate::sockets::SocketInfo;
use crate::streams::WatcherLogs;
use actix::prelude::*;
use futures::future::join_all;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A command to a watcher; resolves with its outcome once it took effect or
/// a later command cancelled it.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Outcome")]
pub enum Command {
    /// Start the processes (also leaves `failed`); done when each is ready or failed readiness.
    Start,
    /// Stop every process gracefully; done when all are gone.
    Stop,
    /// Replace the processes.
    Restart(RestartHow),
    /// Stop (or, with `stop: false`, forget) every process, then end the actor.
    Remove { stop: bool },
}

impl Handler<Command> for WatcherActor {
    type Result = ResponseFuture<Outcome>;
    fn handle(&mut self, m: Command, ctx: &mut Self::Context) -> Self::Result {
        // A later command supersedes a queued one, and its gate.
        self.queued_gate = None;
        let how = match m {
            Command::Restart(RestartHow::Rolling) if self.spec.send_hup => RestartHow::Hup,
            Command::Restart(h) => h,
            _ => RestartHow::Rolling,
        };
        self.command(
            |t| match m {
                Command::Start => Event::Start(t),
                Command::Stop => Event::Stop(t),
                Command::Restart(_) => Event::Restart(t, how),
                Command::Remove { stop } => Event::Remove(t, stop),
            },
            ctx,
        )
    }
}

/// Opens when an earlier command (on another watcher) has taken effect.
#[derive(Clone)]
pub struct Gate(pub(super) futures::future::Shared<oneshot::Receiver<()>>);

impl Gate {
    /// A gate and the sender that opens it (dropping the sender opens it too).
    pub fn new() -> (oneshot::Sender<()>, Gate) {
        let (tx, rx) = oneshot::channel();
        (tx, Gate(futures::FutureExt::shared(rx)))
    }
}

/// A command queued now, in arrival order, whose operation begins only once
/// `after` opens: `start` of several watchers starts them in priority order
/// without letting a later command on one of them be overtaken.
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct Sequenced {
    pub command: Command,
    pub after: Gate,
}

impl Handler<Sequenced> for WatcherActor {
    type Result = ResponseFuture<Outcome>;
    fn handle(&mut self, m: Sequenced, ctx: &mut Self::Context) -> Self::Result {
        self.gate = Some(m.after);
        let r = self.handle(m.command, ctx);
        // Queued behind the operation in progress: its turn comes later.
        if let Some(g) = self.gate.take() {
            if self.life.has_queued() {
                self.queued_gate = Some(g);
            }
        }
        r
    }
}

/// SIGKILL every process group at once (second SIGINT).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KillWatcher;

impl Handler<KillWatcher> for WatcherActor {
    type Result = ();
    fn handle(&mut self, _: KillWatcher, ctx: &mut Self::Context) {
        self.feed(Event::Kill, ctx);
    }
}

/// Change the target number of processes, to a number or by a difference
/// (so two concurrent `incr` add two).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "(u32, bool)")]
pub enum Resize {
    To(u32),
    By(i64),
}

impl Handler<Resize> for WatcherActor {
    /// The new number, and whether the watcher is a singleton.
    type Result = ResponseFuture<(u32, bool)>;
    /// Replies once the added processes have been spawned (as Circus's
    /// `incr` does), so a `list` right after shows their pids.
    fn handle(&mut self, m: Resize, ctx: &mut Self::Context) -> Self::Result {
        let n = match m {
            Resize::To(n) => n,
            Resize::By(d) => i64::from(self.numprocesses)
                .saturating_add(d)
                .clamp(0, i64::from(super::MAX_PROCESSES)) as u32,
        };
        let n = if self.spec.singleton { n.min(1) } else { n };
        self.numprocesses = n;
        if self.spec.numprocesses != n {
            Arc::make_mut(&mut self.spec).numprocesses = n;
        }
        self.scaled = None;
        self.feed(Event::Scale, ctx);
        let started = self.scaled.take();
        let singleton = self.spec.singleton;
        Box::pin(async move {
            if let Some(s) = started {
                s.await;
            }
            (n, singleton)
        })
    }
}

/// Use a changed spec (and sockets): new processes get it; with `roll`, the
/// running ones are replaced (rolling), and a failed rollout puts the
/// previous spec back.
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct UpdateSpec {
    pub spec: WatcherSpec,
    pub sockets: Option<Vec<SocketInfo>>,
    /// New log destinations (when the stream config changed).
    pub logs: Option<WatcherLogs>,
    pub roll: bool,
}

impl Handler<UpdateSpec> for WatcherActor {
    type Result = ResponseFuture<Outcome>;
    fn handle(&mut self, m: UpdateSpec, ctx: &mut Self::Context) -> Self::Result {
        if let Some(socks) = &m.sockets {
            let (inh, fds) = inherited(&m.spec, socks);
            self.sockets = Arc::new(inh);
            self.fds = fds;
        }
        if let Some(l) = m.logs {
            self.logs = l;
        }
        let numprocesses = m.spec.numprocesses;
        self.set_spec(Arc::new(m.spec));
        self.publish(WatcherEvent::Updated, json!({}));
        let scaled = (self.numprocesses != numprocesses).then(|| self.handle(Resize::To(numprocesses), ctx));
        if m.roll && self.state().running() {
            if let Some(s) = scaled {
                ctx.spawn(
                    async move {
                        s.await;
                    }
                    .into_actor(self),
                );
            }
            return self.command(|t| Event::Restart(t, RestartHow::Rolling), ctx);
        }
        Box::pin(async move {
            if let Some(scaled) = scaled {
                scaled.await;
            }
            Outcome::Done(StartInfo::default())
        })
    }
}

/// A change to a watcher's spec (`set`), applied by the watcher itself so
/// that two changes never overwrite each other. Returns whether the
/// processes must be replaced, or why the change is refused.
pub type SpecEdit = Box<dyn FnOnce(&mut WatcherSpec) -> Result<bool, String> + Send>;

/// Apply an edit to the spec; refused at once if invalid, otherwise the
/// receiver yields the outcome (the rollout's, when processes are replaced)
/// and the watcher's priority comes back for the registry's order.
#[derive(Message)]
#[rtype(result = "Result<(oneshot::Receiver<Outcome>, i64), String>")]
pub struct EditSpec(pub SpecEdit);

impl Handler<EditSpec> for WatcherActor {
    type Result = MessageResult<EditSpec>;
    fn handle(&mut self, m: EditSpec, ctx: &mut Self::Context) -> Self::Result {
        let mut spec = (*self.spec).clone();
        spec.numprocesses = self.numprocesses;
        let roll = match (m.0)(&mut spec) {
            Ok(r) => r,
            Err(e) => return MessageResult(Err(e)),
        };
        let mut same = spec.clone();
        same.numprocesses = self.spec.numprocesses;
        let fut = if same == *self.spec && spec.numprocesses != self.numprocesses {
            // Only numprocesses changed: a scale.
            let r = self.handle(Resize::To(spec.numprocesses), ctx);
            Box::pin(async move {
                r.await;
                Outcome::Done(StartInfo::default())
            }) as ResponseFuture<Outcome>
        } else {
            self.handle(
                UpdateSpec {
                    spec,
                    sockets: None,
                    logs: None,
                    roll,
                },
                ctx,
            )
        };
        let (tx, rx) = oneshot::channel();
        ctx.spawn(
            async move {
                let _ = tx.send(fut.await);
            }
            .into_actor(self),
        );
        MessageResult(Ok((rx, self.spec.priority)))
    }
}

/// Stop one process (or all) with an optional signal and graceful_timeout;
/// each is replaced in its slot (Circus's `kill`).
#[derive(Message)]
#[rtype(result = "Result<(Vec<i32>, oneshot::Receiver<()>), String>")]
pub struct KillProcesses {
    pub pid: Option<i32>,
    pub signal: Option<Signum>,
    pub timeout: Option<std::time::Duration>,
}

impl Handler<KillProcesses> for WatcherActor {
    /// The pids being replaced at once (or why none is); the receiver
    /// resolves once each has its new process.
    type Result = MessageResult<KillProcesses>;
    fn handle(&mut self, m: KillProcesses, ctx: &mut Self::Context) -> Self::Result {
        let targets: Vec<(Addr<ProcessActor>, i32)> = self
            .slots
            .live
            .values()
            .filter_map(|s| s.pid.map(|p| (s.addr.clone(), p)))
            .filter(|(_, p)| m.pid.is_none_or(|want| want == *p))
            .collect();
        if let (Some(pid), true) = (m.pid, targets.is_empty()) {
            return MessageResult(Err(format!("process {pid} not found in '{}'", self.spec.name)));
        }
        let pids = targets.iter().map(|(_, p)| *p).collect();
        let replaced: Vec<_> = targets
            .iter()
            .map(|(a, _)| {
                a.send(ReplaceSlot {
                    signal: m.signal,
                    timeout: m.timeout,
                })
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        ctx.spawn(
            async move {
                join_all(replaced).await;
                let _ = tx.send(());
            }
            .into_actor(self),
        );
        MessageResult(Ok((pids, rx)))
    }
}
