//! The control channel server: a ZeroMQ ROUTER that speaks the Circus 0.19
//! protocol, plus the endpoint handling shared with the publisher (ipc socket
//! files, runtime directory).
//!
//! Concurrency: one task owns the ROUTER socket; every request is dispatched
//! in its own `spawn_local` task and its reply comes back to the socket task
//! over a channel, so a slow command never delays other requests.
//!
//! Differences from Circus (on purpose, see circus.md §11):
//! - REQ-style `[identity, "", json]` is accepted and answered with the
//!   delimiter kept; Circus drops it silently.
//! - Malformed bodies and unexpected frame counts get an error reply instead
//!   of silence (and never stall the socket).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use zeromq::{Endpoint, Host, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use super::carry::{self, Awaiting};
use super::protocol::{error_reply, ok_reply, parse_request, peek_id, CommandError, Request};
use crate::upgrade::connections::{CarriedConn, CarriedRequest, ControlCarry};

/// How long the socket task waits to hand one reply to a peer's send queue
/// before dropping it (a peer that never reads must not stall everyone).
const REPLY_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the stale-socket probe waits for a connect on an existing ipc file.
const STALE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// At a hand-over: how long the peers' writers get to send the replies
/// already produced (on loopback they take well under a millisecond), and
/// how many messages already arrived are taken along at most.
const HAND_OVER_QUIET: Duration = Duration::from_millis(200);
const HAND_OVER_DRAIN: usize = 10_000;

/// Executes control commands. Implemented by the core; cloned once per
/// request. The future does not need to be `Send` (it runs on the LocalSet).
pub trait Dispatcher: Clone + 'static {
    fn dispatch(&self, req: Request) -> LocalBoxFuture<'static, Result<Map<String, Value>, CommandError>>;

    /// Answers a request the previous image carried across an upgrade
    /// (`awaiting` is never [`Awaiting::NotRun`]: those are dispatched).
    fn resume(
        &self,
        req: Request,
        awaiting: Awaiting,
    ) -> LocalBoxFuture<'static, Result<Map<String, Value>, CommandError>> {
        let _ = (req, awaiting);
        Box::pin(async { Err(CommandError::command("interrupted by an upgrade in place")) })
    }
}

/// How the server stops.
enum Stop {
    /// Close every connection.
    Close,
    /// Keep the established connections open for the next image.
    HandOver(oneshot::Sender<HandOver>),
}

/// The established control connections, handed on at an upgrade: duplicates
/// of their fds (close-on-exec, cleared at the exec) and what the snapshot says of them.
pub(crate) struct HandOver {
    pub fds: Vec<OwnedFd>,
    pub carry: ControlCarry,
}

/// A bound, not yet serving, control socket.
pub struct ControlServer {
    socket: RouterSocket,
    endpoints: Vec<String>,
    ipc_files: Vec<IpcSocketFile>,
}

impl ControlServer {
    /// Binds a ROUTER on one endpoint (`tcp://host:port` or `ipc:///path`).
    pub async fn bind(endpoint: &str) -> anyhow::Result<ControlServer> {
        Self::bind_all(&[endpoint]).await
    }

