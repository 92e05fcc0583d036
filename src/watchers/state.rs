//! The lifecycle of one watcher, as one table of states × events.
//!
//! Commands on one watcher take effect in arrival order and the later one
//! wins: a `start` sent during a stop ends running, a `stop` or `rm` sent
//! during a start or a rollout cancels it and ends with no process. Every
//! command carries a [`Ticket`]; the table says when and how each ticket is
//! answered. Long operations (start, stop, rollout) run outside, in the actor,
//! and come back as `*Done` events stamped with the operation number they
//! were started with; a completion whose number is not the current one
//! belongs to a cancelled operation and is dropped before the table is read.
//! Nothing here touches the OS, so every transition is unit-tested.
//!
//! | state \ event | Start | Stop | Restart | Remove | Kill | Scale | StartDone | StopDone | RolloutDone | SlotFailed | AllEnded |
//! |---|---|---|---|---|---|---|---|---|---|---|---|
//! | Stopped | start → Starting | reply | start¹ → Starting | → Removed | kill | trim | – | – | – | – | – |
//! | Failed | start → Starting | reply → Stopped | start¹ → Starting | → Removed | kill | trim | – | – | – | – | – |
//! | Starting | join | cancel, stop → Stopping | queue restart | cancel, stop, then remove | kill | –⁶ | → Active² | – | – | cancel, stop → Stopping(failed) | note it³ |
//! | Active | reply running | stop → Stopping | roll⁴ → Reloading | stop, then remove | kill | scale | – | – | – | stop → Stopping(failed) | → Stopped |
//! | Reloading | reply running | cancel, stop → Stopping | queue restart | cancel, stop, then remove | kill | scale up | → Active⁵ | – | – | cancel, stop → Stopping(failed) | cancel → Stopped |
//! | Stopping | queue start | join; drop queued | queue start | queue remove | kill | – | – | → Stopped/Failed, then queued | – | – | – |
//! | Removed | reply removed | reply removed | reply removed | reply removed | kill | – | – | – | – | – | – |
//!
//! ¹ a restart of a watcher that is not running starts it (as Circus).
//! ² the start's tickets get its outcome; then a queued restart rolls.
//! ³ `respawn = false` and every process ended before the start finished: at
//!   `StartDone` the watcher goes to Stopped instead of Active.
//! ⁴ `Rolling`/`Sequential` roll; `Hup` signals and replies; `StopStart`
//!   stops with a queued start.
//! ⁵ a failed rollout puts the previous spec back (`RevertSpec`); either way
//!   the slots are then scaled to numprocesses (a scale during the rollout
//!   counted its extra processes).
//!
//! ⁶ the start sizes the slots after its hook and scales again when it ends.
//!
//! `Remove { stop: false }` (`rm --nostop`) forgets the processes at once from
//! every state but Removed. "cancel" answers the cancelled operation's
//! tickets (and any queued command's) with [`Outcome::Canceled`].

use super::StartInfo;

/// Identifies one command waiting for its reply.
pub(crate) type Ticket = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherState {
    Stopped,
    Starting,
    Active,
    /// A rolling replacement is in progress; processes keep serving.
    Reloading,
    /// `failed`: the restart policy gave up and the processes are being stopped.
    Stopping {
        failed: bool,
    },
    Failed,
    Removed,
}

impl WatcherState {
    /// Circus's status word.
    pub fn as_str(self) -> &'static str {
        match self {
            WatcherState::Stopped | WatcherState::Removed => "stopped",
            WatcherState::Starting => "starting",
            WatcherState::Active | WatcherState::Reloading => "active",
            WatcherState::Stopping { failed: false } => "stopping",
            WatcherState::Stopping { failed: true } | WatcherState::Failed => "failed",
        }
    }

    /// Processes are wanted: scaling adds them.
    pub(crate) fn running(self) -> bool {
        matches!(
            self,
            WatcherState::Starting | WatcherState::Active | WatcherState::Reloading
        )
    }
}

