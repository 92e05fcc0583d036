use crate::config::{Signum, WatcherSpec};
use crate::events::Events;
use crate::processes::spawn::InheritedSocket;
use crate::processes::{
    DetachSlot, GetProcInfo, KillSlot, ProcInfo, ProcessActor, ReplaceSlot, SignalSlot, SlotEvent,
    SlotReport, StartSlot, StopSlot, UpdateSlotSpec, WaitReady,
};
use crate::sockets::SocketInfo;
use crate::streams::WatcherLogs;
use actix::prelude::*;
use futures::future::join_all;
use serde_json::json;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherState {
    Stopped,
    Starting,
    Active,
    Stopping,
    Failed,
}

impl WatcherState {
    pub fn as_str(self) -> &'static str {
        match self {
            WatcherState::Stopped => "stopped",
            WatcherState::Starting => "starting",
            WatcherState::Active => "active",
            WatcherState::Stopping => "stopping",
            WatcherState::Failed => "failed",
        }
    }

    fn running(self) -> bool {
        matches!(self, WatcherState::Active | WatcherState::Starting)
    }
}

struct Slot {
    addr: Addr<ProcessActor>,
    id: u64,
    pid: Option<i32>,
    /// Reported `Stopped` since its last spawn (a slot still spawning has
    /// no pid yet but has not ended).
    ended: bool,
}

pub struct WatcherActor {
    spec: Arc<WatcherSpec>,
    sockets: Arc<Vec<InheritedSocket>>,
    /// Keeps the daemon's socket fds open as long as a child may need them.
    fds: Vec<Arc<OwnedFd>>,
    slots: BTreeMap<u32, Slot>,
    /// Wids of slots being stopped by a rollout: not reused until they are gone.
    retiring: std::collections::BTreeSet<u32>,
    numprocesses: u32,
    state: WatcherState,
    events: Events,
    logs: WatcherLogs,
    /// Bumped on every start/stop so a delayed spawn of an old start is dropped.
    generation: u64,
}

/// Pids started, stopped and kept by a start/restart/reload (Circus's
/// `info`), and why it stopped short, if it did.
#[derive(Debug, Clone, Default)]
pub struct StartInfo {
    pub started: Vec<i32>,
    pub kept: Vec<i32>,
    pub stopped: Vec<i32>,
    pub errors: Vec<String>,
}

