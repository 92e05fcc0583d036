use super::spawn::{self, InheritedSocket, Output, SpawnError};
use super::spawner;
use super::state::{backoff_delay, Action, Event, Lifecycle, Policy, State};
use crate::config::model::ReadyKind;
use crate::config::{Signum, WatcherSpec};
use crate::containment::SlotContainment;
use crate::events::Events;
use crate::readiness::notify::{Notify, NotifyRouter};
use crate::readiness::state::{Event as Ready, Phase, Readiness};
use crate::reaper::{ExitStatus, Exited, GroupGone, Reaper};
use crate::streams::{StreamKind, WatcherLogs};
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// What a slot tells its watcher.
#[derive(Debug, Clone)]
pub enum SlotEvent {
    Spawned {
        pid: i32,
    },
    Ready {
        pid: i32,
    },
    ReadyFailed {
        pid: i32,
        reason: String,
    },
    Exited {
        pid: i32,
        status: ExitStatus,
        uptime: Duration,
    },
    SpawnFailed {
        reason: String,
    },
    Backoff {
        delay: Duration,
        failures: u32,
    },
    Failed {
        failures: u32,
    },
    Killed {
        pid: i32,
        signal: Signum,
    },
    /// max_age reached: the watcher replaces this process (rolling).
    Aged {
        pid: i32,
    },
    Stopped,
}

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SlotReport {
    pub wid: u32,
    /// Unique per slot actor: a wid can be reused while its old actor still reports.
    pub slot_id: u64,
    pub event: SlotEvent,
}

static NEXT_SLOT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Start the slot; answers with the pid once the first spawn attempt is done.
#[derive(Message)]
#[rtype(result = "Option<i32>")]
pub struct StartSlot;

/// Answers with the pid once the process is ready, or why it will not be.
#[derive(Message)]
#[rtype(result = "Result<i32, String>")]
pub struct WaitReady;

/// Replace the process in place (stop, then spawn), optionally with another
/// signal and timeout; answers with the new pid once spawned.
#[derive(Message)]
#[rtype(result = "Option<i32>")]
pub struct ReplaceSlot {
    pub signal: Option<Signum>,
    pub timeout: Option<Duration>,
}

/// Forget the process without stopping it (`rm --nostop`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachSlot;

/// Use a new spec (and sockets) for the next spawns.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateSlotSpec(
    pub Arc<WatcherSpec>,
    pub Arc<Vec<InheritedSocket>>,
    pub WatcherLogs,
);

/// Stop gracefully; resolves once the process and its whole group are gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSlot;

/// SIGKILL the group now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KillSlot;

#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SignalSlot {
    pub signal: Signum,
    /// Signal the whole process group rather than only the process.
    pub group: bool,
}

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub wid: u32,
    pub pid: Option<i32>,
    pub state: &'static str,
    pub ready: bool,
    pub status_text: Option<String>,
    pub started: Option<SystemTime>,
    pub restarts: u32,
    pub argv: Vec<String>,
}

#[derive(Message)]
#[rtype(result = "ProcInfo")]
pub struct GetProcInfo;

