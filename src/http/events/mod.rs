//! The live stream to the dashboards: frames fanned out over a bounded
//! broadcast channel. Nothing is formatted or sent while nobody watches.

pub(crate) mod sse;

use bytes::Bytes;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Frames a slow dashboard may fall behind by before it is told it missed some.
const BACKLOG: usize = 4096;

/// One Server-Sent Event, ready to write.
#[derive(Clone, Debug)]
pub(crate) struct Frame(Bytes);

impl Frame {
    /// `event: KIND` with `data` as one line of JSON (JSON escapes newlines).
    pub(crate) fn new(kind: &str, data: &impl Serialize) -> Frame {
        let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        Frame(Bytes::from(format!("event: {kind}\ndata: {json}\n\n")))
    }

    pub(crate) fn bytes(&self) -> &Bytes {
        &self.0
    }
}

#[derive(Clone)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Frame>,
    watched: Arc<AtomicBool>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            tx: broadcast::channel(BACKLOG).0,
            watched: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether any dashboard is connected (taps skip all work when not).
    pub(crate) fn watched(&self) -> bool {
        self.watched.load(Ordering::Relaxed)
    }

    pub(crate) fn set_watched(&self, on: bool) {
        self.watched.store(on, Ordering::Relaxed);
    }

    pub(crate) fn send(&self, f: Frame) {
        let _ = self.tx.send(f);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.tx.subscribe()
    }
}