    /// Binds one ROUTER on several endpoints (e.g. an ipc socket and a tcp port).
    pub async fn bind_all<S: AsRef<str>>(endpoints: &[S]) -> anyhow::Result<ControlServer> {
        if endpoints.is_empty() {
            bail!("no control endpoint given");
        }
        let mut socket = RouterSocket::new();
        let mut bound = Vec::with_capacity(endpoints.len());
        let mut ipc_files = Vec::new();
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref();
            let (resolved, ipc) = bind_socket(&mut socket, endpoint)
                .await
                .with_context(|| format!("cannot bind the control endpoint {endpoint}"))?;
            tracing::info!(endpoint = %resolved, "control channel listening");
            bound.push(resolved);
            ipc_files.extend(ipc);
        }
        Ok(ControlServer {
            socket,
            endpoints: bound,
            ipc_files,
        })
    }

    /// The bound endpoints, resolved (a tcp port 0 shows the real port).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Takes over the connections the previous image handed on (`fd` gives
    /// a duplicate of each inherited fd). One that cannot be adopted is closed.
    pub(crate) async fn adopt(
        &mut self,
        conns: &[CarriedConn],
        fd: impl Fn(&CarriedConn) -> std::io::Result<OwnedFd>,
    ) {
        for c in conns {
            let adopted = match fd(c) {
                Ok(owned) => self
                    .socket
                    .adopt_peer(owned, c.unix, Bytes::from(c.identity.clone()))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = adopted {
                tracing::warn!(fd = c.fd, error = %e, "upgrade: cannot adopt a control connection; it is closed");
            }
        }
    }

    /// Starts serving with `tokio::task::spawn_local`: must be called from
    /// inside a `LocalSet` (an actix `System` is one); panics otherwise, as
    /// `spawn_local` does.
    ///
    /// Dropping the returned handle detaches the server (it keeps running
    /// until the runtime stops; its ipc socket files are then unlinked by a
    /// drop guard). Call [`ControlHandle::shutdown`] for an orderly stop.
    pub fn run<D: Dispatcher>(self, dispatcher: D) -> ControlHandle {
        self.run_resuming(dispatcher, Vec::new())
    }

    /// As [`run`](Self::run), first answering the requests the previous
    /// image carried across an upgrade (on connections adopted before).
    pub(crate) fn run_resuming<D: Dispatcher>(
        self,
        dispatcher: D,
        carried: Vec<CarriedRequest>,
    ) -> ControlHandle {
        let (stop_tx, stop_rx) = oneshot::channel();
        let endpoints = self.endpoints.clone();
        let join = tokio::task::spawn_local(serve(self, dispatcher, stop_rx, carried));
        ControlHandle {
            stop: Some(stop_tx),
            join,
            endpoints,
        }
    }
}

/// A running control server.
#[must_use = "dropping the handle detaches the server; keep it to shut it down"]
pub struct ControlHandle {
    stop: Option<oneshot::Sender<Stop>>,
    join: tokio::task::JoinHandle<()>,
    endpoints: Vec<String>,
}

impl ControlHandle {
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// True once the server task has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Stops receiving, sends every reply already produced (so the reply to
    /// `quit` goes out), closes the socket and unlinks its ipc files.
    /// Replies of commands still running are dropped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Stop::Close);
        }
        if let Err(err) = (&mut self.join).await {
            tracing::warn!(error = %err, "control server task ended abnormally");
        }
    }

    /// For an upgrade: stops receiving, sends the replies already produced,
    /// and closes the socket but keeps its established connections open
    /// (duplicates in the result), with the requests they still wait on.
    /// A connection in the middle of a message either way is closed.
    pub(crate) async fn hand_over(mut self) -> HandOver {
        let (tx, rx) = oneshot::channel();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Stop::HandOver(tx));
        }
        if let Err(err) = (&mut self.join).await {
            tracing::warn!(error = %err, "control server task ended abnormally");
        }
        rx.await.unwrap_or(HandOver {
            fds: Vec::new(),
            carry: ControlCarry::default(),
        })
    }
}

/// Requests dispatched and not answered yet, by token: their frames.
type Inflight = Rc<RefCell<HashMap<u64, Vec<Bytes>>>>;

