//! The root actor. It owns the socket registry (one [`SocketActor`] per
//! socket, bound before anything starts), the watcher registry and the
//! running config, and is the only writer of all three: every change goes
//! through the typed requests in `api.rs` and `reload.rs`. Start-up runs
//! watchers in priority order; shutdown stops them lowest priority first,
//! flushes the control channel, then closes the sockets.

use super::registry::{Registry, SocketRegistry, WatcherEntry};
use crate::config::{Config, WatcherSpec};
use crate::control::pubsub::Publisher;
use crate::control::transport::ControlHandle;
use crate::events::{Events, WatcherEvent};
use crate::sockets::{BoundSocket, SocketActor, SocketInfo, StopSocket};
use crate::streams::LogHub;
use crate::systemd::Notifier;
use crate::watchers::{Command, GetStatus, KillWatcher, WatcherActor, WatcherState};
use actix::prelude::*;
use futures::future::join_all;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Things the root closes last, in this order, at shutdown.
#[derive(Default)]
pub struct Closers {
    pub control: Option<ControlHandle>,
    pub logs: Option<LogHub>,
    pub publishers: Vec<Publisher>,
    pub on_exit: Vec<Box<dyn FnOnce()>>,
}

pub struct Supervisor {
    pub(super) config: Rc<RefCell<Config>>,
    pub(super) sockets: SocketRegistry,
    pub(super) registry: Registry,
    pub(super) events: Events,
    pub(super) hub: LogHub,
    pub(super) closers: Rc<RefCell<Closers>>,
    pub(super) stopping: bool,
    /// Restored by an upgrade: the watchers are as the previous image left them, no autostart.
    pub(super) restored: bool,
    /// Watchers an operator's request has reached: a delayed autostart
    /// (global `warmup_delay`) leaves them alone, the later command wins.
    pub(super) touched: std::collections::HashSet<String>,
    /// The service manager's notify socket, when we run under one.
    pub(super) notifier: Option<Notifier>,
    /// `WATCHDOG=1` period, when the manager asked for keep-alives.
    watchdog: Option<Duration>,
    /// A `STATUS=` refresh is scheduled (see [`RefreshStatus`]).
    status_pending: bool,
    /// The daemon's exit code: 0 unless a critical watcher ended it.
    exit_code: i32,
}

impl Supervisor {
    /// Registers the bound sockets and creates (but does not start) every
    /// configured watcher. An unwritable log file is an error.
    pub fn new(
        config: Rc<RefCell<Config>>,
        bound: Vec<BoundSocket>,
        events: Events,
        hub: LogHub,
        closers: Rc<RefCell<Closers>>,
    ) -> anyhow::Result<Supervisor> {
        let s = Supervisor {
            config,
            sockets: SocketRegistry::default(),
            registry: Registry::default(),
            events,
            hub,
            closers,
            stopping: false,
            restored: false,
            touched: Default::default(),
            notifier: None,
            watchdog: None,
            status_pending: false,
            exit_code: 0,
        };
        for b in bound {
            let (addr, info) = SocketActor::launch(b);
            s.sockets.insert(info, addr);
        }
        let specs = s.config.borrow().watchers.clone();
        for w in specs {
            s.add_watcher(w)?;
        }
        Ok(s)
    }

    /// Speak sd_notify to the service manager: READY, RELOADING, STOPPING,
    /// STATUS and, every `watchdog`, WATCHDOG=1.
    pub(crate) fn with_notifier(mut self, notifier: Option<Notifier>, watchdog: Option<Duration>) -> Self {
        self.notifier = notifier;
        self.watchdog = watchdog;
        self
    }

