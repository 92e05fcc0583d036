use super::messages::*;
use super::spawn::{self, InheritedSocket, Output, SpawnError};
use super::spawner;
use super::state::{backoff_delay, Action, Event, Lifecycle, Policy, State};
use crate::config::model::ReadyKind;
use crate::config::{Signum, WatcherSpec};
use crate::containment::SlotContainment;
use crate::events::Events;
use crate::readiness::notify::NotifyRouter;
use crate::readiness::state::{Event as Ready, Readiness};
use crate::reaper::{Exited, Reaper};
use crate::streams::{StreamKind, WatcherLogs};
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

pub(super) static NEXT_SLOT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct ProcessActor {
    pub(super) wid: u32,
    pub slot_id: u64,
    pub(super) spec: Arc<WatcherSpec>,
    pub(super) sockets: Arc<Vec<InheritedSocket>>,
    pub(super) watcher: Recipient<SlotReport>,
    pub(super) events: Events,
    pub(super) logs: WatcherLogs,
    pub(super) life: Lifecycle,
    pub(super) started_at: Option<Instant>,
    pub(super) started_wall: Option<SystemTime>,
    pub(super) spawns: u32,
    pub(super) argv: Vec<String>,
    pub(super) retry_timer: Option<SpawnHandle>,
    pub(super) grace_timer: Option<SpawnHandle>,
    pub(super) age_timer: Option<SpawnHandle>,
    /// The readiness check in progress (timers, probe loop, log matcher).
    pub(super) checks: Vec<SpawnHandle>,
    pub(super) watchdog_timer: Option<SpawnHandle>,
    pub(super) stop_waiters: Vec<oneshot::Sender<()>>,
    pub(super) spawn_waiters: Vec<oneshot::Sender<Option<i32>>>,
    pub(super) ready_waiters: Vec<oneshot::Sender<Result<i32, String>>>,
    /// Signal and timeout for the stop in progress, when a command chose them.
    pub(super) stop_override: Option<(Option<Signum>, Option<Duration>)>,
    pub(super) readiness: Readiness,
    pub(super) status_text: Option<String>,
    pub(super) last_error: Option<String>,
    pub(super) detached: bool,
    /// Spawned, readiness to begin once the state machine says Running.
    pub(super) pending_ready: Option<i32>,
    /// `Exited` received while the spawn's outcome was still on its way.
    pub(super) early_exits: Vec<Exited>,
    /// `ready.type = "log"`: fires when the current process prints a matching line.
    pub(super) log_ready: Option<oneshot::Receiver<()>>,
    /// Every process the slot started, for stops and kills.
    pub(super) containment: SlotContainment,
    /// The current process's stdout/stderr captures, whose pipes an
    /// upgrade hands over (`crate::upgrade`).
    pub(super) captures: [Option<u64>; 2],
    /// When the armed `age_timer` / `watchdog_timer` fire (carried by an upgrade).
    pub(super) age_at: Option<Instant>,
    pub(super) watchdog_at: Option<Instant>,
}

impl ProcessActor {
    pub fn new(
        wid: u32,
        spec: Arc<WatcherSpec>,
        sockets: Arc<Vec<InheritedSocket>>,
        watcher: Recipient<SlotReport>,
        events: Events,
        logs: WatcherLogs,
    ) -> Self {
        let watchdog = spec.ready.watchdog_timeout.is_some();
        let slot_id = NEXT_SLOT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ProcessActor {
            containment: SlotContainment::new(&spec.name, wid, slot_id),
            wid,
            slot_id,
            spec,
            sockets,
            watcher,
            events,
            logs,
            life: Lifecycle::default(),
            started_at: None,
            started_wall: None,
            spawns: 0,
            argv: Vec::new(),
            retry_timer: None,
            grace_timer: None,
            age_timer: None,
            checks: Vec::new(),
            watchdog_timer: None,
            stop_waiters: Vec::new(),
            spawn_waiters: Vec::new(),
            ready_waiters: Vec::new(),
            stop_override: None,
            readiness: Readiness::new(watchdog),
            status_text: None,
            last_error: None,
            detached: false,
            pending_ready: None,
            early_exits: Vec::new(),
            log_ready: None,
            captures: [None, None],
            age_at: None,
            watchdog_at: None,
        }
    }