/// How a restart replaces the processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartHow {
    /// New first, old stopped once the new one is ready (`max_surge`/`max_unavailable`).
    Rolling,
    /// One at a time, old first.
    Sequential,
    /// Stop everything, then start (`graceful = false`).
    StopStart,
    /// Send SIGHUP and keep the processes (`send_hup`).
    Hup,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Start(Ticket),
    Stop(Ticket),
    Restart(Ticket, RestartHow),
    /// `stop: false` forgets the processes instead of stopping them.
    Remove(Ticket, bool),
    /// SIGKILL every process now (shutdown's second signal).
    Kill,
    /// numprocesses changed (the actor holds the number).
    Scale,
    /// `aborted`: before_start failed and nothing was started.
    StartDone {
        op: u64,
        info: StartInfo,
        aborted: bool,
    },
    StopDone {
        op: u64,
        pids: Vec<i32>,
    },
    RolloutDone {
        op: u64,
        info: StartInfo,
    },
    /// A process slot gave up (max_retry).
    SlotFailed,
    /// `respawn = false` and no process is left.
    AllEnded,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(StartInfo),
    /// A later command took over before this one finished.
    Canceled(&'static str),
}

/// What a published watcher event is about (the topic's last word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publish {
    Start,
    Stop,
    Reload,
    RolloutFailed,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// before_start, create and start the slots, wait ready, after_start → `StartDone`.
    RunStart {
        op: u64,
    },
    /// before_stop (`hooks`), stop every slot, after_stop → `StopDone`.
    RunStop {
        op: u64,
        hooks: bool,
    },
    /// Replace the running processes → `RolloutDone`.
    RunRollout {
        op: u64,
        sequential: bool,
    },
    /// Add or remove slots to match numprocesses.
    Scale,
    /// Add slots up to numprocesses, remove none (a rollout's extra
    /// processes are trimmed when it ends).
    ScaleUp,
    /// Remove the slots above numprocesses (a stopped watcher).
    Trim,
    KillAll,
    Hup,
    /// Let go of every process without stopping it.
    Forget,
    /// The rollout failed: new processes get the spec they had before.
    RevertSpec,
    Reply(Vec<Ticket>, Outcome),
    /// Answer with the pids already running.
    ReplyRunning(Ticket),
    Publish(Publish),
}

/// A command held until the operation in progress ends.
#[derive(Debug, Clone, PartialEq)]
enum Queued {
    Start(Vec<Ticket>),
    Restart(RestartHow, Vec<Ticket>),
    Remove(Vec<Ticket>),
}

impl Queued {
    fn tickets(self) -> Vec<Ticket> {
        match self {
            Queued::Start(t) | Queued::Restart(_, t) | Queued::Remove(t) => t,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    pub(crate) state: WatcherState,
    /// Number of the operation in progress; bumped by every new one.
    op: u64,
    /// Tickets answered when the operation in progress ends.
    joined: Vec<Ticket>,
    queued: Option<Queued>,
    /// `respawn = false` and every process ended during the start.
    ended_early: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            state: WatcherState::Stopped,
            op: 0,
            joined: Vec::new(),
            queued: None,
            ended_early: false,
        }
    }
}

const BY_STOP: &str = "canceled by a later stop";
const BY_REMOVE: &str = "canceled: the watcher was removed";
const BY_FAILURE: &str = "canceled: the watcher failed";
const REMOVED: &str = "the watcher was removed";

impl Lifecycle {
    pub(crate) fn op(&self) -> u64 {
        self.op
    }

    /// A command waits for the operation in progress.
    pub(crate) fn has_queued(&self) -> bool {
        self.queued.is_some()
    }

    fn next_op(&mut self) -> u64 {
        self.op += 1;
        self.op
    }

    /// Answers the operation in progress and anything queued with `why`.
    fn cancel(&mut self, why: &'static str, out: &mut Vec<Action>) {
        let mut t = std::mem::take(&mut self.joined);
        if let Some(q) = self.queued.take() {
            t.extend(q.tickets());
        }
        if !t.is_empty() {
            out.push(Action::Reply(t, Outcome::Canceled(why)));
        }
    }

    fn begin_start(&mut self, t: Vec<Ticket>, out: &mut Vec<Action>) {
        self.state = WatcherState::Starting;
        self.joined = t;
        self.ended_early = false;
        out.push(Action::RunStart { op: self.next_op() });
    }

