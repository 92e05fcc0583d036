//! The HTTP side's one door into the daemon: an actor on the daemon's event
//! loop (the registries are single-threaded). It answers snapshots and log
//! history, runs actions through the typed supervisor API, and — only while
//! at least one dashboard is connected — samples /proc and pushes changes to
//! the live stream.

use super::counters;
use super::events::{Frame, Hub};
use super::sampler::{self, Histories};
use crate::config::Signum;
use crate::control::context::Ctx;
use crate::supervisor::api::{Act, Op, Scale, Signal};
use crate::supervisor::{ApiError, Selection};
use crate::watchers::{GetStatus, Resize, SignalWatcher, WatcherState};
use actix::prelude::*;
use futures::future::join_all;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Every state `ringmaster_watcher_state` has a series for.
pub(crate) const STATES: [&str; 6] = ["stopped", "starting", "active", "reloading", "stopping", "failed"];

pub(crate) fn state_word(s: WatcherState) -> &'static str {
    match s {
        WatcherState::Stopped | WatcherState::Removed => "stopped",
        WatcherState::Starting => "starting",
        WatcherState::Active => "active",
        WatcherState::Reloading => "reloading",
        WatcherState::Stopping { failed: false } => "stopping",
        WatcherState::Stopping { failed: true } | WatcherState::Failed => "failed",
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProcSnap {
    pub(crate) wid: u32,
    pub(crate) pid: Option<i32>,
    pub(crate) state: &'static str,
    pub(crate) ready: bool,
    /// Unix time.
    pub(crate) started: Option<f64>,
    pub(crate) restarts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct WatcherSnap {
    pub(crate) name: String,
    pub(crate) state: &'static str,
    pub(crate) desired: u32,
    pub(crate) autostart: bool,
    pub(crate) singleton: bool,
    pub(crate) priority: i64,
    pub(crate) restarts: u64,
    pub(crate) processes: Vec<ProcSnap>,
}

impl WatcherSnap {
    pub(crate) fn running(&self) -> usize {
        self.processes.iter().filter(|p| p.pid.is_some()).count()
    }

    pub(crate) fn ready(&self) -> usize {
        self.processes
            .iter()
            .filter(|p| p.pid.is_some() && p.ready)
            .count()
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// Unix time the daemon started.
    pub(crate) started: f64,
    pub(crate) watchers: Vec<WatcherSnap>,
}

/// The actor. `hub` carries frames to the connected dashboards.
pub(crate) struct Bridge {
    ctx: Ctx,
    hub: Hub,
    clients: usize,
    histories: Histories,
    sampler: Option<SpawnHandle>,
    /// A state frame is already scheduled.
    pending: bool,
}

impl Bridge {
    pub(crate) fn new(ctx: Ctx, hub: Hub) -> Bridge {
        Bridge {
            ctx,
            hub,
            clients: 0,
            histories: Histories::default(),
            sampler: None,
            pending: false,
        }
    }
}

impl Actor for Bridge {
    type Context = Context<Self>;
}

/// Reads every watcher's status (through each watcher actor, as `status` does).
fn snapshot(ctx: &Ctx) -> impl std::future::Future<Output = Snapshot> + 'static {
    let started = unix(ctx.started);
    let entries = ctx.registry.by_priority();
    let asks: Vec<_> = entries.iter().map(|e| e.addr.send(GetStatus)).collect();
    async move {
        let answers = join_all(asks).await;
        let watchers = entries
            .into_iter()
            .zip(answers)
            .filter_map(|(e, st)| {
                let st = st.ok()?;
                Some(WatcherSnap {
                    restarts: counters::restarts_of(&e.name),
                    name: e.name,
                    state: state_word(st.state),
                    desired: st.numprocesses,
                    autostart: e.autostart,
                    singleton: e.singleton,
                    priority: st.priority,
                    processes: st
                        .processes
                        .into_iter()
                        .map(|p| ProcSnap {
                            wid: p.wid,
                            pid: p.pid,
                            state: p.state,
                            ready: p.ready,
                            started: p.started.map(unix),
                            restarts: p.restarts,
                        })
                        .collect(),
                })
            })
            .collect();
        Snapshot { started, watchers }
    }
}

/// Answered at once: the daemon's event loop runs (`/healthz`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ping;

impl Handler<Ping> for Bridge {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Self::Context) {}
}

#[derive(Message)]
#[rtype(result = "Snapshot")]
pub(crate) struct GetSnapshot;

impl Handler<GetSnapshot> for Bridge {
    type Result = ResponseFuture<Snapshot>;
    fn handle(&mut self, _: GetSnapshot, _: &mut Self::Context) -> Self::Result {
        Box::pin(snapshot(&self.ctx))
    }
}

/// One line of a watcher's output, as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogLine {
    pub(crate) w: String,
    pub(crate) t: f64,
    pub(crate) pid: u32,
    pub(crate) wid: u32,
    pub(crate) s: &'static str,
    pub(crate) line: String,
}