fn inherited(spec: &WatcherSpec, sockets: &[SocketInfo]) -> (Vec<InheritedSocket>, Vec<Arc<OwnedFd>>) {
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

impl WatcherActor {
    pub fn new(spec: WatcherSpec, sockets: &[SocketInfo], events: Events, logs: WatcherLogs) -> Self {
        let (inh, fds) = inherited(&spec, sockets);
        WatcherActor {
            numprocesses: spec.numprocesses,
            spec: Arc::new(spec),
            sockets: Arc::new(inh),
            fds,
            slots: BTreeMap::new(),
            retiring: Default::default(),
            state: WatcherState::Stopped,
            events,
            logs,
            generation: 0,
        }
    }

    fn publish(&self, event: &str, mut payload: serde_json::Value) {
        if let Some(o) = payload.as_object_mut() {
            o.insert("time".into(), json!(now_f64()));
        }
        self.events.watcher(&self.spec.name, event, payload);
    }

    fn set_state(&mut self, s: WatcherState) {
        if self.state != s {
            tracing::info!(watcher = %self.spec.name, state = s.as_str(), "watcher state");
            self.state = s;
        }
    }

    /// A new slot with the smallest free wid.
    fn add_slot(&mut self, ctx: &mut Context<Self>) -> (u32, Addr<ProcessActor>) {
        let wid = (1..)
            .find(|w| !self.slots.contains_key(w) && !self.retiring.contains(w))
            .unwrap_or(u32::MAX);
        let actor = ProcessActor::new(
            wid,
            self.spec.clone(),
            self.sockets.clone(),
            ctx.address().recipient(),
            self.events.clone(),
            self.logs.clone(),
        );
        let id = actor.slot_id;
        let addr = actor.start();
        self.slots.insert(
            wid,
            Slot {
                addr: addr.clone(),
                id,
                pid: None,
                ended: false,
            },
        );
        (wid, addr)
    }

    /// Adds slots up to numprocesses and starts them, `warmup_delay` apart.
    /// Returns the starts made at once (each resolves when its process has
    /// been spawned).
    fn scale_up(&mut self, ctx: &mut Context<Self>) -> Vec<Request<ProcessActor, StartSlot>> {
        let warmup = self.spec.warmup_delay;
        let gen = self.generation;
        let mut k = 0u32;
        let mut started = Vec::new();
        while (self.slots.len() as u32) < self.numprocesses {
            let (_, addr) = self.add_slot(ctx);
            if warmup.is_zero() || k == 0 {
                started.push(addr.send(StartSlot));
            } else {
                ctx.run_later(warmup * k, move |act, _| {
                    if act.generation == gen {
                        addr.do_send(StartSlot);
                    }
                });
            }
            k += 1;
        }
        started
    }

    /// Stops and removes the highest slots above numprocesses.
    fn scale_down(&mut self, ctx: &mut Context<Self>) {
        while self.slots.len() as u32 > self.numprocesses {
            let Some((_, slot)) = self.slots.pop_last() else {
                break;
            };
            let addr = slot.addr;
            ctx.spawn(
                async move {
                    let _ = addr.send(StopSlot).await;
                }
                .into_actor(self),
            );
        }
    }

    fn stop_all(&mut self) -> impl std::future::Future<Output = ()> {
        let addrs: Vec<Addr<ProcessActor>> = self.slots.values().map(|s| s.addr.clone()).collect();
        async move {
            join_all(addrs.iter().map(|a| a.send(StopSlot))).await;
        }
    }

    fn hook(&self, name: &'static str) -> impl std::future::Future<Output = bool> {
        let (spec, events) = (self.spec.clone(), self.events.clone());
        async move { crate::hooks::run(&spec, &events, name, None, None).await }
    }

    fn start_future(&mut self, ctx: &mut Context<Self>) -> ResponseActFuture<Self, StartInfo> {
        if self.state.running() {
            // Already running: just make sure every slot is there.
            let kept = self.slots.values().filter_map(|s| s.pid).collect();
            self.scale_up(ctx);
            return Box::pin(fut::ready(StartInfo {
                kept,
                ..Default::default()
            }));
        }
        self.generation += 1;
        let gen = self.generation;
        self.set_state(WatcherState::Starting);
        let before = self.hook("before_start");
        Box::pin(before.into_actor(self).then(move |ok, act, ctx| {
            if !ok || act.generation != gen {
                act.set_state(WatcherState::Stopped);
                let info = StartInfo {
                    errors: vec!["before_start hook failed".into()],
                    ..Default::default()
                };
                return Box::pin(fut::ready(info)) as ResponseActFuture<Self, StartInfo>;
            }
            while (act.slots.len() as u32) < act.numprocesses {
                act.add_slot(ctx);
            }
            let kept: Vec<i32> = act.slots.values().filter_map(|s| s.pid).collect();
            let to_start: Vec<Addr<ProcessActor>> = act
                .slots
                .values()
                .filter(|s| s.pid.is_none())
                .map(|s| s.addr.clone())
                .collect();
            // Circus's warmup: one process at a time, `warmup_delay` apart
            // (readiness "delay" waits that long); other readiness kinds start all at once.
            let sequential = act.spec.ready.kind == crate::config::model::ReadyKind::Delay
                && !act.spec.warmup_delay.is_zero();
            let fut = async move {
                let mut info = StartInfo {
                    kept,
                    ..Default::default()
                };
                let mut results = Vec::new();
                if sequential {
                    for a in &to_start {
                        let _ = a.send(StartSlot).await;
                        results.push(a.send(WaitReady).await);
                    }
                } else {
                    join_all(to_start.iter().map(|a| a.send(StartSlot))).await;
                    results = join_all(to_start.iter().map(|a| a.send(WaitReady))).await;
                }
                for r in results {
                    match r {
                        Ok(Ok(pid)) => info.started.push(pid),
                        Ok(Err(e)) => info.errors.push(e),
                        Err(e) => info.errors.push(e.to_string()),
                    }
                }
                info
            };
            Box::pin(fut.into_actor(act).then(move |info, act, _| {
                let after = act.hook("after_start");
                after.into_actor(act).map(move |_, act, _| {
                    if act.generation == gen && act.state == WatcherState::Starting {
                        act.set_state(WatcherState::Active);
                        act.publish("start", json!({}));
                    }
                    info
                })
            }))
        }))
    }

    fn stop_future(&mut self) -> ResponseActFuture<Self, Vec<i32>> {
        self.generation += 1;
        if self.state != WatcherState::Failed {
            self.set_state(WatcherState::Stopping);
        }
        let pids: Vec<i32> = self.slots.values().filter_map(|s| s.pid).collect();
        let before = self.hook("before_stop");
        let fut = self.stop_all();
        Box::pin(
            async move {
                before.await;
                fut.await;
            }
            .into_actor(self)
            .then(move |_, act, _| {
                if act.state != WatcherState::Failed {
                    act.set_state(WatcherState::Stopped);
                }
                act.publish("stop", json!({}));
                act.hook("after_stop").into_actor(act).map(move |_, _, _| pids)
            }),
        )
    }

    /// Replaces `olds` without dropping below the target: start a new process,
    /// wait until it is ready, then stop an old one gracefully, `max_surge` /
    /// `max_unavailable` at a time. A new process that fails readiness stops
    /// the rollout; the old ones keep serving.
    fn rollout(
        &mut self,
        olds: Vec<(u32, i32)>,
        surge: u32,
        unavailable: u32,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, StartInfo> {
        let me = ctx.address();
        let name = self.spec.name.clone();
        let fut = async move {
            let mut info = StartInfo::default();
            let batch = (surge + unavailable).max(1) as usize;
            let mut draining = Vec::new();
            for chunk in olds.chunks(batch) {
                let first = (unavailable as usize).min(chunk.len());
                for (wid, pid) in &chunk[..first] {
                    let _ = me.send(RemoveSlot(*wid)).await;
                    info.stopped.push(*pid);
                }
                let mut news = Vec::new();
                for _ in 0..chunk.len() {
                    if let Ok(n) = me.send(AddSlot).await {
                        news.push(n);
                    }
                }
                join_all(news.iter().map(|(_, a)| a.send(StartSlot))).await;
                let ready = join_all(news.iter().map(|(_, a)| a.send(WaitReady))).await;
                let mut failure = None;
                for r in ready {
                    match r {
                        Ok(Ok(pid)) => info.started.push(pid),
                        Ok(Err(e)) => failure = Some(e),
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
                if let Some(reason) = failure {
                    tracing::error!(watcher = %name, %reason, "rollout stopped: a new process is not ready; keeping the old ones");
                    for (wid, _) in &news {
                        let _ = me.send(RemoveSlot(*wid)).await;
                    }
                    info.errors
                        .push(format!("rollout of {name} stopped, old processes kept: {reason}"));
                    break;
                }
                for (wid, pid) in &chunk[first..] {
                    draining.push(me.send(RemoveSlot(*wid)));
                    info.stopped.push(*pid);
                }
            }
            join_all(draining).await;
            info
        };
        Box::pin(fut.into_actor(self).map(|info, act, _| {
            if info.errors.is_empty() {
                act.publish("reload", json!({}));
            } else {
                act.publish("rollout_failed", json!({"reason": info.errors.join("; ")}));
            }
            info
        }))
    }

    fn running_slots(&self) -> Vec<(u32, i32)> {
        self.slots
            .iter()
            .filter_map(|(w, s)| s.pid.map(|p| (*w, p)))
            .collect()
    }
}

pub fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Actor for WatcherActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        for s in self.slots.values() {
            s.addr.do_send(KillSlot);
        }
    }
}

/// Start the watcher's processes (also leaves `failed`). Resolves once every
/// process is ready or failed readiness.
#[derive(Message)]
#[rtype(result = "StartInfo")]
pub struct StartWatcher;

impl Handler<StartWatcher> for WatcherActor {
    type Result = ResponseActFuture<Self, StartInfo>;
    fn handle(&mut self, _: StartWatcher, ctx: &mut Self::Context) -> Self::Result {
        self.start_future(ctx)
    }
}

/// Stop every process gracefully; resolves with their pids when all are gone.
#[derive(Message)]
#[rtype(result = "Vec<i32>")]
pub struct StopWatcher;

impl Handler<StopWatcher> for WatcherActor {
    type Result = ResponseActFuture<Self, Vec<i32>>;
    fn handle(&mut self, _: StopWatcher, _: &mut Self::Context) -> Self::Result {
        self.stop_future()
    }
}

/// Replace every process: rolling when the watcher runs, else a start.
#[derive(Message)]
#[rtype(result = "StartInfo")]
pub struct RestartWatcher;

impl Handler<RestartWatcher> for WatcherActor {
    type Result = ResponseActFuture<Self, StartInfo>;
    fn handle(&mut self, _: RestartWatcher, ctx: &mut Self::Context) -> Self::Result {
        self.handle(
            ReloadWatcher {
                graceful: true,
                sequential: false,
            },
            ctx,
        )
    }
}

/// Reload: rolling replacement (`max_surge`/`max_unavailable`), or
/// `sequential` (one at a time, old first), SIGHUP with `send_hup`, or stop
/// then start with `graceful = false`.
#[derive(Message)]
#[rtype(result = "StartInfo")]
pub struct ReloadWatcher {
    pub graceful: bool,
    pub sequential: bool,
}

impl Handler<ReloadWatcher> for WatcherActor {
    type Result = ResponseActFuture<Self, StartInfo>;
    fn handle(&mut self, m: ReloadWatcher, ctx: &mut Self::Context) -> Self::Result {
        if !self.state.running() {
            return self.start_future(ctx);
        }
        if !m.graceful {
            let stop = self.stop_future();
            return Box::pin(stop.then(|stopped, act, ctx| {
                act.start_future(ctx).map(move |mut info, _, _| {
                    info.stopped = stopped;
                    info.kept.clear();
                    info
                })
            }));
        }
        let running = self.running_slots();
        if self.spec.send_hup {
            for (_, pid) in &running {
                // SAFETY: plain syscall.
                unsafe { libc::kill(*pid, libc::SIGHUP) };
            }
            self.publish("reload", json!({}));
            let kept = running.iter().map(|(_, p)| *p).collect();
            return Box::pin(fut::ready(StartInfo {
                kept,
                ..Default::default()
            }));
        }
        let (surge, unavailable) = if m.sequential {
            (0, 1)
        } else {
            (self.spec.max_surge, self.spec.max_unavailable)
        };
        self.rollout(running, surge, unavailable, ctx)
    }
}

/// Internal: a new slot for a rollout.
#[derive(Message)]
#[rtype(result = "(u32, Addr<ProcessActor>)")]
struct AddSlot;

impl Handler<AddSlot> for WatcherActor {
    type Result = MessageResult<AddSlot>;
    fn handle(&mut self, _: AddSlot, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.add_slot(ctx))
    }
}

/// Internal: stop a slot gracefully and forget it; resolves when it is gone.
#[derive(Message)]
#[rtype(result = "()")]
struct RemoveSlot(u32);

impl Handler<RemoveSlot> for WatcherActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, m: RemoveSlot, _: &mut Self::Context) -> Self::Result {
        let wid = m.0;
        let slot = self.slots.remove(&wid);
        self.retiring.insert(wid);
        Box::pin(
            async move {
                if let Some(s) = slot {
                    let _ = s.addr.send(StopSlot).await;
                }
            }
            .into_actor(self)
            .map(move |_, act, _| {
                act.retiring.remove(&wid);
            }),
        )
    }
}