    fn begin_stop(&mut self, t: Vec<Ticket>, failed: bool, out: &mut Vec<Action>) {
        self.state = WatcherState::Stopping { failed };
        self.joined = t;
        out.push(Action::RunStop {
            op: self.next_op(),
            hooks: !failed,
        });
    }

    fn begin_restart(&mut self, t: Ticket, how: RestartHow, out: &mut Vec<Action>) {
        match how {
            RestartHow::Rolling | RestartHow::Sequential => {
                self.state = WatcherState::Reloading;
                self.joined = vec![t];
                out.push(Action::RunRollout {
                    op: self.next_op(),
                    sequential: how == RestartHow::Sequential,
                });
            }
            RestartHow::StopStart => {
                self.begin_stop(Vec::new(), false, out);
                self.queued = Some(Queued::Start(vec![t]));
            }
            RestartHow::Hup => {
                out.push(Action::Hup);
                out.push(Action::Publish(Publish::Reload));
                out.push(Action::ReplyRunning(t));
            }
        }
    }

    fn remove_now(&mut self, t: Vec<Ticket>, out: &mut Vec<Action>) {
        self.state = WatcherState::Removed;
        self.next_op();
        out.push(Action::Forget);
        out.push(Action::Reply(t, Outcome::Done(StartInfo::default())));
    }

    fn queue(&mut self, q: Queued, out: &mut Vec<Action>) {
        // Later wins: a command already queued is answered as cancelled.
        if let Some(old) = self.queued.replace(q) {
            out.push(Action::Reply(old.tickets(), Outcome::Canceled(BY_STOP)));
        }
    }

    /// Queues a restart, merging with one already queued (the later mode wins).
    fn queue_restart(&mut self, t: Ticket, how: RestartHow) {
        match &mut self.queued {
            Some(Queued::Restart(h, v)) => {
                *h = how;
                v.push(t);
            }
            _ => self.queued = Some(Queued::Restart(how, vec![t])),
        }
    }