async fn serve<D: Dispatcher>(
    server: ControlServer,
    dispatcher: D,
    mut stop_rx: oneshot::Receiver<Stop>,
    carried: Vec<CarriedRequest>,
) {
    let ControlServer {
        mut socket,
        endpoints,
        ipc_files,
    } = server;
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<ZmqMessage>();
    let inflight: Inflight = Rc::default();
    let mut requests = Requests {
        dispatcher: &dispatcher,
        reply_tx: &reply_tx,
        inflight: &inflight,
        next: 0,
    };
    for c in carried {
        requests.resume(c);
    }
    let mut stop_armed = true;
    let mut recv_errors: u32 = 0;
    let stop = loop {
        tokio::select! {
            biased;
            stop = &mut stop_rx, if stop_armed => match stop {
                Ok(how) => break how,
                // The handle was dropped: detach and keep serving.
                Err(_) => stop_armed = false,
            },
            Some(reply) = reply_rx.recv() => send_reply(&mut socket, reply).await,
            incoming = socket.recv() => match incoming {
                Ok(message) => {
                    recv_errors = 0;
                    requests.handle(message);
                }
                Err(err) => {
                    recv_errors = recv_errors.saturating_add(1);
                    tracing::warn!(error = %err, "control socket receive failed");
                    // Back off so a persistent error cannot spin the event loop.
                    let pause = Duration::from_millis(10 * u64::from(recv_errors.min(100)));
                    tokio::time::sleep(pause).await;
                }
            },
        }
    };
    // Messages already arrived, not read yet: the next image reads them.
    let mut unread = Vec::new();
    if let Stop::HandOver(_) = &stop {
        while unread.len() < HAND_OVER_DRAIN {
            match socket.recv().now_or_never() {
                Some(Ok(m)) => unread.push(m.into_vec()),
                _ => break,
            }
        }
    }
    // Flush the replies already produced (e.g. the answer to `quit`).
    while let Ok(reply) = reply_rx.try_recv() {
        send_reply(&mut socket, reply).await;
    }
    if let Stop::HandOver(tx) = stop {
        let _ = tx.send(hand_over(&socket, unread, &inflight).await);
    }
    for err in socket.close().await {
        tracing::debug!(error = %err, "control socket close");
    }
    // Let the per-peer writer tasks drain their queues before returning (on
    // a current-thread runtime they only run when we yield).
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    drop(ipc_files);
    tracing::info!(endpoints = ?endpoints, "control channel closed");
}

async fn send_reply(socket: &mut RouterSocket, reply: ZmqMessage) {
    match tokio::time::timeout(REPLY_SEND_TIMEOUT, socket.send(reply)).await {
        Ok(Ok(())) => {}
        // Usually a client that went away before its reply: not our problem.
        Ok(Err(err)) => tracing::debug!(error = %err, "control reply not delivered"),
        Err(_) => tracing::warn!("control reply dropped: the client is not reading"),
    }
}

/// Dispatches requests, each in its own task, and keeps track of those
/// not answered yet (for a hand-over).
struct Requests<'a, D> {
    dispatcher: &'a D,
    reply_tx: &'a mpsc::UnboundedSender<ZmqMessage>,
    inflight: &'a Inflight,
    next: u64,
}

impl<D: Dispatcher> Requests<'_, D> {
    /// Splits `[identity, (""), body]`, parses the body and dispatches.
    fn handle(&mut self, message: ZmqMessage) {
        let mut frames = message.into_vec();
        let Some(body) = frames.pop() else {
            tracing::warn!("control: got an empty message, dropped");
            return;
        };
        // `frames` is now the envelope: identity, plus the delimiter for REQ.
        if frames.is_empty() {
            tracing::warn!("control: got a message without a routing identity, dropped");
            return;
        }
        let dealer_style = frames.len() == 1;
        let req_style = frames.len() == 2 && frames[1].is_empty();
        if !dealer_style && !req_style {
            tracing::warn!(
                frames = frames.len() + 1,
                "control: got unexpected message framing, answering with an error"
            );
            let err = CommandError::message(format!(
                "message invalid: expected [json] or [\"\", json], got {} frames",
                frames.len()
            ));
            let _ = self
                .reply_tx
                .send(build_reply(frames, error_reply(&peek_id(&body), &err)));
            return;
        }
        let req = match parse_request(&body) {
            Ok(req) => req,
            Err((id, err)) => {
                tracing::debug!(reason = %err.reason, "control: rejected a malformed request");
                let _ = self.reply_tx.send(build_reply(frames, error_reply(&id, &err)));
                return;
            }
        };
        self.spawn(req, frames, body, Awaiting::NotRun);
    }

    /// A request carried across an upgrade: run or answered as it says.
    fn resume(&mut self, c: CarriedRequest) {
        let mut frames: Vec<Bytes> = c.frames.into_iter().map(Bytes::from).collect();
        if c.awaiting == Awaiting::NotRun {
            let mut frames = frames.into_iter();
            let mut message = ZmqMessage::from(frames.next().unwrap_or_default());
            for f in frames {
                message.push_back(f);
            }
            return self.handle(message);
        }
        let Some(body) = frames.pop() else { return };
        match parse_request(&body) {
            Ok(req) => self.spawn(req, frames, body, c.awaiting),
            Err((id, err)) => {
                let _ = self.reply_tx.send(build_reply(frames, error_reply(&id, &err)));
            }
        }
    }

    fn spawn(&mut self, req: Request, frames: Vec<Bytes>, body: Bytes, awaiting: Awaiting) {
        let token = self.next;
        self.next += 1;
        if !req.cast {
            let mut all = frames.clone();
            all.push(body);
            self.inflight.borrow_mut().insert(token, all);
        }
        let dispatcher = self.dispatcher.clone();
        let reply_tx = self.reply_tx.clone();
        let inflight = self.inflight.clone();
        tokio::task::spawn_local(carry::scope(token, async move {
            let id = req.id.clone();
            let cast = req.cast;
            let command = req.command.clone();
            tracing::debug!(command = %command, cast, "control request");
            let outcome = AssertUnwindSafe(async move {
                match awaiting {
                    Awaiting::NotRun => dispatcher.dispatch(req).await,
                    a => {
                        // Still carried if another upgrade comes first.
                        carry::mark(a.clone());
                        dispatcher.resume(req, a).await
                    }
                }
            })
            .catch_unwind()
            .await;
            inflight.borrow_mut().remove(&token);
            carry::forget(token);
            let result = match outcome {
                Ok(result) => result,
                Err(panic) => {
                    let what = panic_message(panic.as_ref());
                    tracing::error!(command = %command, panic = %what, "control command panicked");
                    Err(CommandError::command(format!(
                        "internal error while running '{command}': {what}"
                    )))
                }
            };
            if cast {
                if let Err(err) = result {
                    tracing::warn!(command = %command, reason = %err.reason, "cast command failed");
                }
                return;
            }
            let body = match result {
                Ok(fields) => ok_reply(&id, fields),
                Err(err) => error_reply(&id, &err),
            };
            // Fails only when the server is shutting down: the reply is moot.
            let _ = reply_tx.send(build_reply(frames, body));
        }));
    }
}