/// Stop one process (or all) with an optional signal and graceful_timeout;
/// each is replaced in its slot (Circus's `kill`).
#[derive(Message)]
#[rtype(result = "Result<Vec<i32>, String>")]
pub struct KillProcesses {
    pub pid: Option<i32>,
    pub signal: Option<Signum>,
    pub timeout: Option<std::time::Duration>,
}

impl Handler<KillProcesses> for WatcherActor {
    type Result = ResponseFuture<Result<Vec<i32>, String>>;
    fn handle(&mut self, m: KillProcesses, _: &mut Self::Context) -> Self::Result {
        let targets: Vec<(Addr<ProcessActor>, i32)> = self
            .slots
            .values()
            .filter_map(|s| s.pid.map(|p| (s.addr.clone(), p)))
            .filter(|(_, p)| m.pid.is_none_or(|want| want == *p))
            .collect();
        let name = self.spec.name.clone();
        Box::pin(async move {
            if let (Some(pid), true) = (m.pid, targets.is_empty()) {
                return Err(format!("process {pid} not found in '{name}'"));
            }
            let pids = targets.iter().map(|(_, p)| *p).collect();
            join_all(targets.iter().map(|(a, _)| {
                a.send(ReplaceSlot {
                    signal: m.signal,
                    timeout: m.timeout,
                })
            }))
            .await;
            Ok(pids)
        })
    }
}

