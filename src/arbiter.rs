//! The root actor. It owns the socket registry (one [`SocketActor`] per
//! socket, bound before anything starts) and the watcher registry, and
//! forwards to each [`WatcherActor`] the fds of the sockets it names.
//! Start-up runs watchers in priority order; shutdown stops them lowest
//! priority first, flushes the control channel, then closes the sockets.

use crate::config::{Config, WatcherSpec};
use crate::control::pubsub::Publisher;
use crate::control::transport::ControlHandle;
use crate::events::Events;
use crate::sockets::{BoundSocket, GetSocketInfo, SocketActor, SocketInfo};
use crate::streams::{LogHub, WatcherLogs};
use crate::watchers::{KillWatcher, ReloadWatcher, StartWatcher, StopWatcher, WatcherActor};
use actix::prelude::*;
use futures::future::join_all;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
pub struct WatcherEntry {
    pub name: String,
    pub priority: i64,
    pub autostart: bool,
    pub addr: Addr<WatcherActor>,
    pub logs: WatcherLogs,
}

/// Watchers by (lowercase) name, shared by the root actor and the control commands.
pub type Registry = Rc<RefCell<BTreeMap<String, WatcherEntry>>>;

/// Sockets by name, shared by the root actor and the control commands (config reload).
pub type SocketRegistry = Rc<RefCell<BTreeMap<String, (Addr<SocketActor>, SocketInfo)>>>;

/// The infos of every socket, for building watchers.
pub fn socket_infos(reg: &SocketRegistry) -> Vec<SocketInfo> {
    reg.borrow().values().map(|(_, i)| i.clone()).collect()
}

/// Things the root closes last, in this order, at shutdown.
#[derive(Default)]
pub struct Closers {
    pub control: Option<ControlHandle>,
    pub logs: Option<LogHub>,
    pub publishers: Vec<Publisher>,
    pub on_exit: Vec<Box<dyn FnOnce()>>,
}

pub struct ArbiterActor {
    config: Config,
    sockets: SocketRegistry,
    registry: Registry,
    events: Events,
    closers: Rc<RefCell<Closers>>,
    stopping: bool,
}

/// Starts the socket actors for already-bound sockets (a bind error stops
/// start-up before any child runs) and returns their infos.
pub async fn start_sockets(bound: Vec<BoundSocket>) -> BTreeMap<String, (Addr<SocketActor>, SocketInfo)> {
    let mut sockets = BTreeMap::new();
    for b in bound {
        let name = b.spec.name.clone();
        let addr = SocketActor::new(b).start();
        match addr.send(GetSocketInfo).await {
            Ok(info) => {
                sockets.insert(name, (addr, info));
            }
            Err(e) => tracing::error!(socket = %name, "socket actor unavailable: {e}"),
        }
    }
    sockets
}

/// Opens the watcher's log streams (an unwritable file is an error) and starts its actor.
pub fn new_watcher(
    spec: WatcherSpec,
    sockets: &[SocketInfo],
    events: &Events,
    hub: &LogHub,
) -> anyhow::Result<WatcherEntry> {
    let history = spec.history_lines.unwrap_or_else(|| hub.default_history_lines());
    let logs = hub.add_watcher(&spec.name, &spec.stdout_stream, &spec.stderr_stream, history)?;
    Ok(WatcherEntry {
        name: spec.name.to_lowercase(),
        priority: spec.priority,
        autostart: spec.autostart,
        addr: WatcherActor::new(spec, sockets, events.clone(), logs.clone()).start(),
        logs,
    })
}

impl ArbiterActor {
    pub fn new(
        config: Config,
        sockets: SocketRegistry,
        registry: Registry,
        events: Events,
        closers: Rc<RefCell<Closers>>,
    ) -> ArbiterActor {
        ArbiterActor {
            config,
            sockets,
            registry,
            events,
            closers,
            stopping: false,
        }
    }

    fn by_priority(&self) -> Vec<WatcherEntry> {
        let mut v: Vec<WatcherEntry> = self.registry.borrow().values().cloned().collect();
        v.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        v
    }
}

impl Actor for ArbiterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for (name, (_, info)) in self.sockets.borrow().iter() {
            tracing::info!(socket = %name, address = %info.local, fd = info.raw_fd, "listening");
        }
        let delay = self.config.global.warmup_delay;
        let watchers = self.by_priority();
        for (k, w) in watchers.iter().filter(|w| w.autostart).enumerate() {
            let addr = w.addr.clone();
            if delay.is_zero() {
                addr.do_send(StartWatcher);
            } else {
                ctx.run_later(delay * k as u32, move |act, _| {
                    if !act.stopping {
                        addr.do_send(StartWatcher);
                    }
                });
            }
        }
        for w in watchers.iter().filter(|w| !w.autostart) {
            tracing::info!(watcher = %w.name, "autostart = false: not started");
        }
        let _ = &self.events;
    }
}

/// Stop everything and end the daemon.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// SIGKILL every process group now instead of stopping gracefully.
    pub immediate: bool,
}

impl Handler<Shutdown> for ArbiterActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, m: Shutdown, _: &mut Self::Context) -> Self::Result {
        let watchers = self.by_priority();
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
        tracing::info!("stopping all watchers");
        // Lowest priority first; watchers of equal priority stop together.
        let mut groups: BTreeMap<i64, Vec<Addr<WatcherActor>>> = BTreeMap::new();
        for w in &watchers {
            groups.entry(w.priority).or_default().push(w.addr.clone());
        }
        let closers = self.closers.clone();
        let fut = async move {
            for (_, addrs) in groups {
                join_all(addrs.iter().map(|a| a.send(StopWatcher))).await;
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
            for (addr, _) in act.sockets.borrow().values() {
                addr.do_send(StopSocket);
            }
            act.sockets.borrow_mut().clear();
            tracing::info!("all watchers stopped");
            System::current().stop_with_code(0);
        }))
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSocket;

impl Handler<StopSocket> for SocketActor {
    type Result = ();
    fn handle(&mut self, _: StopSocket, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Reload every watcher gracefully (Circus's unnamed `reload`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReloadAll;

impl Handler<ReloadAll> for ArbiterActor {
    type Result = ();
    fn handle(&mut self, _: ReloadAll, _: &mut Self::Context) {
        for w in self.by_priority() {
            w.addr.do_send(ReloadWatcher {
                graceful: true,
                sequential: false,
            });
        }
    }
}
