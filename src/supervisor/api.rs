//! The typed supervisor API: every request that changes what runs. The root
//! actor handles each one at once, in arrival order — registry changes are
//! made and the watchers' commands are queued before the next request is
//! read — and returns a [`Done`] handle that resolves when the request has
//! taken effect. The control channel, SIGHUP and start-up all go through it;
//! whoever does not want to wait drops the handle and the work goes on.

use super::registry::{Selection, WatcherEntry};
use super::root::Supervisor;
use crate::config::Signum;
use crate::events::WatcherEvent;
use crate::watchers::{
    Command, EditSpec, Gate, KillProcesses, Outcome, Resize, RestartHow, Sequenced, SignalWatcher, SpecEdit,
    WatcherActor,
};
use actix::prelude::*;
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use tokio::sync::oneshot;

/// Why a request was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No such watcher, or a pattern that matches none.
    NotFound(String),
    AlreadyExists(String),
    /// The request's content is invalid (a bad spec, a bad pattern).
    Invalid(String),
    /// The OS refused (a bind, an unwritable log file).
    Os(String),
    /// The daemon is stopping: nothing new starts.
    ShuttingDown,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NotFound(m) | ApiError::AlreadyExists(m) | ApiError::Invalid(m) | ApiError::Os(m) => {
                f.write_str(m)
            }
            ApiError::ShuttingDown => f.write_str("the daemon is shutting down"),
        }
    }
}

/// Resolves when a request has taken effect.
pub struct Done<T>(oneshot::Receiver<T>);

impl<T: 'static> Done<T> {
    /// Runs `fut` on the daemon's event loop; the handle yields its output.
    pub(super) fn spawn(fut: impl Future<Output = T> + 'static) -> Done<T> {
        let (tx, rx) = oneshot::channel();
        actix::spawn(async move {
            let _ = tx.send(fut.await);
        });
        Done(rx)
    }

    pub(super) fn ready(v: T) -> Done<T> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(v);
        Done(rx)
    }

    /// The result; `None` if the daemon shut down first.
    pub async fn wait(self) -> Option<T> {
        self.0.await.ok()
    }
}

pub type Reply<T> = Result<Done<T>, ApiError>;

/// What to do to a selection of watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// One named watcher starts even with `autostart = false`; a pattern or
    /// all starts the autostart ones, highest priority first.
    Start,
    /// Lowest priority first.
    Stop,
    /// One watcher: rolling replacement. Several: stop all, then start the
    /// autostart ones (as Circus).
    Restart,
    /// Each selected watcher in turn: rolling (or `sequential`), or stop and
    /// start with `graceful = false`; `send_hup` watchers get SIGHUP.
    Reload { graceful: bool, sequential: bool },
}

/// Apply `op` to the selected watchers; yields each watcher's outcome.
#[derive(Message)]
#[rtype(result = "Reply<Vec<(String, Outcome)>>")]
pub struct Act {
    pub op: Op,
    pub on: Selection,
}

type Pending = (String, Request<WatcherActor, Command>);

/// Queues `c` on every watcher at once (so no later request overtakes it).
fn send_all(ws: &[WatcherEntry], c: Command) -> Vec<Pending> {
    ws.iter().map(|w| (w.name.clone(), w.addr.send(c))).collect()
}

/// Queues `c` on every watcher now (so no later request overtakes it);
/// each one's operation begins once the previous watcher's has taken effect
/// (priority order).
fn in_turn(ws: &[WatcherEntry], c: Command) -> impl Future<Output = Vec<(String, Outcome)>> + 'static {
    chain(ws.iter().map(|w| (w, c)).collect())
}

/// Queues every (watcher, command) now; each operation begins once the
/// previous one has taken effect.
fn chain(steps: Vec<(&WatcherEntry, Command)>) -> impl Future<Output = Vec<(String, Outcome)>> + 'static {
    let (first, mut gate) = Gate::new();
    let _ = first.send(());
    let mut queued = Vec::new();
    for (w, command) in steps {
        let (open, next) = Gate::new();
        let after = std::mem::replace(&mut gate, next);
        let r = w.addr.send(Sequenced { command, after });
        queued.push((w.name.clone(), r, open));
    }
    async move {
        let mut out = Vec::new();
        for (name, r, open) in queued {
            out.push((
                name,
                r.await.unwrap_or(Outcome::Canceled("the watcher went away")),
            ));
            let _ = open.send(());
        }
        out
    }
}

