//! The root's part of an upgrade (see `crate::upgrade`): check, freeze,
//! snapshot and execute; and, in the next image, the watchers restored
//! from the snapshot instead of started.

use super::registry::{Registry, WatcherEntry};
use super::root::{Closers, Supervisor};
use crate::config::{Config, WatcherSpec};
use crate::events::Events;
use crate::reaper::Reaper;
use crate::sockets::BoundSocket;
use crate::streams::LogHub;
use crate::upgrade::exec::{self, Prepared, Target};
use crate::upgrade::preflight;
use crate::upgrade::restore::Restoring;
use crate::upgrade::snapshot::{DaemonCarry, LogSeq, Snapshot, SocketFd, STATE_VERSION};
use crate::watchers::{FreezeWatcher, GetSpec, WatcherActor};
use actix::prelude::*;
use futures::future::join_all;
use futures::FutureExt;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the freeze may take (slots finishing a spawn) before the upgrade is abandoned.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the output captures may take to stop reading (a sink that blocks holds one).
const PARK_TIMEOUT: Duration = Duration::from_secs(5);

/// Execute `binary` (default: the running binary's path) in place.
#[derive(Message)]
#[rtype(result = "Result<Upgrading, String>")]
pub(crate) struct Upgrade {
    pub binary: Option<PathBuf>,
}

/// The snapshot is taken and nothing moves; `go` executes the new binary
/// (the control connections, and the request that asked, are carried
/// across the exec: the next image replies).
pub(crate) struct Upgrading {
    pub from: preflight::Answer,
    pub go: oneshot::Sender<()>,
}

impl Handler<Upgrade> for Supervisor {
    type Result = ResponseFuture<Result<Upgrading, String>>;

    fn handle(&mut self, m: Upgrade, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return Box::pin(async { Err("the daemon is stopping".to_string()) });
        }
        if !crate::upgrade::begin() {
            return Box::pin(async { Err("an upgrade is already in progress".to_string()) });
        }
        let (tx, rx) = oneshot::channel();
        let binary = m.binary.map_or_else(running_binary, Ok);
        let config = self.config.borrow().path.clone();
        let registry = self.registry.clone();
        let checks = async move {
            let binary = binary?;
            let to = preflight::run(&binary, &config).await?;
            same_specs(&registry, &config).await?;
            Ok::<_, String>((binary, to))
        };
        // Waited on: no other request reaches the root until the upgrade is
        // abandoned, or ever once it goes on (the thaw never comes: the exec
        // replaces this image), so that a request meanwhile is run by the
        // next image, once, instead of changing what the snapshot missed.
        ctx.wait(checks.into_actor(self).then(move |checked, act, _| {
            let (fut, thaw) = match checked {
                Err(e) => (FutureExt::boxed_local(futures::future::ready(Err(e))), None),
                Ok((binary, to)) => {
                    let (thaw, f) = act.freeze_and_snapshot(binary, to);
                    (FutureExt::boxed_local(f), Some(thaw))
                }
            };
            fut.into_actor(act).then(move |r, act, _| {
                let ok = r.is_ok();
                if !ok {
                    crate::upgrade::abandoned();
                }
                let _ = tx.send(r);
                async move {
                    if let (true, Some(thaw)) = (ok, thaw) {
                        let _ = thaw.await;
                    }
                }
                .into_actor(act)
            })
        }));
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the supervisor went away".into()))
        })
    }
}

/// The path of the running binary (for `upgrade` without `--binary`).
fn running_binary() -> Result<PathBuf, String> {
    let p = std::fs::read_link("/proc/self/exe").map_err(|e| format!("cannot read /proc/self/exe: {e}"))?;
    let s = p.to_string_lossy();
    match s.strip_suffix(" (deleted)") {
        // Replaced by a package upgrade: the new file sits at the old path.
        Some(path) => Ok(PathBuf::from(path)),
        None => Ok(p),
    }
}

/// The running specs must be the config file's (numprocesses aside): the
/// next image builds its watchers from the file.
async fn same_specs(registry: &Registry, config: &std::path::Path) -> Result<(), String> {
    let file: Config = crate::config::load(config, None).map_err(|e| {
        format!(
            "cannot load {}: {}",
            config.display(),
            e.one_line_each().join("; ")
        )
    })?;
    let running = registry.by_priority();
    let specs = join_all(running.iter().map(|w| w.addr.send(GetSpec))).await;
    let mut differ = Vec::new();
    for (w, spec) in running.iter().zip(specs) {
        let spec = spec.map_err(|e| format!("watcher {}: {e}", w.name))?;
        match file
            .watchers
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&w.name))
        {
            Some(f) if same(f, &spec) => {}
            Some(_) => differ.push(format!("{} (changed since loaded)", w.name)),
            None => differ.push(format!("{} (not in the file)", w.name)),
        }
    }
    for f in &file.watchers {
        if !running.iter().any(|w| w.name.eq_ignore_ascii_case(&f.name)) {
            differ.push(format!("{} (only in the file)", f.name));
        }
    }
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the running watchers differ from {}: {}; run reload-config first",
            config.display(),
            differ.join(", ")
        ))
    }
}

