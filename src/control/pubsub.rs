//! The event publisher: a ZeroMQ PUB socket sending Circus-style two-frame
//! events `[topic, json]`, e.g. `[b"watcher.web.spawn", b"{\"process_pid\":..}"]`.
//!
//! `publish` never blocks and never awaits: events go through a bounded
//! queue to one task that owns the socket; when the queue is full the event
//! is dropped and counted (PUB semantics drop for slow subscribers anyway).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::bail;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use zeromq::{PubSocket, Socket, SocketSend, ZmqMessage};

use super::transport::{bind_socket, IpcSocketFile};

/// Events buffered between `publish` and the socket task.
pub const PUBLISH_QUEUE_CAPACITY: usize = 4096;

/// `watcher.<name>.<event>` with the name lowercased and spaces turned into
/// `_`, exactly as Circus builds its topics.
pub fn watcher_topic(name: &str, event: &str) -> String {
    format!("watcher.{}.{}", name.to_lowercase().replace(' ', "_"), event)
}

/// Cheap to clone; all clones feed the same socket.
#[derive(Clone)]
pub struct Publisher {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::Sender<(String, Vec<u8>)>,
    dropped: AtomicU64,
    endpoints: Vec<String>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Publisher {
    /// Binds a PUB socket on `endpoint` and starts its task (`tokio::spawn`,
    /// so no LocalSet is needed).
    pub async fn bind(endpoint: &str) -> anyhow::Result<Publisher> {
        Self::bind_all(&[endpoint]).await
    }

    /// Binds one PUB socket on several endpoints.
    pub async fn bind_all<S: AsRef<str>>(endpoints: &[S]) -> anyhow::Result<Publisher> {
        if endpoints.is_empty() {
            bail!("no pubsub endpoint given");
        }
        let mut socket = PubSocket::new();
        let mut bound = Vec::new();
        let mut ipc_files = Vec::new();
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref();
            let (resolved, ipc) = bind_socket(&mut socket, endpoint)
                .await
                .map_err(|err| err.context(format!("cannot bind the pubsub endpoint {endpoint}")))?;
            tracing::info!(endpoint = %resolved, "pubsub channel listening");
            bound.push(resolved);
            ipc_files.extend(ipc);
        }
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(socket, rx, stop_rx, ipc_files));
        Ok(Publisher {
            inner: Some(Arc::new(Inner {
                tx,
                dropped: AtomicU64::new(0),
                endpoints: bound,
                stop: Mutex::new(Some(stop_tx)),
                task: Mutex::new(Some(task)),
            })),
        })
    }

    /// A publisher that discards everything (no pubsub endpoint configured).
    pub fn noop() -> Publisher {
        Publisher { inner: None }
    }

    /// Queues one event. Never blocks; drops (and counts) it when the queue
    /// is full or the publisher is shut down.
    pub fn publish(&self, topic: impl Into<String>, payload: &Value) {
        let Some(inner) = &self.inner else {
            return;
        };
        let body = match serde_json::to_vec(payload) {
            Ok(body) => body,
            Err(err) => {
                tracing::warn!(error = %err, "event payload not serializable, dropped");
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if inner.tx.try_send((topic.into(), body)).is_err() {
            let n = inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Log the first drop and then every 1000th, not every event.
            if n == 1 || n % 1000 == 0 {
                tracing::warn!(dropped = n, "event queue full, events dropped");
            }
        }
    }

    /// Shorthand for `publish(watcher_topic(name, event), payload)`.
    pub fn publish_watcher_event(&self, name: &str, event: &str, payload: &Value) {
        self.publish(watcher_topic(name, event), payload);
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map(|i| i.dropped.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Resolved endpoints (empty for `noop`).
    pub fn endpoints(&self) -> &[String] {
        self.inner.as_ref().map(|i| i.endpoints.as_slice()).unwrap_or(&[])
    }

    /// Sends the events already queued, closes the socket and unlinks its
    /// ipc files. Idempotent; later `publish` calls are dropped. If every
    /// clone is dropped without this, the task does the same on its own.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        let stop = inner.stop.lock().ok().and_then(|mut s| s.take());
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "publisher task ended abnormally");
            }
        }
    }
}

async fn run(
    mut socket: PubSocket,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    mut stop_rx: oneshot::Receiver<()>,
    ipc_files: Vec<IpcSocketFile>,
) {
    loop {
        tokio::select! {
            biased;
            // Ok: shutdown(); Err: every Publisher clone is gone.
            _ = &mut stop_rx => break,
            event = rx.recv() => match event {
                Some((topic, body)) => send(&mut socket, topic, body).await,
                None => break,
            },
        }
    }
    rx.close();
    while let Ok((topic, body)) = rx.try_recv() {
        send(&mut socket, topic, body).await;
    }
    for err in socket.close().await {
        tracing::debug!(error = %err, "pubsub socket close");
    }
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    drop(ipc_files);
}

async fn send(socket: &mut PubSocket, topic: String, body: Vec<u8>) {
    let mut message = ZmqMessage::from(Bytes::from(topic));
    message.push_back(Bytes::from(body));
    if let Err(err) = socket.send(message).await {
        tracing::debug!(error = %err, "event not published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_like_circus() {
        assert_eq!(watcher_topic("Web Server", "spawn"), "watcher.web_server.spawn");
        assert_eq!(
            watcher_topic("plugin:flapping", "start"),
            "watcher.plugin:flapping.start"
        );
    }

    #[test]
    fn publisher_is_send_sync_for_event_sinks() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Publisher>();
    }

    #[test]
    fn noop_never_fails() {
        let p = Publisher::noop();
        p.publish("watcher.a.spawn", &serde_json::json!({"x": 1}));
        assert_eq!(p.dropped(), 0);
        assert!(p.endpoints().is_empty());
    }
}
