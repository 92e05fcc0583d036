//! The control channel server: a ZeroMQ ROUTER that speaks the Circus 0.19
//! protocol (the endpoint handling it shares with the publisher is in
//! `endpoints.rs`), and its connections across an upgrade in place.
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
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

pub(crate) use super::endpoints::{bind_socket, IpcSocketFile};
pub use super::endpoints::{
    default_endpoint, default_pubsub_endpoint, default_runtime_dir, default_stats_endpoint,
    ensure_private_dir,
};

use super::carry::{self, Awaiting};
use super::protocol::{error_reply, ok_reply, parse_request, peek_id, CommandError, Request};
use crate::upgrade::connections::{CarriedConn, CarriedRequest, ControlCarry};

/// How long the socket task waits to hand one reply to a peer's send queue
/// before dropping it (a peer that never reads must not stall everyone).
const REPLY_SEND_TIMEOUT: Duration = Duration::from_secs(2);

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
    // Woken by the connections' readers and writers (the zeromq patch);
    // one still busy at the deadline is left out below.
    let _ = tokio::time::timeout(HAND_OVER_QUIET, socket.until_quiet()).await;
    let peers = socket.export_peers();
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

#[cfg(test)]
mod tests {
    use super::*;
    use zeromq::{DealerSocket, SocketOptions};

    fn body(m: &ZmqMessage) -> Bytes {
        m.iter().last().cloned().unwrap_or_default()
    }

    /// The vendored crate's patch: a ROUTER's established connection,
    /// exported (fd, routing id) and adopted by another ROUTER without a
    /// handshake, goes on as the same session for the peer.
    #[test]
    fn an_exported_connection_is_adopted_by_another_router() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut first = RouterSocket::new();
            let ep = first.bind("tcp://127.0.0.1:0").await.expect("bind");
            let mut options = SocketOptions::default();
            options.peer_identity("client-1".parse().expect("identity"));
            let mut client = DealerSocket::with_options(options);
            client.connect(&ep.to_string()).await.expect("connect");
            client.send(ZmqMessage::from("one")).await.expect("send");
            let m = first.recv().await.expect("recv");
            assert_eq!(m.get(0).map(|b| b.as_ref()), Some(b"client-1".as_ref()));
            assert_eq!(body(&m), "one");
            first
                .send(build_reply(vec![Bytes::from("client-1")], b"r1".to_vec()))
                .await
                .expect("reply");
            assert_eq!(body(&client.recv().await.expect("r1")), "r1");

            tokio::time::timeout(Duration::from_secs(5), first.until_quiet())
                .await
                .expect("the connection goes quiet");
            let peers = first.export_peers();
            let [peer] = peers.as_slice() else {
                panic!("one peer: {peers:?}")
            };
            assert!(peer.quiet, "{peers:?}");
            let peer = peer.clone();
            assert_eq!(peer.identity, "client-1");
            assert!(!peer.unix);
            // SAFETY: `first` owns the fd and is alive here.
            let fd = unsafe { BorrowedFd::borrow_raw(peer.fd) }
                .try_clone_to_owned()
                .expect("dup");
            drop(first);

            let mut second = RouterSocket::new();
            second
                .adopt_peer(fd, peer.unix, peer.identity.clone())
                .await
                .expect("adopt");
            client.send(ZmqMessage::from("two")).await.expect("send");
            let m = second.recv().await.expect("recv on the adopted connection");
            assert_eq!(m.get(0).map(|b| b.as_ref()), Some(b"client-1".as_ref()));
            assert_eq!(body(&m), "two");
            second
                .send(build_reply(vec![Bytes::from("client-1")], b"r2".to_vec()))
                .await
                .expect("reply");
            assert_eq!(body(&client.recv().await.expect("r2")), "r2");
        });
    }
}