/// Use a changed spec (and sockets): new processes get it; with `roll`, the
/// running ones are replaced (rolling).
#[derive(Message)]
#[rtype(result = "StartInfo")]
pub struct UpdateSpec {
    pub spec: WatcherSpec,
    pub sockets: Option<Vec<SocketInfo>>,
    /// New log destinations (when the stream config changed).
    pub logs: Option<WatcherLogs>,
    pub roll: bool,
}

impl Handler<UpdateSpec> for WatcherActor {
    type Result = ResponseActFuture<Self, StartInfo>;
    fn handle(&mut self, m: UpdateSpec, ctx: &mut Self::Context) -> Self::Result {
        if let Some(socks) = &m.sockets {
            let (inh, fds) = inherited(&m.spec, socks);
            self.sockets = Arc::new(inh);
            self.fds = fds;
        }
        if let Some(l) = m.logs {
            self.logs = l;
        }
        let spec = Arc::new(m.spec);
        self.spec = spec.clone();
        for s in self.slots.values() {
            s.addr.do_send(UpdateSlotSpec(
                spec.clone(),
                self.sockets.clone(),
                self.logs.clone(),
            ));
        }
        self.publish("updated", json!({}));
        let resize = self.numprocesses != spec.numprocesses;
        // Resolves once the processes added by a scale-up are spawned.
        let scaled = resize.then(|| self.handle(SetNumProcesses(spec.numprocesses), ctx));
        if m.roll && self.state.running() {
            let running = self.running_slots();
            return self.rollout(running, spec.max_surge, spec.max_unavailable, ctx);
        }
        Box::pin(fut::wrap_future(async move {
            if let Some(scaled) = scaled {
                scaled.await;
            }
            StartInfo::default()
        }))
    }
}