impl LogLine {
    pub(crate) fn from_record(r: &crate::streams::LogRecord) -> LogLine {
        LogLine {
            w: r.watcher.to_string(),
            t: unix(r.time),
            pid: r.pid,
            wid: r.wid,
            s: r.stream.as_str(),
            line: String::from_utf8_lossy(&r.line).into_owned(),
        }
    }
}

/// The last `lines` lines a watcher printed.
#[derive(Message)]
#[rtype(result = "Result<Vec<LogLine>, ApiError>")]
pub(crate) struct GetLogs {
    pub(crate) watcher: String,
    pub(crate) lines: usize,
}

impl Handler<GetLogs> for Bridge {
    type Result = Result<Vec<LogLine>, ApiError>;
    fn handle(&mut self, m: GetLogs, _: &mut Self::Context) -> Self::Result {
        let w = self
            .ctx
            .registry
            .get(&m.watcher)
            .ok_or_else(|| ApiError::NotFound(format!("program {} not found", m.watcher)))?;
        Ok(w.logs
            .history(None, m.lines, None)
            .iter()
            .map(|r| LogLine::from_record(r))
            .collect())
    }
}

/// What a dashboard button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Start,
    Stop,
    Restart,
    Reload,
    Incr(u32),
    Decr(u32),
    Signal(Signum),
}

/// Runs `action` on one watcher (`None`: all of them).
#[derive(Message, Debug)]
#[rtype(result = "Result<Value, ApiError>")]
pub(crate) struct RunAction {
    pub(crate) action: Action,
    pub(crate) watcher: Option<String>,
}

impl Handler<RunAction> for Bridge {
    type Result = ResponseFuture<Result<Value, ApiError>>;
    fn handle(&mut self, m: RunAction, _: &mut Self::Context) -> Self::Result {
        let ctx = self.ctx.clone();
        Box::pin(async move { run_action(&ctx, m).await })
    }
}

fn unavailable(e: MailboxError) -> ApiError {
    ApiError::Os(format!("supervisor unavailable: {e}"))
}

/// The watchers an action for `watcher` (or all) reaches, for the actions
/// the supervisor API takes one watcher at a time.
fn names(ctx: &Ctx, watcher: &Option<String>) -> Result<Vec<String>, ApiError> {
    match watcher {
        Some(w) => ctx
            .registry
            .get(w)
            .map(|e| vec![e.name])
            .ok_or_else(|| ApiError::NotFound(format!("program {w} not found"))),
        None => Ok(ctx.registry.names()),
    }
}

