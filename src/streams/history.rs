//! The last N lines of a watcher, and live followers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::{LogRecord, StreamKind};

/// Smallest live-follower queue: a follower of a watcher that keeps no
/// history still gets some slack before it lags.
const MIN_FOLLOW_QUEUE: usize = 1024;

pub(crate) struct History {
    ring: Mutex<VecDeque<Arc<LogRecord>>>,
    cap: usize,
    tx: broadcast::Sender<Arc<LogRecord>>,
}

impl History {
    pub(crate) fn new(cap: usize) -> History {
        let (tx, _) = broadcast::channel(cap.clamp(MIN_FOLLOW_QUEUE, 1 << 16));
        History {
            ring: Mutex::new(VecDeque::with_capacity(cap.min(4096))),
            cap,
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<LogRecord>>> {
        // A panic while holding this lock leaves a consistent deque (every
        // operation on it is a single push/pop), so poisoning is ignored.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the `n` lines of a read and send them to followers; `make(i)`
    /// builds record `i`, and is called only for the records kept or sent.
    /// Everything happens under one lock so that [`History::follow`] sees
    /// every line exactly once.
    pub(crate) fn push(&self, n: usize, mut make: impl FnMut(usize) -> Arc<LogRecord>) {
        let mut ring = self.lock();
        let followers = self.tx.receiver_count() > 0;
        let first = if followers { 0 } else { n.saturating_sub(self.cap) };
        for i in first..n {
            let r = make(i);
            if followers {
                // Err only means no receiver is left: nothing to do.
                let _ = self.tx.send(r.clone());
            }
            if self.cap > 0 && i + self.cap >= n {
                if ring.len() == self.cap {
                    ring.pop_front();
                }
                ring.push_back(r);
            }
        }
    }

    pub(crate) fn query(
        &self,
        stream: Option<StreamKind>,
        n: usize,
        since: Option<SystemTime>,
    ) -> Vec<Arc<LogRecord>> {
        select(&self.lock(), stream, n, since)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.tx.subscribe()
    }

    pub(crate) fn follow(
        &self,
        stream: Option<StreamKind>,
        n: usize,
        since: Option<SystemTime>,
    ) -> (Vec<Arc<LogRecord>>, broadcast::Receiver<Arc<LogRecord>>) {
        let ring = self.lock();
        let rx = self.tx.subscribe();
        (select(&ring, stream, n, since), rx)
    }
}

fn select(
    ring: &VecDeque<Arc<LogRecord>>,
    stream: Option<StreamKind>,
    n: usize,
    since: Option<SystemTime>,
) -> Vec<Arc<LogRecord>> {
    let mut out: Vec<Arc<LogRecord>> = ring
        .iter()
        .rev()
        .filter(|r| stream.is_none_or(|s| r.stream == s))
        .filter(|r| since.is_none_or(|t| r.time >= t))
        .take(n)
        .cloned()
        .collect();
    out.reverse();
    out
}