/// Forget every process without stopping it (`rm --nostop`), then stop the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget;

impl Handler<Forget> for WatcherActor {
    type Result = ();
    fn handle(&mut self, _: Forget, ctx: &mut Self::Context) {
        for (_, s) in std::mem::take(&mut self.slots) {
            s.addr.do_send(DetachSlot);
        }
        ctx.stop();
    }
}

/// SIGKILL every process group at once (second SIGINT).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KillWatcher;

impl Handler<KillWatcher> for WatcherActor {
    type Result = ();
    fn handle(&mut self, _: KillWatcher, _: &mut Self::Context) {
        self.generation += 1;
        for s in self.slots.values() {
            s.addr.do_send(KillSlot);
        }
    }
}

/// Change the target number of processes.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct SetNumProcesses(pub u32);

impl Handler<SetNumProcesses> for WatcherActor {
    type Result = ResponseFuture<u32>;
    /// Replies once the added processes have been spawned (as Circus's
    /// `incr` does), so a `list` right after shows their pids.
    fn handle(&mut self, m: SetNumProcesses, ctx: &mut Self::Context) -> Self::Result {
        let n = if self.spec.singleton { m.0.min(1) } else { m.0 };
        self.numprocesses = n;
        if self.spec.numprocesses != n {
            Arc::make_mut(&mut self.spec).numprocesses = n;
        }
        let started = if self.state.running() {
            self.scale_up(ctx)
        } else {
            Vec::new()
        };
        self.scale_down(ctx);
        Box::pin(async move {
            join_all(started).await;
            n
        })
    }
}

/// Send a signal to the watcher's processes (one pid or all).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SignalWatcher {
    pub signal: Signum,
    pub pid: Option<i32>,
    pub group: bool,
}

impl Handler<SignalWatcher> for WatcherActor {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, m: SignalWatcher, _: &mut Self::Context) -> Self::Result {
        let targets: Vec<Addr<ProcessActor>> = self
            .slots
            .values()
            .filter(|s| s.pid.is_some() && (m.pid.is_none() || s.pid == m.pid))
            .map(|s| s.addr.clone())
            .collect();
        let missing = m.pid.is_some() && targets.is_empty();
        let name = self.spec.name.clone();
        Box::pin(async move {
            if missing {
                return Err(format!(
                    "process {} not found in '{name}'",
                    m.pid.unwrap_or_default()
                ));
            }
            for t in targets {
                t.send(SignalSlot {
                    signal: m.signal,
                    group: m.group,
                })
                .await
                .map_err(|e| e.to_string())??;
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone)]
pub struct WatcherStatus {
    pub name: String,
    pub state: WatcherState,
    pub numprocesses: u32,
    pub priority: i64,
    pub processes: Vec<ProcInfo>,
}

#[derive(Message)]
#[rtype(result = "WatcherStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for WatcherActor {
    type Result = ResponseFuture<WatcherStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let addrs: Vec<Addr<ProcessActor>> = self.slots.values().map(|s| s.addr.clone()).collect();
        let base = WatcherStatus {
            name: self.spec.name.clone(),
            state: self.state,
            numprocesses: self.numprocesses,
            priority: self.spec.priority,
            processes: Vec::new(),
        };
        Box::pin(async move {
            let infos = join_all(addrs.iter().map(|a| a.send(GetProcInfo))).await;
            WatcherStatus {
                processes: infos.into_iter().filter_map(Result::ok).collect(),
                ..base
            }
        })
    }
}