/// Requests are queued, not awaited to completion: the dashboard sees the
/// outcome in the live state.
async fn run_action(ctx: &Ctx, m: RunAction) -> Result<Value, ApiError> {
    let on = match &m.watcher {
        Some(w) => Selection::one(w),
        None => Selection::All,
    };
    let op = match m.action {
        Action::Start => Some(Op::Start),
        Action::Stop => Some(Op::Stop),
        Action::Restart => Some(Op::Restart),
        Action::Reload => Some(Op::Reload {
            graceful: true,
            sequential: false,
        }),
        _ => None,
    };
    if let Some(op) = op {
        ctx.root.send(Act { op, on }).await.map_err(unavailable)??;
        return Ok(json!({"queued": true}));
    }
    let mut sent = Vec::new();
    for name in names(ctx, &m.watcher)? {
        match m.action {
            Action::Incr(n) | Action::Decr(n) => {
                let by = if matches!(m.action, Action::Incr(_)) {
                    i64::from(n)
                } else {
                    -i64::from(n)
                };
                let to = Resize::By(by);
                ctx.root
                    .send(Scale {
                        name: name.clone(),
                        to,
                    })
                    .await
                    .map_err(unavailable)??;
            }
            Action::Signal(signal) => {
                let done = ctx
                    .root
                    .send(Signal {
                        name: name.clone(),
                        signal: SignalWatcher {
                            signal,
                            pid: None,
                            childpid: None,
                            children: false,
                            recursive: false,
                        },
                    })
                    .await
                    .map_err(unavailable)??;
                if let Some(Err(e)) = done.wait().await {
                    if m.watcher.is_some() {
                        return Err(ApiError::Invalid(e));
                    }
                }
            }
            _ => {}
        }
        sent.push(name);
    }
    Ok(json!({"queued": true, "watchers": sent}))
}

/// A dashboard connected: the initial frames (state, then histories).
#[derive(Message)]
#[rtype(result = "Vec<Frame>")]
pub(crate) struct Join;

/// A dashboard went away.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave;

/// Something happened to a watcher (from the events tap).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Changed;

/// Coalesces a burst of events into one state frame.
const DEBOUNCE: Duration = Duration::from_millis(150);

impl Handler<Join> for Bridge {
    type Result = ResponseFuture<Vec<Frame>>;
    fn handle(&mut self, _: Join, ctx: &mut Self::Context) -> Self::Result {
        self.clients += 1;
        self.hub.set_watched(true);
        if self.sampler.is_none() {
            self.sample(ctx);
            self.sampler = Some(ctx.run_interval(sampler::PERIOD, |act, ctx| act.sample(ctx)));
        }
        let history = Frame::new("history", &json!(self.histories.all()));
        let snap = snapshot(&self.ctx);
        Box::pin(async move { vec![Frame::new("state", &snap.await), history] })
    }
}

impl Handler<Leave> for Bridge {
    type Result = ();
    fn handle(&mut self, _: Leave, ctx: &mut Self::Context) {
        self.clients = self.clients.saturating_sub(1);
        if self.clients == 0 {
            self.hub.set_watched(false);
            if let Some(h) = self.sampler.take() {
                ctx.cancel_future(h);
            }
            self.histories.clear();
        }
    }
}

impl Handler<Changed> for Bridge {
    type Result = ();
    fn handle(&mut self, _: Changed, ctx: &mut Self::Context) {
        if self.clients == 0 || self.pending {
            return;
        }
        self.pending = true;
        ctx.run_later(DEBOUNCE, |act, ctx| {
            act.pending = false;
            let hub = act.hub.clone();
            let snap = snapshot(&act.ctx);
            ctx.spawn(
                async move {
                    hub.send(Frame::new("state", &snap.await));
                }
                .into_actor(act),
            );
        });
    }
}

impl Bridge {
    /// One /proc sample of every live process, pushed as a `stats` frame.
    fn sample(&mut self, ctx: &mut Context<Self>) {
        let snap = snapshot(&self.ctx);
        ctx.spawn(snap.into_actor(self).map(|snap, act, _| {
            let pids: Vec<i32> = snap
                .watchers
                .iter()
                .flat_map(|w| w.processes.iter().filter_map(|p| p.pid))
                .collect();
            let points = act.histories.sample(&pids);
            let t = unix(SystemTime::now());
            let by_pid: serde_json::Map<String, Value> = points
                .into_iter()
                .map(|(pid, p)| (pid.to_string(), json!(p)))
                .collect();
            act.hub.send(Frame::new("stats", &json!({"t": t, "p": by_pid})));
        }));
    }
}