    pub(super) fn policy(&self) -> Policy {
        Policy {
            respawn: self.spec.respawn,
            min_uptime: self.spec.restart.min_uptime,
            max_retry: self.spec.restart.max_retry,
            stop_signal: self
                .stop_override
                .and_then(|o| o.0)
                .unwrap_or(self.spec.stop_signal),
        }
    }

    pub(super) fn report(&self, event: SlotEvent) {
        self.watcher.do_send(SlotReport {
            wid: self.wid,
            slot_id: self.slot_id,
            event,
        });
    }

    pub(super) fn pgid(&self) -> Option<i32> {
        match self.life.state {
            State::Running { pid } | State::Stopping { pid } => Some(pid),
            State::Draining { pgid } => Some(pgid),
            _ => None,
        }
    }

    /// Feeds an event to the state machine and performs what it decides.
    pub(super) fn feed(&mut self, ev: Event, ctx: &mut Context<Self>) {
        let mut queue = vec![ev];
        while let Some(ev) = queue.pop() {
            let pgid_before = self.pgid();
            let actions = self.life.step(ev, &self.policy());
            for a in actions {
                if let Some(next) = self.perform(a, pgid_before, ctx) {
                    queue.push(next);
                }
            }
        }
        if let Some(pid) = self.pending_ready.take() {
            if self.life.state.pid() == Some(pid) {
                self.ready_step(Ready::Spawned { pid }, ctx);
            }
        }
    }

    pub(super) fn resolve_spawn_waiters(&mut self, pid: Option<i32>) {
        for w in self.spawn_waiters.drain(..) {
            let _ = w.send(pid);
        }
    }

    pub(super) fn resolve_ready_waiters(&mut self, r: Result<i32, String>) {
        for w in self.ready_waiters.drain(..) {
            let _ = w.send(r.clone());
        }
    }

    pub(super) fn cancel(
        &mut self,
        ctx: &mut Context<Self>,
        which: &[fn(&mut Self) -> &mut Option<SpawnHandle>],
    ) {
        for f in which {
            if let Some(h) = f(self).take() {
                ctx.cancel_future(h);
            }
        }
    }

