//! The root actor. It owns the socket registry (one [`SocketActor`] per
//! socket, bound before anything starts) and one [`WatcherActor`] per
//! watcher, to which it forwards the fds of the sockets each one names.
//! Start-up runs watchers in priority order; shutdown stops them lowest
//! priority first, then closes the sockets.

use crate::config::Config;
use crate::events::Events;
use crate::sockets::{BoundSocket, GetSocketInfo, SocketActor, SocketInfo};
use crate::watchers::{KillWatcher, StartWatcher, StopWatcher, WatcherActor};
use actix::prelude::*;
use futures::future::join_all;
use std::collections::BTreeMap;

pub struct WatcherEntry {
    pub name: String,
    pub priority: i64,
    pub autostart: bool,
    pub addr: Addr<WatcherActor>,
}

pub struct ArbiterActor {
    config: Config,
    sockets: BTreeMap<String, (Addr<SocketActor>, SocketInfo)>,
    watchers: Vec<WatcherEntry>,
    events: Events,
    stopping: bool,
}

impl ArbiterActor {
    /// Takes sockets already bound (so a bind error stops start-up before any child runs).
    pub async fn create(config: Config, bound: Vec<BoundSocket>, events: Events) -> Addr<ArbiterActor> {
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
        let infos: Vec<SocketInfo> = sockets.values().map(|(_, i)| i.clone()).collect();
        let watchers = config
            .watchers
            .iter()
            .map(|w| WatcherEntry {
                name: w.name.clone(),
                priority: w.priority,
                autostart: w.autostart,
                addr: WatcherActor::new(w.clone(), &infos, events.clone()).start(),
            })
            .collect();
        ArbiterActor {
            config,
            sockets,
            watchers,
            events,
            stopping: false,
        }
        .start()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn events(&self) -> &Events {
        &self.events
    }
}

impl Actor for ArbiterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for (name, (_, info)) in &self.sockets {
            tracing::info!(socket = %name, address = %info.local, fd = info.raw_fd, "listening");
        }
        // watchers are already sorted by priority, highest first.
        let delay = self.config.global.warmup_delay;
        for (k, w) in self.watchers.iter().filter(|w| w.autostart).enumerate() {
            let k = k as u32;
            let addr = w.addr.clone();
            if delay.is_zero() {
                addr.do_send(StartWatcher);
            } else {
                ctx.run_later(delay * k, move |act, _| {
                    if !act.stopping {
                        addr.do_send(StartWatcher);
                    }
                });
            }
        }
        for w in self.watchers.iter().filter(|w| !w.autostart) {
            tracing::info!(watcher = %w.name, "autostart = false: not started");
        }
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
        if m.immediate {
            tracing::warn!("stopping now: killing every process group");
            for w in &self.watchers {
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
        for w in &self.watchers {
            groups.entry(w.priority).or_default().push(w.addr.clone());
        }
        let fut = async move {
            for (_, addrs) in groups {
                join_all(addrs.iter().map(|a| a.send(StopWatcher))).await;
            }
        };
        Box::pin(fut.into_actor(self).map(|_, act, _| {
            for (addr, _) in act.sockets.values() {
                addr.do_send(StopSocket);
            }
            act.sockets.clear();
            tracing::info!("all watchers stopped");
            System::current().stop_with_code(0);
        }))
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopSocket;

impl Handler<StopSocket> for SocketActor {
    type Result = ();
    fn handle(&mut self, _: StopSocket, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// SIGHUP: config reload is not implemented yet; say so.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hangup;

impl Handler<Hangup> for ArbiterActor {
    type Result = ();
    fn handle(&mut self, _: Hangup, _: &mut Self::Context) {
        tracing::warn!("SIGHUP received: configuration reload is not implemented yet; ignoring");
    }
}