    pub(crate) fn step(&mut self, ev: Event) -> Vec<Action> {
        use Event as E;
        use WatcherState as S;
        let mut out = Vec::new();
        // Completions of a cancelled operation.
        if let E::StartDone { op, .. } | E::StopDone { op, .. } | E::RolloutDone { op, .. } = &ev {
            if *op != self.op {
                return out;
            }
        }
        match (self.state, ev) {
            // ---- Stopped / Failed
            (S::Stopped | S::Failed, E::Start(t)) => self.begin_start(vec![t], &mut out),
            (S::Stopped, E::Stop(t)) => out.push(Action::Reply(vec![t], Outcome::Done(StartInfo::default()))),
            (S::Failed, E::Stop(t)) => {
                self.state = S::Stopped;
                out.push(Action::Reply(vec![t], Outcome::Done(StartInfo::default())));
            }
            (S::Stopped | S::Failed, E::Restart(t, _)) => self.begin_start(vec![t], &mut out),
            (S::Stopped | S::Failed, E::Remove(t, _)) => self.remove_now(vec![t], &mut out),
            (S::Stopped | S::Failed, E::Kill) => out.push(Action::KillAll),
            (S::Stopped | S::Failed, E::Scale) => out.push(Action::Trim),
            (S::Stopped | S::Failed, E::StartDone { .. } | E::StopDone { .. } | E::RolloutDone { .. }) => {}
            (S::Stopped | S::Failed, E::SlotFailed | E::AllEnded) => {}

            // ---- Starting
            (S::Starting, E::Start(t)) => self.joined.push(t),
            (S::Starting, E::Stop(t)) => {
                self.cancel(BY_STOP, &mut out);
                self.begin_stop(vec![t], false, &mut out);
            }
            (S::Starting, E::Restart(t, how)) => self.queue_restart(t, how),
            (S::Starting | S::Active | S::Reloading, E::Remove(t, false)) => {
                self.cancel(BY_REMOVE, &mut out);
                self.remove_now(vec![t], &mut out);
            }
            (S::Starting, E::Remove(t, true)) => {
                self.cancel(BY_REMOVE, &mut out);
                self.begin_stop(Vec::new(), false, &mut out);
                self.queued = Some(Queued::Remove(vec![t]));
            }
            (S::Starting, E::Kill) => out.push(Action::KillAll),
            // The start sizes the slots after its hook, and again when it ends.
            (S::Starting, E::Scale) => {}
            (
                S::Starting,
                E::StartDone {
                    info, aborted: true, ..
                },
            ) => {
                let t = std::mem::take(&mut self.joined);
                out.push(Action::Reply(t, Outcome::Done(info)));
                self.state = S::Stopped;
                self.next_op();
                if let Some(q) = self.queued.take() {
                    out.push(Action::Reply(
                        q.tickets(),
                        Outcome::Canceled("the start was aborted"),
                    ));
                }
            }
            (
                S::Starting,
                E::StartDone {
                    info, aborted: false, ..
                },
            ) => {
                let t = std::mem::take(&mut self.joined);
                out.push(Action::Reply(t, Outcome::Done(info)));
                if self.ended_early {
                    self.state = S::Stopped;
                    self.next_op();
                    out.push(Action::Publish(Publish::Stop));
                    if let Some(q) = self.queued.take() {
                        out.push(Action::Reply(
                            q.tickets(),
                            Outcome::Canceled("every process ended"),
                        ));
                    }
                } else {
                    self.state = S::Active;
                    out.push(Action::Publish(Publish::Start));
                    // A scale sent during the start.
                    out.push(Action::Scale);
                    if let Some(q) = self.queued.take() {
                        self.run_queued_while_active(q, &mut out);
                    }
                }
            }
            (S::Starting, E::StopDone { .. } | E::RolloutDone { .. }) => {}
            (S::Starting | S::Active | S::Reloading, E::SlotFailed) => {
                self.cancel(BY_FAILURE, &mut out);
                out.push(Action::Publish(Publish::Failed));
                self.begin_stop(Vec::new(), true, &mut out);
            }
            (S::Starting, E::AllEnded) => self.ended_early = true,

            // ---- Active
            (S::Active, E::Start(t)) => {
                out.push(Action::Scale);
                out.push(Action::ReplyRunning(t));
            }
            (S::Reloading, E::Start(t)) => {
                out.push(Action::ScaleUp);
                out.push(Action::ReplyRunning(t));
            }
            (S::Active, E::Stop(t)) => self.begin_stop(vec![t], false, &mut out),
            (S::Active, E::Restart(t, how)) => self.begin_restart(t, how, &mut out),
            (S::Active, E::Remove(t, true)) => {
                self.begin_stop(Vec::new(), false, &mut out);
                self.queued = Some(Queued::Remove(vec![t]));
            }
            (S::Active | S::Reloading, E::Kill) => out.push(Action::KillAll),
            (S::Active, E::Scale) => out.push(Action::Scale),
            (S::Reloading, E::Scale) => out.push(Action::ScaleUp),
            (S::Active, E::StartDone { .. } | E::StopDone { .. } | E::RolloutDone { .. }) => {}
            (S::Active, E::AllEnded) => {
                self.state = S::Stopped;
                self.next_op();
                out.push(Action::Publish(Publish::Stop));
            }

            // ---- Reloading
            (S::Reloading, E::Stop(t)) => {
                self.cancel(BY_STOP, &mut out);
                self.begin_stop(vec![t], false, &mut out);
            }
            (S::Reloading, E::Restart(t, how)) => self.queue_restart(t, how),
            (S::Reloading, E::Remove(t, true)) => {
                self.cancel(BY_REMOVE, &mut out);
                self.begin_stop(Vec::new(), false, &mut out);
                self.queued = Some(Queued::Remove(vec![t]));
            }
            (S::Reloading, E::RolloutDone { info, .. }) => {
                let ok = info.errors.is_empty();
                if !ok {
                    out.push(Action::RevertSpec);
                }
                out.push(Action::Publish(if ok {
                    Publish::Reload
                } else {
                    Publish::RolloutFailed
                }));
                let t = std::mem::take(&mut self.joined);
                out.push(Action::Reply(t, Outcome::Done(info)));
                self.state = S::Active;
                // A scale during the rollout counted its extra processes.
                out.push(Action::Scale);
                if let Some(q) = self.queued.take() {
                    self.run_queued_while_active(q, &mut out);
                }
            }
            (S::Reloading, E::StartDone { .. } | E::StopDone { .. }) => {}
            (S::Reloading, E::AllEnded) => {
                self.cancel("canceled: every process ended", &mut out);
                self.state = S::Stopped;
                self.next_op();
                out.push(Action::Publish(Publish::Stop));
            }

            // ---- Stopping
            (S::Stopping { .. }, E::Start(t) | E::Restart(t, _)) => match &mut self.queued {
                Some(Queued::Start(v)) => v.push(t),
                Some(Queued::Remove(_)) => out.push(Action::Reply(vec![t], Outcome::Canceled(REMOVED))),
                _ => self.queue(Queued::Start(vec![t]), &mut out),
            },
            (S::Stopping { .. }, E::Stop(t)) => {
                self.joined.push(t);
                // A later stop wins over a start or restart queued before it;
                // a queued remove stays (the watcher is gone from the registry).
                if matches!(self.queued, Some(Queued::Start(_) | Queued::Restart(..))) {
                    if let Some(q) = self.queued.take() {
                        out.push(Action::Reply(q.tickets(), Outcome::Canceled(BY_STOP)));
                    }
                }
                // An operator's stop acknowledges a failure.
                self.state = S::Stopping { failed: false };
            }
            (S::Stopping { .. }, E::Remove(t, true)) => match &mut self.queued {
                Some(Queued::Remove(v)) => v.push(t),
                _ => {
                    if let Some(old) = self.queued.replace(Queued::Remove(vec![t])) {
                        out.push(Action::Reply(old.tickets(), Outcome::Canceled(BY_REMOVE)));
                    }
                }
            },
            (S::Stopping { .. }, E::Remove(t, false)) => {
                self.cancel(BY_REMOVE, &mut out);
                self.remove_now(vec![t], &mut out);
            }
            (S::Stopping { .. }, E::Kill) => out.push(Action::KillAll),
            (S::Stopping { .. }, E::Scale) => {}
            (S::Stopping { failed }, E::StopDone { pids, .. }) => {
                let t = std::mem::take(&mut self.joined);
                let info = StartInfo {
                    stopped: pids,
                    ..Default::default()
                };
                out.push(Action::Publish(Publish::Stop));
                out.push(Action::Reply(t, Outcome::Done(info)));
                self.state = if failed { S::Failed } else { S::Stopped };
                match self.queued.take() {
                    None => {}
                    Some(Queued::Start(t) | Queued::Restart(_, t)) => self.begin_start(t, &mut out),
                    Some(Queued::Remove(t)) => self.remove_now(t, &mut out),
                }
            }
            (S::Stopping { .. }, E::StartDone { .. } | E::RolloutDone { .. }) => {}
            (S::Stopping { .. }, E::SlotFailed | E::AllEnded) => {}

            // ---- Removed
            (S::Removed, E::Start(t) | E::Stop(t) | E::Restart(t, _) | E::Remove(t, _)) => {
                out.push(Action::Reply(vec![t], Outcome::Canceled(REMOVED)))
            }
            (S::Removed, E::Kill) => out.push(Action::KillAll),
            (S::Removed, E::Scale) => {}
            (S::Removed, E::StartDone { .. } | E::StopDone { .. } | E::RolloutDone { .. }) => {}
            (S::Removed, E::SlotFailed | E::AllEnded) => {}
        }
        out
    }

    /// A command queued behind a start or rollout, now that the watcher is Active.
    fn run_queued_while_active(&mut self, q: Queued, out: &mut Vec<Action>) {
        match q {
            Queued::Restart(how, t) => {
                let mut t = t.into_iter();
                let Some(first) = t.next() else { return };
                self.begin_restart(first, how, out);
                match how {
                    RestartHow::Rolling | RestartHow::Sequential => self.joined.extend(t),
                    RestartHow::StopStart => {
                        if let Some(Queued::Start(v)) = &mut self.queued {
                            v.extend(t);
                        }
                    }
                    RestartHow::Hup => out.extend(t.map(Action::ReplyRunning)),
                }
            }
            // Only a stop queues these, and a stop never waits behind a start.
            Queued::Start(t) => {
                for x in t {
                    out.push(Action::ReplyRunning(x));
                }
            }
            Queued::Remove(t) => {
                self.begin_stop(Vec::new(), false, out);
                self.queued = Some(Queued::Remove(t));
            }
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