    /// Tells the service manager we are ready, with a summary of what runs.
    pub(super) fn announce_ready(&self) -> impl std::future::Future<Output = ()> + 'static {
        let (notifier, registry) = (self.notifier.clone(), self.registry.clone());
        async move {
            if let Some(n) = notifier {
                n.ready(&summary(&registry).await);
            }
        }
    }

    /// Read handles on the registries, for the control commands.
    pub fn registries(&self) -> (Registry, SocketRegistry) {
        (self.registry.clone(), self.sockets.clone())
    }

    /// Opens a watcher's log streams, with its history; an unwritable file
    /// is an error.
    pub(super) fn open_logs(&self, spec: &WatcherSpec) -> anyhow::Result<crate::streams::WatcherLogs> {
        let history = spec
            .history_lines
            .unwrap_or_else(|| self.hub.default_history_lines());
        self.hub
            .add_watcher(&spec.name, &spec.stdout_stream, &spec.stderr_stream, history)
    }

    /// Opens the watcher's log streams (an unwritable file is an error),
    /// starts its actor and registers it.
    pub(super) fn add_watcher(&self, spec: WatcherSpec) -> anyhow::Result<WatcherEntry> {
        if self.registry.contains(&spec.name) {
            anyhow::bail!("a watcher called {:?} already exists", spec.name);
        }
        let logs = self.open_logs(&spec)?;
        let infos: Vec<SocketInfo> = self.sockets.infos();
        let e = WatcherEntry {
            name: spec.name.to_lowercase(),
            priority: spec.priority,
            autostart: spec.autostart,
            singleton: spec.singleton,
            addr: WatcherActor::new(spec, &infos, self.events.clone(), logs.clone()).launch(),
            logs,
        };
        self.registry.insert(e.clone());
        Ok(e)
    }

    /// Takes a watcher out of the registry and tells it to stop (or forget
    /// its processes); resolves when it is gone and its logs are closed.
    pub(super) fn remove_watcher(
        &self,
        name: &str,
        stop: bool,
    ) -> Option<impl std::future::Future<Output = ()>> {
        let w = self.registry.remove(name)?;
        self.events.watcher(
            &w.name,
            WatcherEvent::Remove,
            serde_json::json!({"time": crate::watchers::now_f64()}),
        );
        let done = w.addr.send(Command::Remove { stop });
        Some(async move {
            let _ = done.await;
            w.logs.close().await;
        })
    }
}

/// Root mailbox: holds every request, so none overtakes another.
const MAILBOX: usize = 1 << 16;

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        for info in self.sockets.infos() {
            tracing::info!(socket = %info.name, address = %info.local, fd = info.raw_fd, "listening");
        }
        let delay = self.config.borrow().global.warmup_delay;
        let watchers = self.registry.by_priority();
        // Each start reports its outcome, so READY=1 waits until they all finished.
        let mut started = Vec::new();
        for (k, w) in watchers
            .iter()
            .filter(|w| w.autostart && !self.restored)
            .enumerate()
        {
            let addr = w.addr.clone();
            let (tx, rx) = oneshot::channel::<()>();
            started.push(rx);
            let start = move || {
                let r = addr.send(Command::Start);
                actix::spawn(async move {
                    let _ = r.await;
                    let _ = tx.send(());
                });
            };
            if delay.is_zero() {
                start();
            } else {
                let name = w.name.clone();
                ctx.run_later(delay * k as u32, move |act, _| {
                    if !act.stopping && !act.touched.contains(&name) {
                        start();
                    }
                });
            }
        }
        for w in watchers.iter().filter(|w| !w.autostart && !self.restored) {
            tracing::info!(watcher = %w.name, "autostart = false: not started");
        }
        if self.notifier.is_some() {
            ctx.spawn(join_all(started).into_actor(self).then(|_, act, _| {
                // A shutdown that came first has said STOPPING=1 already.
                let ready = (!act.stopping).then(|| act.announce_ready());
                async move {
                    if let Some(r) = ready {
                        r.await;
                    }
                }
                .into_actor(act)
            }));
        }
        if self.notifier.is_some() {
            // The manager's STATUS= line follows the watchers: every watcher
            // event asks for a refresh (see RefreshStatus).
            let me = ctx.address();
            self.events.add_tap(std::sync::Arc::new(move |topic: String, _| {
                if topic.starts_with("watcher.") {
                    me.do_send(RefreshStatus);
                }
            }));
        }
        if let (Some(n), Some(period)) = (self.notifier.clone(), self.watchdog) {
            // From the root actor's own loop: a stuck supervisor stops the keep-alives.
            ctx.run_interval(period, move |_, _| n.watchdog());
        }
    }
}

/// How long a `STATUS=` refresh waits, so that a burst of events (a
/// restart of 100 processes) sends one line, not 200.
const STATUS_DEBOUNCE: Duration = Duration::from_millis(500);

/// A watcher event happened: the service manager's `STATUS=` line is sent
/// again with the current summary, at most once per [`STATUS_DEBOUNCE`].
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RefreshStatus;

impl Handler<RefreshStatus> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: RefreshStatus, ctx: &mut Self::Context) {
        if self.status_pending || self.stopping || self.notifier.is_none() {
            return;
        }
        self.status_pending = true;
        ctx.run_later(STATUS_DEBOUNCE, |act, ctx| {
            act.status_pending = false;
            let (Some(n), false) = (act.notifier.clone(), act.stopping) else {
                return;
            };
            let registry = act.registry.clone();
            ctx.spawn(async move { n.status(&summary(&registry).await) }.into_actor(act));
        });
    }
}