async fn outcomes(reqs: Vec<Pending>) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    for (name, r) in reqs {
        out.push((
            name,
            r.await.unwrap_or(Outcome::Canceled("the watcher went away")),
        ));
    }
    out
}

impl Handler<Act> for Supervisor {
    type Result = MessageResult<Act>;
    fn handle(&mut self, m: Act, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.open() {
            return MessageResult(Err(e));
        }
        let single = matches!(&m.on, Selection::Named { .. });
        let mut ws = match self.registry.select(&m.on) {
            Ok(ws) => ws,
            Err(e) => return MessageResult(Err(ApiError::NotFound(e))),
        };
        let one = single && ws.len() == 1;
        self.touched.extend(ws.iter().map(|w| w.name.clone()));
        let done = match m.op {
            Op::Start => {
                if !one {
                    ws.retain(|w| w.autostart);
                }
                Done::spawn(in_turn(&ws, Command::Start))
            }
            Op::Stop => {
                ws.reverse();
                Done::spawn(outcomes(send_all(&ws, Command::Stop)))
            }
            Op::Restart if one => Done::spawn(outcomes(send_all(&ws, Command::Restart(RestartHow::Rolling)))),
            Op::Restart => {
                // Stop lowest priority first, then start highest first, one at a time.
                let stops = ws.iter().rev().map(|w| (w, Command::Stop));
                let starts = ws.iter().filter(|w| w.autostart).map(|w| (w, Command::Start));
                Done::spawn(chain(stops.chain(starts).collect()))
            }
            Op::Reload { graceful, sequential } => {
                let how = match (graceful, sequential) {
                    (false, _) => RestartHow::StopStart,
                    (true, true) => RestartHow::Sequential,
                    (true, false) => RestartHow::Rolling,
                };
                Done::spawn(in_turn(&ws, Command::Restart(how)))
            }
        };
        MessageResult(Ok(done))
    }
}

/// Change a watcher's numprocesses; yields the new number (and whether the
/// watcher is a singleton) once the added processes are spawned.
#[derive(Message)]
#[rtype(result = "Reply<(u32, bool)>")]
pub struct Scale {
    pub name: String,
    pub to: Resize,
}

impl Handler<Scale> for Supervisor {
    type Result = MessageResult<Scale>;
    fn handle(&mut self, m: Scale, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.forward(&m.name, m.to, |r| r.unwrap_or((0, false))))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("program {name} not found"))
}