/// Just the state (what a plain `status` needs: no fan-out to the processes).
#[derive(Message)]
#[rtype(result = "WatcherState")]
pub struct GetState;

impl Handler<GetState> for WatcherActor {
    type Result = MessageResult<GetState>;
    fn handle(&mut self, _: GetState, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.state)
    }
}

#[derive(Message)]
#[rtype(result = "Arc<WatcherSpec>")]
pub struct GetSpec;

impl Handler<GetSpec> for WatcherActor {
    type Result = MessageResult<GetSpec>;
    fn handle(&mut self, _: GetSpec, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.spec.clone())
    }
}

impl Handler<SlotReport> for WatcherActor {
    type Result = ();
    fn handle(&mut self, m: SlotReport, ctx: &mut Self::Context) {
        let wid = m.wid;
        // Reports of a slot that was replaced under the same wid only feed events.
        let current = self.slots.get(&wid).is_some_and(|s| s.id == m.slot_id);
        fn wid_slot(slots: &mut BTreeMap<u32, Slot>, wid: u32, id: u64) -> Option<&mut Slot> {
            slots.get_mut(&wid).filter(|s| s.id == id)
        }
        match m.event {
            SlotEvent::Spawned { pid } => {
                if let Some(s) = wid_slot(&mut self.slots, wid, m.slot_id) {
                    s.pid = Some(pid);
                    s.ended = false;
                }
                self.publish("spawn", json!({"process_pid": pid, "wid": wid}));
            }
            SlotEvent::Ready { pid } => self.publish("ready", json!({"process_pid": pid, "wid": wid})),
            SlotEvent::ReadyFailed { pid, reason } => self.publish(
                "ready_failed",
                json!({"process_pid": pid, "wid": wid, "reason": reason}),
            ),
            SlotEvent::Exited { pid, status, .. } => {
                if let Some(s) = wid_slot(&mut self.slots, wid, m.slot_id) {
                    if s.pid == Some(pid) {
                        s.pid = None;
                    }
                }
                self.publish(
                    "reap",
                    json!({"process_pid": pid, "wid": wid, "exit_code": status.circus_code()}),
                );
            }
            SlotEvent::Killed { pid, signal } => {
                self.publish(
                    "kill",
                    json!({"process_pid": pid, "wid": wid, "signal": signal.0}),
                );
            }
            SlotEvent::SpawnFailed { reason } => {
                self.publish("spawn_failed", json!({"wid": wid, "reason": reason}));
            }
            SlotEvent::Backoff { delay, failures } => {
                self.publish(
                    "backoff",
                    json!({"wid": wid, "delay": delay.as_secs_f64(), "failures": failures}),
                );
            }
            SlotEvent::Aged { pid } => {
                if current && self.state.running() && self.slots.get(&wid).and_then(|s| s.pid) == Some(pid) {
                    let (surge, unavailable) = (self.spec.max_surge, self.spec.max_unavailable);
                    let f = self.rollout(vec![(wid, pid)], surge, unavailable, ctx);
                    ctx.spawn(f.map(|_, _, _| ()));
                }
            }
            SlotEvent::Failed { failures } => {
                if self.state != WatcherState::Failed && current {
                    self.generation += 1;
                    self.set_state(WatcherState::Failed);
                    tracing::error!(watcher = %self.spec.name, failures, "watcher failed: its processes keep exiting; stopping them (start it again to retry)");
                    self.publish("failed", json!({"wid": wid, "failures": failures}));
                    let fut = self.stop_all();
                    ctx.spawn(fut.into_actor(self));
                }
            }
            SlotEvent::Stopped => {
                if let Some(s) = wid_slot(&mut self.slots, wid, m.slot_id) {
                    s.pid = None;
                    s.ended = true;
                }
                // respawn = false: the watcher stops when its last process is gone.
                if !self.spec.respawn && self.state.running() && self.slots.values().all(|s| s.ended) {
                    self.set_state(WatcherState::Stopped);
                    self.publish("stop", json!({}));
                }
            }
        }
    }
}