    pub(super) fn perform(
        &mut self,
        a: Action,
        pgid_before: Option<i32>,
        ctx: &mut Context<Self>,
    ) -> Option<Event> {
        let wid = self.wid;
        match a {
            Action::Spawn => {
                self.stop_override = None;
                if crate::hooks::configured(&self.spec, crate::hooks::Hook::BeforeSpawn) {
                    let spec = self.spec.clone();
                    let events = self.events.clone();
                    ctx.spawn(
                        async move {
                            crate::hooks::run(
                                &spec,
                                &events,
                                crate::hooks::Hook::BeforeSpawn,
                                None,
                                Some(wid),
                            )
                            .await
                        }
                        .into_actor(self)
                        .map(|ok, act, ctx| {
                            if ok {
                                act.spawn(ctx);
                            } else {
                                act.last_error = Some("before_spawn hook failed".into());
                                act.resolve_spawn_waiters(None);
                                act.feed(Event::SpawnFailed, ctx);
                            }
                        }),
                    );
                    return None;
                }
                self.spawn(ctx);
            }
            Action::Backoff { failures } => {
                let delay = backoff_delay(&self.spec.restart, failures, fastrand::f64());
                tracing::warn!(watcher = %self.spec.name, wid, failures, delay_ms = delay.as_millis() as u64, "process failed quickly; backing off");
                self.report(SlotEvent::Backoff { delay, failures });
                self.retry_timer = Some(ctx.run_later(delay, |act, ctx| {
                    act.retry_timer = None;
                    act.feed(Event::RetryDue, ctx);
                }));
            }
            Action::SignalGroup(sig) => {
                if let Some(pgid) = self.pgid() {
                    tracing::info!(watcher = %self.spec.name, wid, pid = pgid, signal = %sig, "stopping process");
                    self.containment.signal(self.life.state.pid(), sig.0);
                    self.report(SlotEvent::Killed {
                        pid: pgid,
                        signal: sig,
                    });
                }
            }
            Action::KillGroup => {
                // The leader, while not reaped; after that only what the
                // containment knows by cgroup or (pid, start time).
                if let Some(pgid) = self.pgid().or(pgid_before) {
                    if self.containment.kill(self.life.state.pid()) {
                        tracing::info!(watcher = %self.spec.name, wid, pgid, "sending SIGKILL to every process of the slot");
                        self.report(SlotEvent::Killed {
                            pid: pgid,
                            signal: Signum::KILL,
                        });
                    }
                }
            }
            Action::ArmGraceTimer => {
                let t = self
                    .stop_override
                    .and_then(|o| o.1)
                    .unwrap_or(self.spec.graceful_timeout);
                self.grace_timer = Some(ctx.run_later(t, |act, ctx| {
                    act.grace_timer = None;
                    tracing::warn!(watcher = %act.spec.name, wid = act.wid, "graceful_timeout expired");
                    act.feed(Event::GraceExpired, ctx);
                }));
            }
            Action::CancelTimers => {
                self.cancel(
                    ctx,
                    &[
                        |a| &mut a.retry_timer,
                        |a| &mut a.grace_timer,
                        |a| &mut a.age_timer,
                        |a| &mut a.watchdog_timer,
                    ],
                );
                for h in self.checks.drain(..) {
                    ctx.cancel_future(h);
                }
            }
            Action::WatchGroup { .. } => {
                Reaper::global().watch_empty(
                    self.slot_id,
                    self.containment.emptiness(),
                    ctx.address().recipient(),
                );
            }
            Action::Stopped => {
                self.started_at = None;
                self.stop_override = None;
                self.resolve_spawn_waiters(None);
                let why = self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "process stopped".into());
                self.resolve_ready_waiters(Err(why));
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(());
                }
                self.report(SlotEvent::Stopped);
            }
            Action::Failed { failures } => {
                tracing::error!(watcher = %self.spec.name, wid, failures, "process keeps failing; giving up (max_retry reached)");
                self.started_at = None;
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(());
                }
                self.resolve_spawn_waiters(None);
                let why = self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "the restart policy gave up".into());
                self.resolve_ready_waiters(Err(why));
                self.report(SlotEvent::Failed { failures });
            }
        }
        None
    }

    /// `max_age`: the watcher replaces `pid` after `age`.
    pub(super) fn arm_age(&mut self, pid: i32, age: Duration, ctx: &mut Context<Self>) {
        self.age_at = Some(Instant::now() + age);
        self.age_timer = Some(ctx.run_later(age, move |act, _| {
            act.age_timer = None;
            if act.life.state.pid() == Some(pid) {
                tracing::info!(watcher = %act.spec.name, wid = act.wid, pid, "max_age reached; replacing process");
                act.report(SlotEvent::Aged { pid });
            }
        }));
    }

    /// Forks and execs on a spawner thread; the outcome comes back as
    /// `Spawned` / `SpawnFailed` while the actor keeps handling messages
    /// (the state machine is in `Spawning` meanwhile).
    pub(super) fn spawn(&mut self, ctx: &mut Context<Self>) {
        let out = if self.spec.close_child_stdout {
            Output::Null
        } else {
            Output::Pipe
        };
        let err = if self.spec.close_child_stderr {
            Output::Null
        } else {
            Output::Pipe
        };
        let owner = ctx.address().recipient::<Exited>();
        let mut extra = Vec::new();
        let notify = if self.spec.ready.kind == ReadyKind::Notify {
            match NotifyRouter::start() {
                Ok(r) => {
                    extra.push(("NOTIFY_SOCKET".to_string(), r.address.clone()));
                    Some(r)
                }
                Err(e) => {
                    tracing::error!(watcher = %self.spec.name, "cannot open the notify socket: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        self.status_text = None;
        let procs = self
            .containment
            .prepare()
            .and_then(|c| c.map(|c| c.open_join().map_err(|e| format!("{e}"))).transpose());
        let procs = match procs {
            Ok(c) => c,
            Err(e) => {
                let ev = self.spawned(Err(SpawnError::Prepare(e)), None, ctx);
                self.feed(ev, ctx);
                return;
            }
        };
        let (spec, sockets, wid) = (Arc::clone(&self.spec), Arc::clone(&self.sockets), self.wid);
        // The job holds the cgroup's fds open until the child has exec'd.
        let job = move || {
            use std::os::fd::AsRawFd;
            let cgroup = procs.as_ref().map(|j| spawn::CgroupFds {
                dir: j.dir.as_ref().map(|d| d.as_raw_fd()),
                procs: j.procs.as_raw_fd(),
            });
            spawn::spawn(&spec, wid, &sockets, (out, err), &extra, owner, cgroup)
        };
        ctx.spawn(
            async move { spawner::run(job).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let res =
                        res.unwrap_or_else(|| Err(SpawnError::Prepare("the spawner thread panicked".into())));
                    let ev = act.spawned(res, notify, ctx);
                    act.feed(ev, ctx);
                    // Exits reaped before the spawn's outcome arrived.
                    for m in std::mem::take(&mut act.early_exits) {
                        Handler::<Exited>::handle(act, m, ctx);
                    }
                }),
        );
    }

    pub(super) fn spawned(
        &mut self,
        res: Result<spawn::Spawned, SpawnError>,
        notify: Option<&'static NotifyRouter>,
        ctx: &mut Context<Self>,
    ) -> Event {
        match res {
            Ok(sp) => {
                let pid = sp.pid;
                self.containment.spawned(pid);
                // The log thread reads each pipe to EOF, so a dying process loses no line.
                let ready_match = self.log_ready_match();
                let out = sp.stdout.map(|fd| {
                    let m = ready_match.clone();
                    self.logs
                        .capture_matching(fd, pid as u32, self.wid, StreamKind::Stdout, m)
                        .id()
                });
                let err = sp.stderr.map(|fd| {
                    self.logs
                        .capture_matching(fd, pid as u32, self.wid, StreamKind::Stderr, ready_match)
                        .id()
                });
                self.captures = [out, err];
                if let Some(r) = notify {
                    r.register(pid, ctx.address().recipient());
                }
                if self.spawns > 0 {
                    crate::http::counters::restarted(&self.spec.name);
                }
                self.spawns += 1;
                self.started_at = Some(Instant::now());
                self.started_wall = Some(SystemTime::now());
                self.argv = sp.argv;
                self.last_error = None;
                tracing::info!(watcher = %self.spec.name, wid = self.wid, pid, "spawned");
                self.report(SlotEvent::Spawned { pid });
                if !self.spec.max_age.is_zero() {
                    let var = self.spec.max_age_variance.as_secs_f64() * fastrand::f64();
                    self.arm_age(pid, self.spec.max_age + Duration::from_secs_f64(var), ctx);
                }
                if crate::hooks::configured(&self.spec, crate::hooks::Hook::AfterSpawn) {
                    // Whoever waits for this spawn (a watcher's start, then
                    // its after_start hook) waits for after_spawn too, as in
                    // Circus, where the hook runs inside the spawn.
                    let (spec, events, wid) = (self.spec.clone(), self.events.clone(), self.wid);
                    ctx.spawn(
                        async move {
                            crate::hooks::run(
                                &spec,
                                &events,
                                crate::hooks::Hook::AfterSpawn,
                                Some(pid),
                                Some(wid),
                            )
                            .await;
                        }
                        .into_actor(self)
                        .map(move |(), act, _| act.resolve_spawn_waiters(Some(pid))),
                    );
                } else {
                    self.resolve_spawn_waiters(Some(pid));
                }
                self.pending_ready = Some(pid);
                Event::Spawned { pid }
            }
            Err(e) => {
                tracing::error!(watcher = %self.spec.name, wid = self.wid, "spawn failed: {e}");
                self.last_error = Some(e.to_string());
                self.report(SlotEvent::SpawnFailed {
                    reason: e.to_string(),
                });
                self.resolve_spawn_waiters(None);
                Event::SpawnFailed
            }
        }
    }
}

impl Actor for ProcessActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        // Never leave a process behind when a slot goes away (unless told to forget it).
        Reaper::global().unwatch(self.slot_id);
        if self.detached {
            self.containment.detach();
            return;
        }
        self.containment.end(self.life.state.pid());
    }
}