impl Supervisor {
    /// Nothing new is accepted once the daemon is stopping.
    fn open(&self) -> Result<(), ApiError> {
        if self.stopping {
            Err(ApiError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Queues `msg` on the watcher called `name` now (so no later request
    /// overtakes it); the handle yields its answer, through `map`.
    fn forward<M, T>(
        &mut self,
        name: &str,
        msg: M,
        map: impl FnOnce(Result<M::Result, MailboxError>) -> T + 'static,
    ) -> Reply<T>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        WatcherActor: Handler<M>,
        T: 'static,
    {
        let r = self.target(name)?.addr.send(msg);
        Ok(Done::spawn(async move { map(r.await) }))
    }

    /// The watcher a request names, while the daemon accepts requests.
    fn target(&mut self, name: &str) -> Result<WatcherEntry, ApiError> {
        self.open()?;
        let w = self.registry.get(name).ok_or_else(|| not_found(name))?;
        self.touched.insert(w.name.clone());
        Ok(w)
    }
}

/// Create a watcher from Circus-style options (the config file's keys),
/// optionally starting it; yields the start's outcome.
#[derive(Message)]
#[rtype(result = "Reply<Option<Outcome>>")]
pub struct AddWatcher {
    pub name: String,
    pub options: serde_json::Map<String, serde_json::Value>,
    pub start: bool,
}

impl Handler<AddWatcher> for Supervisor {
    type Result = MessageResult<AddWatcher>;
    fn handle(&mut self, m: AddWatcher, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.add(m))
    }
}

impl Supervisor {
    fn add(&mut self, m: AddWatcher) -> Reply<Option<Outcome>> {
        self.open()?;
        let key = m.name.to_lowercase();
        if self.registry.contains(&key) {
            return Err(ApiError::AlreadyExists(format!("'{}' already exist", m.name)));
        }
        let spec = {
            let cfg = self.config.borrow();
            crate::config::watcher_from_json(&key, m.options, &cfg.global_env, &self.sockets.names())
                .map_err(ApiError::Invalid)?
        };
        let entry = self
            .add_watcher(spec)
            .map_err(|e| ApiError::Os(format!("{e:#}")))?;
        self.events.watcher(
            &key,
            WatcherEvent::Add,
            json!({"time": crate::watchers::now_f64()}),
        );
        if !m.start {
            return Ok(Done::ready(None));
        }
        let r = entry.addr.send(Command::Start);
        Ok(Done::spawn(async move { r.await.ok() }))
    }
}

/// Remove a watcher: stop its processes (or leave them running with
/// `stop: false`); yields when it is gone.
#[derive(Message)]
#[rtype(result = "Reply<()>")]
pub struct RemoveWatcher {
    pub name: String,
    pub stop: bool,
}

impl Handler<RemoveWatcher> for Supervisor {
    type Result = MessageResult<RemoveWatcher>;
    fn handle(&mut self, m: RemoveWatcher, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.open() {
            return MessageResult(Err(e));
        }
        MessageResult(match self.remove_watcher(&m.name, m.stop) {
            Some(gone) => Ok(Done::spawn(gone)),
            None => Err(not_found(&m.name)),
        })
    }
}

/// Change a watcher's spec (`set`): the edit is applied by the watcher, so
/// concurrent changes never overwrite each other. The handle yields at once
/// whether the edit was refused; if not, the inner handle yields the outcome
/// (a failed rollout keeps the previous spec).
#[derive(Message)]
#[rtype(result = "Reply<Result<Done<Outcome>, String>>")]
pub struct Update {
    pub name: String,
    pub edit: SpecEdit,
}

impl Handler<Update> for Supervisor {
    type Result = MessageResult<Update>;
    fn handle(&mut self, m: Update, ctx: &mut Self::Context) -> Self::Result {
        let w = match self.target(&m.name) {
            Ok(w) => w,
            Err(e) => return MessageResult(Err(e)),
        };
        let r = w.addr.send(EditSpec(m.edit));
        let root = ctx.address();
        MessageResult(Ok(Done::spawn(async move {
            match r.await {
                Ok(Ok((rx, priority))) => {
                    if priority != w.priority {
                        root.do_send(SetPriority {
                            name: w.name,
                            priority,
                        });
                    }
                    Ok(Done(rx))
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("watcher unavailable: {e}")),
            }
        })))
    }
}

/// Internal: a `set priority` moved a watcher in the start and stop order.
#[derive(Message)]
#[rtype(result = "()")]
struct SetPriority {
    name: String,
    priority: i64,
}

impl Handler<SetPriority> for Supervisor {
    type Result = ();
    fn handle(&mut self, m: SetPriority, _: &mut Self::Context) {
        self.registry.set_priority(&m.name, m.priority);
    }
}

/// Send a signal to a watcher's processes (`signal`); see [`SignalWatcher`].
#[derive(Message)]
#[rtype(result = "Reply<Result<(), String>>")]
pub struct Signal {
    pub name: String,
    pub signal: SignalWatcher,
}

impl Handler<Signal> for Supervisor {
    type Result = MessageResult<Signal>;
    fn handle(&mut self, m: Signal, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.forward(&m.name, m.signal, |r| r.unwrap_or_else(|e| Err(e.to_string()))))
    }
}

/// Replace one process (or all) of a watcher, stopping it with `signal`
/// and `timeout` (Circus's `kill`). The handle yields at once the pids being
/// replaced (or why none is); the inner handle resolves once each has its
/// new process.
#[derive(Message)]
#[rtype(result = "Reply<Result<(Vec<i32>, Done<()>), String>>")]
pub struct Kill {
    pub name: String,
    pub pid: Option<i32>,
    pub signal: Option<Signum>,
    pub timeout: Option<Duration>,
}

impl Handler<Kill> for Supervisor {
    type Result = MessageResult<Kill>;
    fn handle(&mut self, m: Kill, _: &mut Self::Context) -> Self::Result {
        let kill = KillProcesses {
            pid: m.pid,
            signal: m.signal,
            timeout: m.timeout,
        };
        MessageResult(self.forward(&m.name, kill, |r| match r {
            Ok(Ok((pids, rx))) => Ok((pids, Done(rx))),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }))
    }
}
