use crate::config::{Signum, WatcherSpec};
use crate::events::Events;
use crate::processes::spawn::InheritedSocket;
use crate::processes::{
    GetProcInfo, KillSlot, ProcInfo, ProcessActor, ReplaceSlot, SignalSlot, SlotEvent, SlotReport, StartSlot,
    StopSlot,
};
use crate::sockets::SocketInfo;
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
}

struct Slot {
    addr: Addr<ProcessActor>,
    pid: Option<i32>,
}

pub struct WatcherActor {
    spec: Arc<WatcherSpec>,
    sockets: Arc<Vec<InheritedSocket>>,
    /// Keeps the daemon's socket fds open as long as a child may need them.
    _fds: Vec<Arc<OwnedFd>>,
    slots: BTreeMap<u32, Slot>,
    numprocesses: u32,
    state: WatcherState,
    events: Events,
    /// Bumped on every start/stop so a delayed spawn of an old start is dropped.
    generation: u64,
}

impl WatcherActor {
    pub fn new(spec: WatcherSpec, sockets: &[SocketInfo], events: Events) -> Self {
        let inherited = spec
            .sockets
            .iter()
            .filter_map(|n| sockets.iter().find(|s| &s.name == n))
            .map(|s| InheritedSocket {
                name: s.name.clone(),
                fd: s.raw_fd,
            })
            .collect();
        let fds = spec
            .sockets
            .iter()
            .filter_map(|n| sockets.iter().find(|s| &s.name == n))
            .map(|s| s.fd.clone())
            .collect();
        WatcherActor {
            numprocesses: spec.numprocesses,
            spec: Arc::new(spec),
            sockets: Arc::new(inherited),
            _fds: fds,
            slots: BTreeMap::new(),
            state: WatcherState::Stopped,
            events,
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

    fn add_slot(&mut self, wid: u32, ctx: &mut Context<Self>) -> Addr<ProcessActor> {
        let addr = ProcessActor::new(
            wid,
            self.spec.clone(),
            self.sockets.clone(),
            ctx.address().recipient(),
        )
        .start();
        self.slots.insert(
            wid,
            Slot {
                addr: addr.clone(),
                pid: None,
            },
        );
        addr
    }

    /// Starts slots 1..=n that are not there yet, `warmup_delay` apart.
    fn scale_up(&mut self, ctx: &mut Context<Self>) {
        let warmup = self.spec.warmup_delay;
        let gen = self.generation;
        let mut k = 0u32;
        for wid in 1..=self.numprocesses {
            if self.slots.contains_key(&wid) {
                continue;
            }
            let addr = self.add_slot(wid, ctx);
            if warmup.is_zero() || k == 0 {
                addr.do_send(StartSlot);
            } else {
                ctx.run_later(warmup * k, move |act, _| {
                    if act.generation == gen {
                        addr.do_send(StartSlot);
                    }
                });
            }
            k += 1;
        }
    }

    /// Stops and removes slots above numprocesses.
    fn scale_down(&mut self, ctx: &mut Context<Self>) {
        let extra: Vec<u32> = self
            .slots
            .keys()
            .copied()
            .filter(|w| *w > self.numprocesses)
            .collect();
        for wid in extra {
            if let Some(slot) = self.slots.remove(&wid) {
                let addr = slot.addr;
                ctx.spawn(
                    async move {
                        let _ = addr.send(StopSlot).await;
                    }
                    .into_actor(self),
                );
            }
        }
    }

    fn stop_all(&mut self) -> impl std::future::Future<Output = ()> {
        let addrs: Vec<Addr<ProcessActor>> = self.slots.values().map(|s| s.addr.clone()).collect();
        async move {
            join_all(addrs.iter().map(|a| a.send(StopSlot))).await;
        }
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

/// Pids started and kept by a start/restart (Circus's `info`).
#[derive(Debug, Clone, Default)]
pub struct StartInfo {
    pub started: Vec<i32>,
    pub kept: Vec<i32>,
    pub stopped: Vec<i32>,
}

/// Start the watcher's processes (also leaves `failed`). Resolves once every
/// slot made its first spawn attempt, `warmup_delay` apart.
#[derive(Message)]
#[rtype(result = "StartInfo")]
pub struct StartWatcher;

impl WatcherActor {
    fn start_future(&mut self, ctx: &mut Context<Self>) -> ResponseActFuture<Self, StartInfo> {
        let was_running = matches!(self.state, WatcherState::Active | WatcherState::Starting);
        let kept: Vec<i32> = self.slots.values().filter_map(|s| s.pid).collect();
        if !was_running {
            self.generation += 1;
            self.set_state(WatcherState::Starting);
        }
        let gen = self.generation;
        for wid in 1..=self.numprocesses {
            if !self.slots.contains_key(&wid) {
                self.add_slot(wid, ctx);
            }
        }
        let to_start: Vec<Addr<ProcessActor>> = self
            .slots
            .iter()
            .filter(|(wid, s)| **wid <= self.numprocesses && s.pid.is_none())
            .map(|(_, s)| s.addr.clone())
            .collect();
        let warmup = self.spec.warmup_delay;
        let fut = async move {
            let mut started = Vec::new();
            for (i, addr) in to_start.iter().enumerate() {
                if i > 0 && !warmup.is_zero() {
                    actix::clock::sleep(warmup).await;
                }
                if let Ok(Some(pid)) = addr.send(StartSlot).await {
                    started.push(pid);
                }
            }
            started
        };
        Box::pin(fut.into_actor(self).map(move |started, act, _| {
            if act.generation == gen && act.state == WatcherState::Starting {
                act.set_state(WatcherState::Active);
                act.publish("start", json!({}));
            }
            StartInfo {
                started,
                kept,
                stopped: Vec::new(),
            }
        }))
    }

    fn stop_future(&mut self) -> ResponseActFuture<Self, Vec<i32>> {
        self.generation += 1;
        if self.state != WatcherState::Failed {
            self.set_state(WatcherState::Stopping);
        }
        let pids: Vec<i32> = self.slots.values().filter_map(|s| s.pid).collect();
        let fut = self.stop_all();
        Box::pin(fut.into_actor(self).map(move |_, act, _| {
            if act.state != WatcherState::Failed {
                act.set_state(WatcherState::Stopped);
            }
            act.publish("stop", json!({}));
            pids
        }))
    }
}

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

/// Stop then start.
#[derive(Message)]
#[rtype(result = "StartInfo")]
pub struct RestartWatcher;

impl Handler<RestartWatcher> for WatcherActor {
    type Result = ResponseActFuture<Self, StartInfo>;
    fn handle(&mut self, _: RestartWatcher, _: &mut Self::Context) -> Self::Result {
        let stop = self.stop_future();
        Box::pin(stop.then(|stopped, act, ctx| {
            act.start_future(ctx).map(move |mut info, _, _| {
                info.stopped = stopped;
                info.kept.clear();
                info
            })
        }))
    }
}

/// Replace processes one after the other (graceful reload), or send SIGHUP
/// to each when the watcher has `send_hup`.
#[derive(Message)]
#[rtype(result = "StartInfo")]
pub struct ReloadWatcher {
    pub graceful: bool,
}

impl Handler<ReloadWatcher> for WatcherActor {
    type Result = ResponseActFuture<Self, StartInfo>;
    fn handle(&mut self, m: ReloadWatcher, ctx: &mut Self::Context) -> Self::Result {
        if !m.graceful {
            return self.handle(RestartWatcher, ctx);
        }
        if !matches!(self.state, WatcherState::Active | WatcherState::Starting) {
            return self.start_future(ctx);
        }
        let running: Vec<(Addr<ProcessActor>, i32)> = self
            .slots
            .values()
            .filter_map(|s| s.pid.map(|p| (s.addr.clone(), p)))
            .collect();
        if self.spec.send_hup {
            for (_, pid) in &running {
                // SAFETY: plain syscall.
                unsafe { libc::kill(*pid, libc::SIGHUP) };
            }
            let kept = running.iter().map(|(_, p)| *p).collect();
            self.publish("reload", json!({}));
            return Box::pin(fut::ready(StartInfo {
                kept,
                ..Default::default()
            }));
        }
        let warmup = self.spec.warmup_delay;
        let fut = async move {
            let mut info = StartInfo::default();
            for (i, (addr, pid)) in running.iter().enumerate() {
                if i > 0 && !warmup.is_zero() {
                    actix::clock::sleep(warmup).await;
                }
                info.stopped.push(*pid);
                if let Ok(Some(new)) = addr
                    .send(ReplaceSlot {
                        signal: None,
                        timeout: None,
                    })
                    .await
                {
                    info.started.push(new);
                }
            }
            info
        };
        Box::pin(fut.into_actor(self).map(|info, act, _| {
            act.publish("reload", json!({}));
            info
        }))
    }
}

/// Stop one process (or all) with an optional signal and timeout; the
/// watcher replaces it if it is running (Circus's `kill`).
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

/// Use a changed spec: new processes get it; `restart` replaces the running ones.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateSpec {
    pub spec: WatcherSpec,
    pub restart: bool,
}

impl Handler<UpdateSpec> for WatcherActor {
    type Result = ();
    fn handle(&mut self, m: UpdateSpec, ctx: &mut Self::Context) {
        let spec = Arc::new(m.spec);
        self.spec = spec.clone();
        for s in self.slots.values() {
            s.addr.do_send(crate::processes::UpdateSlotSpec(spec.clone()));
        }
        self.publish("updated", json!({}));
        if m.restart && matches!(self.state, WatcherState::Active | WatcherState::Starting) {
            let f = self.handle(ReloadWatcher { graceful: true }, ctx);
            ctx.spawn(f.map(|_, _, _| ()));
        } else if self.numprocesses != spec.numprocesses {
            self.handle(SetNumProcesses(spec.numprocesses), ctx);
        }
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
            s.addr.do_send(crate::processes::DetachSlot);
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
    type Result = u32;
    fn handle(&mut self, m: SetNumProcesses, ctx: &mut Self::Context) -> u32 {
        let n = if self.spec.singleton { m.0.min(1) } else { m.0 };
        self.numprocesses = n;
        if matches!(self.state, WatcherState::Active | WatcherState::Starting) {
            self.scale_up(ctx);
        }
        self.scale_down(ctx);
        n
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
        match m.event {
            SlotEvent::Spawned { pid } => {
                if let Some(s) = self.slots.get_mut(&wid) {
                    s.pid = Some(pid);
                }
                self.publish("spawn", json!({"process_pid": pid, "wid": wid}));
            }
            SlotEvent::Exited { pid, status, .. } => {
                if let Some(s) = self.slots.get_mut(&wid) {
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
            SlotEvent::Failed { failures } => {
                if self.state != WatcherState::Failed {
                    self.generation += 1;
                    self.set_state(WatcherState::Failed);
                    tracing::error!(watcher = %self.spec.name, failures, "watcher failed: its processes keep exiting; stopping them (start it again to retry)");
                    self.publish("failed", json!({"wid": wid, "failures": failures}));
                    let fut = self.stop_all();
                    ctx.spawn(fut.into_actor(self));
                }
            }
            SlotEvent::Stopped => {
                if let Some(s) = self.slots.get_mut(&wid) {
                    s.pid = None;
                }
                // respawn = false: the watcher stops when its last process is gone.
                if !self.spec.respawn
                    && self.state == WatcherState::Active
                    && self.slots.values().all(|s| s.pid.is_none())
                {
                    self.set_state(WatcherState::Stopped);
                    self.publish("stop", json!({}));
                }
            }
        }
    }
}