/// The connections to keep across the exec, once every reply produced is
/// written (bounded by [`HAND_OVER_QUIET`]), with the requests waiting on
/// them: those in flight and those `unread`.
async fn hand_over(socket: &RouterSocket, unread: Vec<Vec<Bytes>>, inflight: &Inflight) -> HandOver {
    let deadline = tokio::time::Instant::now() + HAND_OVER_QUIET;
    // The crate signals no event when a peer's writer is done: look again
    // each millisecond, a bounded number of times.
    let mut peers = socket.export_peers();
    while peers.iter().any(|p| !p.quiet) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
        peers = socket.export_peers();
    }
    let mut fds = Vec::new();
    let mut carry = ControlCarry::default();
    for p in peers {
        if !p.quiet {
            tracing::warn!("upgrade: a control connection is in the middle of a message; it is closed");
            continue;
        }
        // SAFETY: the socket owns `p.fd` and is alive while borrowed here.
        match unsafe { BorrowedFd::borrow_raw(p.fd) }.try_clone_to_owned() {
            Ok(fd) => {
                carry.connections.push(CarriedConn {
                    fd: fd.as_raw_fd(),
                    unix: p.unix,
                    identity: p.identity.to_vec(),
                });
                fds.push(fd);
            }
            Err(e) => tracing::warn!(error = %e, "upgrade: cannot keep a control connection; it is closed"),
        }
    }
    let kept = |frames: &[Bytes]| {
        frames
            .first()
            .is_some_and(|id| carry.connections.iter().any(|c| c.identity == id.as_ref()))
    };
    let mut requests: Vec<CarriedRequest> = Vec::new();
    let mut waiting: Vec<(u64, Vec<Bytes>)> = inflight.borrow_mut().drain().collect();
    waiting.sort_by_key(|(t, _)| *t);
    for (token, frames) in waiting {
        let awaiting = carry::take(token);
        if kept(&frames) {
            requests.push(CarriedRequest {
                frames: frames.iter().map(|f| f.to_vec()).collect(),
                awaiting,
            });
        }
    }
    for frames in unread.into_iter().filter(|f| kept(f)) {
        requests.push(CarriedRequest {
            frames: frames.iter().map(|f| f.to_vec()).collect(),
            awaiting: Awaiting::NotRun,
        });
    }
    carry.requests = requests;
    tracing::info!(
        connections = carry.connections.len(),
        requests = carry.requests.len(),
        "upgrade: control connections kept open"
    );
    HandOver { fds, carry }
}