/// Stop everything and end the daemon.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// SIGKILL every process group now instead of stopping gracefully.
    pub immediate: bool,
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, m: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let watchers = self.registry.by_priority();
        if m.immediate {
            tracing::warn!("stopping now: killing every process group");
            for w in &watchers {
                w.addr.do_send(KillWatcher);
            }
        }
        if self.stopping {
            return Box::pin(fut::ready(()));
        }
        self.stopping = true;
        if let Some(n) = &self.notifier {
            n.stopping();
        }
        let timeout = self.config.borrow().global.shutdown_timeout;
        ctx.run_later(timeout, move |act, ctx| act.shutdown_overdue(timeout, ctx));
        tracing::info!("stopping all watchers");
        // Lowest priority first; watchers of equal priority stop together.
        let mut groups: BTreeMap<i64, Vec<Addr<WatcherActor>>> = BTreeMap::new();
        for w in &watchers {
            groups.entry(w.priority).or_default().push(w.addr.clone());
        }
        let closers = self.closers.clone();
        let fut = async move {
            for (_, addrs) in groups {
                join_all(addrs.iter().map(|a| a.send(Command::Stop))).await;
            }
            let (control, publisher, on_exit, logs) = {
                let mut c = closers.borrow_mut();
                (
                    c.control.take(),
                    std::mem::take(&mut c.publishers),
                    std::mem::take(&mut c.on_exit),
                    c.logs.take(),
                )
            };
            // Every process is gone: drain its pipes, flush and fsync every log.
            if let Some(hub) = logs {
                hub.shutdown(std::time::Duration::from_secs(5)).await;
            }
            // Replies already produced (e.g. to `quit`) go out before the socket closes.
            if let Some(c) = control {
                c.shutdown().await;
            }
            for p in publisher {
                p.shutdown().await;
            }
            for f in on_exit {
                f();
            }
        };
        Box::pin(fut.into_actor(self).map(|_, act, _| {
            for addr in act.sockets.drain() {
                addr.do_send(StopSocket);
            }
            tracing::info!("all watchers stopped");
            System::current().stop_with_code(act.exit_code);
        }))
    }
}

impl Supervisor {
    /// `shutdown_timeout` passed and watchers are still stopping: SIGKILL
    /// every process group and end the daemon (which then kills and reaps
    /// any child left).
    fn shutdown_overdue(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        tracing::error!(
            timeout_s = timeout.as_secs_f64(),
            "shutdown_timeout reached: killing every process and exiting"
        );
        let kills: Vec<_> = self
            .registry
            .by_priority()
            .iter()
            .map(|w| w.addr.send(KillWatcher))
            .collect();
        let code = self.exit_code;
        ctx.spawn(
            async move {
                // The kills are queued behind whatever the watchers do; do not wait forever.
                let _ = tokio::time::timeout(Duration::from_secs(2), join_all(kills)).await;
                System::current().stop_with_code(code);
            }
            .into_actor(self),
        );
    }
}

/// A watcher marked `critical = true` ended (`failed`, or a process of a
/// `respawn = false` watcher exited non-zero on its own): stop everything and
/// exit non-zero, so that whoever runs the daemon (systemd, a container
/// runtime) sees the failure.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CriticalEnded {
    pub watcher: String,
    pub why: String,
}

/// The exit code after a critical watcher ended.
pub(crate) const CRITICAL_EXIT_CODE: i32 = 1;

impl Handler<CriticalEnded> for Supervisor {
    type Result = ();
    fn handle(&mut self, m: CriticalEnded, ctx: &mut Self::Context) {
        if self.stopping {
            return;
        }
        tracing::error!(watcher = %m.watcher, "critical watcher ended ({}): stopping the daemon, exit code {CRITICAL_EXIT_CODE}", m.why);
        self.exit_code = CRITICAL_EXIT_CODE;
        ctx.notify(Shutdown { immediate: false });
    }
}

/// One line for the service manager's STATUS=: "3 watchers active, 7 processes".
pub(super) async fn summary(registry: &Registry) -> String {
    let states = join_all(registry.by_priority().iter().map(|w| w.addr.send(GetStatus))).await;
    let (mut active, mut procs, total) = (0, 0, states.len());
    for s in states.into_iter().flatten() {
        if s.state == WatcherState::Active {
            active += 1;
        }
        // Running processes: a stopped watcher keeps its slots, without pids.
        procs += s.processes.iter().filter(|p| p.pid.is_some()).count();
    }
    format!("{active} of {total} watchers active, {procs} processes")
}