pub struct ProcessActor {
    pub(super) wid: u32,
    pub slot_id: u64,
    pub(super) spec: Arc<WatcherSpec>,
    sockets: Arc<Vec<InheritedSocket>>,
    watcher: Recipient<SlotReport>,
    pub(super) events: Events,
    logs: WatcherLogs,
    life: Lifecycle,
    started_at: Option<Instant>,
    started_wall: Option<SystemTime>,
    spawns: u32,
    argv: Vec<String>,
    retry_timer: Option<SpawnHandle>,
    grace_timer: Option<SpawnHandle>,
    age_timer: Option<SpawnHandle>,
    /// The readiness check in progress (timers, probe loop, log matcher).
    pub(super) checks: Vec<SpawnHandle>,
    pub(super) watchdog_timer: Option<SpawnHandle>,
    stop_waiters: Vec<oneshot::Sender<()>>,
    spawn_waiters: Vec<oneshot::Sender<Option<i32>>>,
    ready_waiters: Vec<oneshot::Sender<Result<i32, String>>>,
    /// Signal and timeout for the stop in progress, when a command chose them.
    stop_override: Option<(Option<Signum>, Option<Duration>)>,
    pub(super) readiness: Readiness,
    status_text: Option<String>,
    pub(super) last_error: Option<String>,
    detached: bool,
    /// Spawned, readiness to begin once the state machine says Running.
    pending_ready: Option<i32>,
    /// `Exited` received while the spawn's outcome was still on its way.
    early_exits: Vec<Exited>,
    /// `ready.type = "log"`: fires when the current process prints a matching line.
    pub(super) log_ready: Option<oneshot::Receiver<()>>,
    /// Every process the slot started, for stops and kills.
    pub(super) containment: SlotContainment,
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
        }
    }

    fn policy(&self) -> Policy {
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

    fn pgid(&self) -> Option<i32> {
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

    fn resolve_spawn_waiters(&mut self, pid: Option<i32>) {
        for w in self.spawn_waiters.drain(..) {
            let _ = w.send(pid);
        }
    }

    pub(super) fn resolve_ready_waiters(&mut self, r: Result<i32, String>) {
        for w in self.ready_waiters.drain(..) {
            let _ = w.send(r.clone());
        }
    }

    fn cancel(&mut self, ctx: &mut Context<Self>, which: &[fn(&mut Self) -> &mut Option<SpawnHandle>]) {
        for f in which {
            if let Some(h) = f(self).take() {
                ctx.cancel_future(h);
            }
        }
    }

    fn perform(&mut self, a: Action, pgid_before: Option<i32>, ctx: &mut Context<Self>) -> Option<Event> {
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

    /// Forks and execs on a spawner thread; the outcome comes back as
    /// `Spawned` / `SpawnFailed` while the actor keeps handling messages
    /// (the state machine is in `Spawning` meanwhile).
    fn spawn(&mut self, ctx: &mut Context<Self>) {
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
            .and_then(|c| c.map(|c| c.open_procs().map_err(|e| format!("{e}"))).transpose());
        let procs = match procs {
            Ok(c) => c,
            Err(e) => {
                let ev = self.spawned(Err(SpawnError::Prepare(e)), None, ctx);
                self.feed(ev, ctx);
                return;
            }
        };
        let (spec, sockets, wid) = (Arc::clone(&self.spec), Arc::clone(&self.sockets), self.wid);
        // The job holds the open cgroup.procs until the child has exec'd.
        let job = move || {
            let fd = procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
            spawn::spawn(&spec, wid, &sockets, (out, err), &extra, owner, fd)
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

    fn spawned(
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
                if let Some(fd) = sp.stdout {
                    let m = ready_match.clone();
                    drop(
                        self.logs
                            .capture_matching(fd, pid as u32, self.wid, StreamKind::Stdout, m),
                    );
                }
                if let Some(fd) = sp.stderr {
                    drop(self.logs.capture_matching(
                        fd,
                        pid as u32,
                        self.wid,
                        StreamKind::Stderr,
                        ready_match,
                    ));
                }
                if let Some(r) = notify {
                    r.register(pid, ctx.address().recipient());
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
                    let age = self.spec.max_age + Duration::from_secs_f64(var);
                    self.age_timer = Some(ctx.run_later(age, move |act, _| {
                        act.age_timer = None;
                        if act.life.state.pid() == Some(pid) {
                            tracing::info!(watcher = %act.spec.name, wid = act.wid, pid, "max_age reached; replacing process");
                            act.report(SlotEvent::Aged { pid });
                        }
                    }));
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

impl Handler<StartSlot> for ProcessActor {
    type Result = ResponseFuture<Option<i32>>;
    fn handle(&mut self, _: StartSlot, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.spawn_waiters.push(tx);
        self.feed(Event::Start, ctx);
        if let Some(pid) = self.life.state.pid() {
            // Already running: nothing was spawned.
            self.resolve_spawn_waiters(Some(pid));
        }
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<WaitReady> for ProcessActor {
    type Result = ResponseFuture<Result<i32, String>>;
    fn handle(&mut self, _: WaitReady, _: &mut Self::Context) -> Self::Result {
        let r = match self.life.state {
            State::Running { pid } if self.readiness.is_ready() => Some(Ok(pid)),
            State::Running { .. } | State::Spawning => None,
            other => Some(Err(self
                .last_error
                .clone()
                .unwrap_or_else(|| format!("process is not running ({})", other.name())))),
        };
        if let Some(r) = r {
            return Box::pin(async move { r });
        }
        let (tx, rx) = oneshot::channel();
        self.ready_waiters.push(tx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err("process slot went away".into())) })
    }
}

impl Handler<ReplaceSlot> for ProcessActor {
    type Result = ResponseFuture<Option<i32>>;
    fn handle(&mut self, m: ReplaceSlot, ctx: &mut Self::Context) -> Self::Result {
        if self.life.state.pid().is_none() {
            return Box::pin(async { None });
        }
        let (tx, rx) = oneshot::channel();
        self.spawn_waiters.push(tx);
        self.stop_override = Some((m.signal, m.timeout));
        self.feed(Event::Replace, ctx);
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<DetachSlot> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: DetachSlot, ctx: &mut Self::Context) {
        self.detached = true;
        ctx.stop();
    }
}

impl Handler<UpdateSlotSpec> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: UpdateSlotSpec, _: &mut Self::Context) {
        self.readiness.set_watchdog(m.0.ready.watchdog_timeout.is_some());
        self.spec = m.0;
        self.sockets = m.1;
        self.logs = m.2;
    }
}

impl Handler<StopSlot> for ProcessActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: StopSlot, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        self.feed(Event::Stop, ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<KillSlot> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: KillSlot, ctx: &mut Self::Context) {
        self.feed(Event::Kill, ctx);
    }
}

impl Handler<SignalSlot> for ProcessActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: SignalSlot, _: &mut Self::Context) -> Self::Result {
        let pid = self
            .life
            .state
            .pid()
            .ok_or_else(|| "process is not running".to_string())?;
        // SAFETY: plain syscalls.
        let rc = if m.group {
            unsafe { libc::killpg(pid, m.signal.0) }
        } else {
            unsafe { libc::kill(pid, m.signal.0) }
        };
        if rc != 0 {
            return Err(format!(
                "cannot signal {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

impl Handler<Exited> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: Exited, ctx: &mut Self::Context) {
        if self.life.state == State::Spawning {
            // The reaper knew the pid before the spawner thread told us.
            self.early_exits.push(m);
            return;
        }
        if self.life.state.pid() != Some(m.pid) {
            return; // a process whose exec failed, already accounted for
        }
        if let Some(r) = NotifyRouter::get() {
            r.unregister(m.pid);
        }
        let lived = self.started_at.map_or(Duration::ZERO, |t| t.elapsed());
        // A process that failed its readiness check failed to start, however long it took.
        let failed_ready = self.readiness.phase == Phase::Failed { pid: m.pid };
        let uptime = if failed_ready { Duration::ZERO } else { lived };
        tracing::info!(watcher = %self.spec.name, wid = self.wid, pid = m.pid, status = %m.status, uptime_ms = lived.as_millis() as u64, "exited");
        if !self.readiness.is_ready() && self.last_error.is_none() {
            self.last_error = Some(format!("process exited before it was ready ({})", m.status));
        }
        self.ready_step(Ready::Exited { pid: m.pid }, ctx);
        self.report(SlotEvent::Exited {
            pid: m.pid,
            status: m.status,
            uptime: lived,
        });
        if crate::hooks::configured(&self.spec, crate::hooks::Hook::AfterReap) {
            let (spec, events, wid, pid) = (self.spec.clone(), self.events.clone(), self.wid, m.pid);
            actix::spawn(async move {
                crate::hooks::run(
                    &spec,
                    &events,
                    crate::hooks::Hook::AfterReap,
                    Some(pid),
                    Some(wid),
                )
                .await;
            });
        }
        let group_alive = self.containment.alive_after_exit(&m.group);
        self.feed(
            Event::Exited {
                pid: m.pid,
                uptime,
                group_alive,
            },
            ctx,
        );
    }
}

impl Handler<GroupGone> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: GroupGone, ctx: &mut Self::Context) {
        self.feed(Event::GroupEmpty, ctx);
    }
}

impl Handler<Notify> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: Notify, ctx: &mut Self::Context) {
        let Some(pid) = self.life.state.pid() else { return };
        if let Some(s) = &m.status {
            self.status_text = Some(s.clone());
        }
        if m.reloading {
            self.ready_step(Ready::Reloading { pid }, ctx);
        }
        if m.stopping {
            tracing::info!(watcher = %self.spec.name, wid = self.wid, pid, "process says it is stopping");
        }
        if m.ready {
            self.ready_step(Ready::Passed { pid }, ctx);
        }
        if m.watchdog {
            self.ready_step(Ready::Ping { pid }, ctx);
        }
    }
}

impl Handler<GetProcInfo> for ProcessActor {
    type Result = MessageResult<GetProcInfo>;
    fn handle(&mut self, _: GetProcInfo, _: &mut Self::Context) -> Self::Result {
        MessageResult(ProcInfo {
            wid: self.wid,
            pid: self.life.state.pid(),
            state: self.life.state.name(),
            ready: self.readiness.is_ready(),
            status_text: self.status_text.clone(),
            started: self.started_wall.filter(|_| self.life.state.pid().is_some()),
            restarts: self.spawns.saturating_sub(1),
            argv: self.argv.clone(),
        })
    }
}