fn same(a: &WatcherSpec, b: &WatcherSpec) -> bool {
    let mut b = b.clone();
    b.numprocesses = a.numprocesses;
    *a == b
}

impl Supervisor {
    /// Point of no return once Ok: everything stands still until the exec.
    /// Also returns the thaw (it resolves if the exec fails).
    fn freeze_and_snapshot(
        &mut self,
        binary: PathBuf,
        to: preflight::Answer,
    ) -> (
        futures::future::Shared<oneshot::Receiver<()>>,
        impl std::future::Future<Output = Result<Upgrading, String>> + 'static,
    ) {
        Reaper::global().freeze();
        let (thaw_tx, thaw_rx) = oneshot::channel::<()>();
        let thaw = thaw_rx.shared();
        let root_thaw = thaw.clone();
        let watchers = self.registry.by_priority();
        let frozen = join_all(
            watchers
                .iter()
                .map(|w| w.addr.send(FreezeWatcher { thaw: thaw.clone() })),
        );
        let sockets: Vec<SocketFd> = self
            .sockets
            .infos()
            .into_iter()
            .map(|i| SocketFd {
                name: i.name.clone(),
                fd: i.raw_fd,
                created_path: i.path.as_ref().map(PathBuf::from),
            })
            .collect();
        let config_path = self.config.borrow().path.clone();
        let (closers, notifier, hub) = (self.closers.clone(), self.notifier.clone(), self.hub.clone());
        let fut = async move {
            let snaps = tokio::time::timeout(FREEZE_TIMEOUT, frozen)
                .await
                .unwrap_or_default();
            let mut ws = Vec::new();
            let mut failed = None;
            for s in snaps {
                match s {
                    Ok(Ok(w)) => ws.push(w),
                    Ok(Err(e)) => failed = Some(e),
                    Err(e) => failed = Some(format!("a watcher did not answer: {e}")),
                }
            }
            if ws.len() != watchers.len() && failed.is_none() {
                failed = Some(format!(
                    "the daemon did not stand still within {FREEZE_TIMEOUT:?}"
                ));
            }
            if failed.is_none() {
                // The captures' own pipes are handed over, once they stopped reading.
                match hub.park_captures(PARK_TIMEOUT).await {
                    Ok(()) => {
                        hand_over_pipes(&hub, &mut ws);
                        // Every line read is in it now: the history the next image starts from.
                        for (w, snap) in watchers.iter().zip(ws.iter_mut()) {
                            snap.history = w
                                .logs
                                .history(None, usize::MAX, None)
                                .iter()
                                .map(|r| crate::upgrade::snapshot::HistoryLine::of(r))
                                .collect();
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            let from = preflight::Answer {
                version: exec::VERSION.into(),
                binary_id: exec::binary_id(),
                state_version: STATE_VERSION,
            };
            let snap = Snapshot {
                state_version: STATE_VERSION,
                from_version: from.version.clone(),
                from_binary: from.binary_id.clone(),
                config_path,
                started: crate::upgrade::started(),
                sockets,
                listeners: crate::upgrade::listeners::held(),
                watchers: ws,
                notify_address: crate::readiness::notify::NotifyRouter::get().map(|r| r.address.clone()),
                written: crate::watchers::now_f64(),
                carry: DaemonCarry {
                    log_seqs: crate::streams::seq::all()
                        .into_iter()
                        .map(|(watcher, stream, seq)| LogSeq { watcher, stream, seq })
                        .collect(),
                },
                control: Default::default(),
            };
            let prepared = match failed {
                Some(e) => Err(e),
                None => prepare(&snap),
            };
            let (state, prepared, fallback) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    drop(thaw_tx);
                    hub.resume_captures();
                    Reaper::global().thaw();
                    return Err(format!("upgrade abandoned, nothing changed: {e}"));
                }
            };
            let (go, went) = oneshot::channel();
            tracing::info!(to = %to.binary_id, watchers = snap.watchers.len(), "upgrade: snapshot taken, executing the new binary");
            actix::spawn(async move {
                // The reply is produced when `go` fires; then the exec.
                if went.await.is_err() {
                    tracing::warn!("upgrade: the requester went away; executing anyway");
                }
                if let Some(n) = &notifier {
                    n.reloading();
                }
                execute(binary, closers, snap, (state, prepared, fallback), thaw_tx).await;
            });
            Ok(Upgrading { from, go })
        };
        (root_thaw, fut)
    }
}

/// Fills each live slot's stdout/stderr fd (and unfinished line) from the
/// pipe its capture parked; a capture that reached the end of its output
/// (the process exited) has nothing to hand over.
fn hand_over_pipes(hub: &LogHub, ws: &mut [crate::upgrade::snapshot::WatcherSnap]) {
    for w in ws {
        for s in w.slots.iter_mut().chain(w.retiring.iter_mut()) {
            for i in 0..2 {
                let parked = s.captures[i].and_then(|id| hub.parked(id));
                let (fd, tail) = parked.map_or((None, Default::default()), |(fd, t)| (Some(fd), t));
                if i == 0 {
                    s.stdout_fd = fd;
                } else {
                    s.stderr_fd = fd;
                }
                s.carry.tails[i] = tail;
            }
        }
    }
}

type Prepped = (OwnedFd, Prepared, Prepared);

fn prepare(snap: &Snapshot) -> Result<Prepped, String> {
    let data = serde_json::to_vec(snap).map_err(|e| format!("snapshot: {e}"))?;
    let state = exec::write_memfd(&data).map_err(|e| format!("snapshot memfd: {e}"))?;
    let p =
        Prepared::new(state.as_raw_fd(), snap.fds(), false).map_err(|e| format!("exec arguments: {e}"))?;
    let f = Prepared::new(state.as_raw_fd(), snap.fds(), true).map_err(|e| format!("exec arguments: {e}"))?;
    Ok((state, p, f))
}

/// Closes the control and pubsub sockets (their listeners stay open, and so
/// do their ipc files, and the control socket's established connections
/// with the requests they wait on, added to the snapshot), flushes the logs,
/// and executes the new binary; if that fails, the running binary again,
/// which restores the same state.
async fn execute(
    binary: PathBuf,
    closers: Rc<RefCell<Closers>>,
    mut snap: Snapshot,
    prepped: Prepped,
    thaw: oneshot::Sender<()>,
) {
    crate::upgrade::listeners::KEEP_IPC_FILES.store(true, std::sync::atomic::Ordering::SeqCst);
    let (control, publishers, logs) = {
        let mut c = closers.borrow_mut();
        (
            c.control.take(),
            std::mem::take(&mut c.publishers),
            c.logs.clone(),
        )
    };
    let mut kept_connections = Vec::new();
    let (mut state, mut prepared, mut fallback) = prepped;
    if let Some(c) = control {
        let handed = c.hand_over().await;
        snap.control = handed.carry;
        match prepare(&snap) {
            Ok((s, p, f)) => {
                (state, prepared, fallback) = (s, p, f);
                kept_connections = handed.fds;
            }
            // The snapshot without them (taken before) still holds: the
            // connections close, their clients see no reply.
            Err(e) => tracing::warn!("upgrade: the control connections cannot be kept: {e}"),
        }
    }
    for p in publishers {
        p.shutdown().await;
    }
    if let Some(hub) = logs {
        hub.flush_for_exec(Duration::from_secs(2)).await;
    }
    crate::upgrade::signals::hold_for_exec();
    let e = prepared.exec(&Target::Path(binary.clone()));
    tracing::error!(binary = %binary.display(), "upgrade: cannot execute the new binary ({e}); executing the running one again");
    let e = fallback.exec(&Target::Kept);
    tracing::error!("upgrade: cannot execute the running binary again either ({e}); the supervised processes are left running, unsupervised");
    drop((state, thaw, kept_connections));
    std::process::exit(1);
}

impl Supervisor {
    /// The next image's root: sockets as passed, watchers from `r`'s
    /// snapshot with their processes adopted, nothing autostarted.
    pub(crate) fn restored(
        config: Rc<RefCell<Config>>,
        bound: Vec<BoundSocket>,
        events: Events,
        hub: LogHub,
        closers: Rc<RefCell<Closers>>,
        r: &Restoring,
    ) -> anyhow::Result<Supervisor> {
        let specs = std::mem::take(&mut config.borrow_mut().watchers);
        let made = Supervisor::new(config.clone(), bound, events, hub, closers);
        config.borrow_mut().watchers = specs.clone();
        let mut s = made?;
        s.restored = true;
        crate::streams::seq::restore(
            r.snap
                .carry
                .log_seqs
                .iter()
                .map(|l| (l.watcher.clone(), l.stream, l.seq)),
        );
        for spec in specs {
            match r.snap.watchers.iter().find(|w| w.name == spec.name) {
                Some(w) => {
                    let fds = |slot: &crate::upgrade::snapshot::SlotSnap| r.slot_fds(slot);
                    s.add_restored(spec, w, fds)?;
                }
                None => {
                    tracing::warn!(watcher = %spec.name, "upgrade: not in the snapshot; created stopped");
                    s.add_watcher(spec)?;
                }
            }
        }
        Ok(s)
    }

    fn add_restored(
        &mut self,
        spec: WatcherSpec,
        snap: &crate::upgrade::snapshot::WatcherSnap,
        fds: impl FnMut(&crate::upgrade::snapshot::SlotSnap) -> crate::watchers::SlotFds,
    ) -> anyhow::Result<()> {
        let logs = self.open_logs(&spec)?;
        let infos = self.sockets.infos();
        let e = WatcherEntry {
            name: spec.name.to_lowercase(),
            priority: spec.priority,
            autostart: spec.autostart,
            singleton: spec.singleton,
            addr: WatcherActor::launch_restored(spec, &infos, self.events.clone(), logs.clone(), snap, fds),
            logs,
        };
        self.registry.insert(e);
        Ok(())
    }
}