fn build_reply(mut envelope: Vec<Bytes>, body: Vec<u8>) -> ZmqMessage {
    envelope.push(Bytes::from(body));
    let mut frames = envelope.into_iter();
    // Non-empty by construction; build frame by frame to avoid a fallible conversion.
    let mut message = ZmqMessage::from(frames.next().unwrap_or_default());
    for frame in frames {
        message.push_back(frame);
    }
    message
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

// ---------------------------------------------------------------------------
// Endpoints and ipc socket files (shared with the publisher).

/// The directory for default ipc sockets: `$XDG_RUNTIME_DIR/ringmaster` when
/// set (and absolute), else `/run/ringmaster` for root, else
/// `/tmp/ringmaster-<uid>`. Pure: nothing is created here; binding an ipc
/// endpoint in this directory creates it (0700) or checks it.
pub fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir.join("ringmaster");
        }
    }
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        PathBuf::from("/run/ringmaster")
    } else {
        PathBuf::from(format!("/tmp/ringmaster-{}", euid.as_raw()))
    }
}

/// `ipc://<runtime dir>/control.sock`.
pub fn default_endpoint() -> String {
    ipc_endpoint(&default_runtime_dir().join("control.sock"))
}

/// `ipc://<runtime dir>/pubsub.sock`.
pub fn default_pubsub_endpoint() -> String {
    ipc_endpoint(&default_runtime_dir().join("pubsub.sock"))
}

/// `ipc://<runtime dir>/stats.sock`.
pub fn default_stats_endpoint() -> String {
    ipc_endpoint(&default_runtime_dir().join("stats.sock"))
}

fn ipc_endpoint(path: &Path) -> String {
    format!("ipc://{}", path.display())
}

/// Makes sure `dir` is a private directory of ours: creates it (mode 0700,
/// parents too) when missing; refuses a symlink, a non-directory or a
/// directory owned by another user; tightens a looser mode to 0700.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        Err(err) => {
            return Err(err).with_context(|| format!("cannot inspect {}", dir.display()));
        }
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if !meta.file_type().is_dir() {
        bail!(
            "refusing to use {}: it is not a directory (or it is a symlink)",
            dir.display()
        );
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        bail!(
            "refusing to use {}: it is owned by uid {}, not by us (uid {euid}); \
             remove it or choose another endpoint",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o777), "tightening the runtime directory to 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot chmod 0700 {}", dir.display()))?;
    }
    Ok(())
}

/// An ipc socket file we bound. Dropping it unlinks the file, but only if
/// the path still names the very socket we created (same device and inode),
/// so a newer server's socket is never removed.
#[derive(Debug)]
pub(crate) struct IpcSocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for IpcSocketFile {
    fn drop(&mut self) {
        if crate::upgrade::listeners::KEEP_IPC_FILES.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                if let Err(err) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %err, "cannot unlink the ipc socket");
                }
            }
        }
    }
}

/// Binds `socket` to `endpoint` with our ipc/tcp policy and returns the
/// resolved endpoint and, for ipc, the guard of the socket file.
pub(crate) async fn bind_socket<S: Socket>(
    socket: &mut S,
    endpoint: &str,
) -> anyhow::Result<(String, Option<IpcSocketFile>)> {
    let parsed: Endpoint = endpoint
        .parse()
        .map_err(|err| anyhow!("invalid endpoint {endpoint:?}: {err}"))?;
    match parsed {
        Endpoint::Tcp(host, port) => {
            let host = match host {
                // libzmq's wildcard; zeromq's resolver does not know it.
                Host::Domain(d) if d == "*" => Host::Ipv4(std::net::Ipv4Addr::UNSPECIFIED),
                other => other,
            };
            if !is_loopback(&host) {
                tracing::warn!(
                    endpoint,
                    "tcp endpoint on a non-loopback address: the ZeroMQ channel has no \
                     authentication, anyone who can reach it can control the daemon"
                );
            }
            let bind_to = Endpoint::Tcp(host.clone(), port).to_string();
            // The daemon binds the listener itself and keeps a duplicate, so
            // that an upgrade can pass it on (crate::upgrade::listeners).
            if let Some(key) = crate::upgrade::listeners::next_key(endpoint) {
                let listener = match crate::upgrade::listeners::take(&key) {
                    Some((fd, _)) => std::net::TcpListener::from(fd),
                    None => tokio::net::TcpListener::bind((host.to_string().as_str(), port))
                        .await
                        .and_then(|l| l.into_std())
                        .map_err(|err| anyhow!("bind {bind_to}: {err}"))?,
                };
                crate::upgrade::listeners::hold(&key, &listener, false)?;
                let resolved = socket
                    .bind_listener(listener)
                    .await
                    .map_err(|err| anyhow!("bind {bind_to}: {err}"))?;
                return Ok((resolved.to_string(), None));
            }
            let resolved = socket
                .bind(&bind_to)
                .await
                .map_err(|err| anyhow!("bind {bind_to}: {err}"))?;
            Ok((resolved.to_string(), None))
        }
        Endpoint::Ipc(None) => bail!("ipc endpoint {endpoint:?} has no path"),
        Endpoint::Ipc(Some(path)) => {
            let key = crate::upgrade::listeners::next_key(endpoint);
            let inherited = key.as_deref().and_then(crate::upgrade::listeners::take);
            if inherited.is_none() {
                prepare_ipc_path(&path).await?;
            }
            let resolved = match key {
                // As for tcp: bound here, a duplicate kept for an upgrade.
                Some(key) => {
                    let listener = match inherited {
                        Some((fd, _)) => std::os::unix::net::UnixListener::from(fd),
                        None => std::os::unix::net::UnixListener::bind(&path)
                            .map_err(|err| anyhow!("bind {endpoint}: {err}"))?,
                    };
                    crate::upgrade::listeners::hold(&key, &listener, true)?;
                    socket
                        .bind_listener(listener)
                        .await
                        .map_err(|err| anyhow!("bind {endpoint}: {err}"))?
                }
                None => socket
                    .bind(endpoint)
                    .await
                    .map_err(|err| anyhow!("bind {endpoint}: {err}"))?,
            };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot chmod 0600 {}", path.display()))?;
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot inspect {}", path.display()))?;
            let guard = IpcSocketFile {
                path,
                dev: meta.dev(),
                ino: meta.ino(),
            };
            Ok((resolved.to_string(), Some(guard)))
        }
        other => bail!("unsupported endpoint {other} (use tcp:// or ipc://)"),
    }
}

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Ipv4(a) => a.is_loopback(),
        Host::Ipv6(a) => a.is_loopback(),
        Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<IpAddr>().map(|a| a.is_loopback()).unwrap_or(false)
        }
    }
}

/// Creates the parent directory (0700) and removes a stale socket file: one
/// nobody listens on. A live socket or a non-socket file is refused.
async fn prepare_ipc_path(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if parent == default_runtime_dir() {
        ensure_private_dir(&parent)?;
    } else if !parent.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    let probe = tokio::time::timeout(STALE_PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await;
    match probe {
        Ok(Ok(_)) | Err(_) => bail!(
            "another process is already listening on {} (is another instance running?)",
            path.display()
        ),
        Ok(Err(err)) => {
            tracing::info!(path = %path.display(), probe = %err, "removing a stale ipc socket");
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback(&"127.0.0.1".parse::<IpAddr>().unwrap().into()));
        assert!(is_loopback(&"::1".parse::<IpAddr>().unwrap().into()));
        assert!(is_loopback(&Host::Domain("LocalHost".into())));
        assert!(!is_loopback(&"0.0.0.0".parse::<IpAddr>().unwrap().into()));
        assert!(!is_loopback(&Host::Domain("example.org".into())));
    }

    #[test]
    fn default_endpoints_share_the_runtime_dir() {
        let dir = default_runtime_dir();
        assert!(dir.is_absolute());
        assert_eq!(
            default_endpoint(),
            format!("ipc://{}/control.sock", dir.display())
        );
        assert!(default_pubsub_endpoint().ends_with("/pubsub.sock"));
        assert!(default_stats_endpoint().ends_with("/stats.sock"));
    }

    #[test]
    fn private_dir_is_created_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        // A regular file or a symlink is refused.
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(ensure_private_dir(&file).is_err());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err());
    }

    #[test]
    fn private_dir_owned_by_someone_else_is_refused() {
        // Only meaningful as root (we need a directory owned by another uid).
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}
