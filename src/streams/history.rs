//! The last N lines of a watcher, and live followers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::{LogRecord, StreamKind};

/// Smallest live-follower queue: a follower of a watcher that keeps no
/// history still gets some slack before it lags.
const MIN_FOLLOW_QUEUE: usize = 1024;

/// Both allocated only once needed: a watcher's memory at rest must not
/// grow with `history_lines` (a 1,024-slot follower queue alone is ~40 KiB,
/// more than a whole watcher may cost at 1,000 watchers).
pub(crate) struct History {
    ring: Mutex<Ring>,
    cap: usize,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Arc<LogRecord>>,
    /// Created by the first follower, dropped with the last one.
    tx: Option<broadcast::Sender<Arc<LogRecord>>>,
}

impl Ring {
    fn subscribe(&mut self, cap: usize) -> broadcast::Receiver<Arc<LogRecord>> {
        self.tx
            .get_or_insert_with(|| broadcast::channel(cap.clamp(MIN_FOLLOW_QUEUE, 1 << 16)).0)
            .subscribe()
    }
}

impl History {
    pub(crate) fn new(cap: usize) -> History {
        History {
            ring: Mutex::new(Ring::default()),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding this lock leaves a consistent deque (every
        // operation on it is a single push/pop), so poisoning is ignored.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the `n` lines of a read and send them to followers; `make(i)`
    /// builds record `i`, and is called only for the records kept or sent.
    /// Everything happens under one lock so that [`History::follow`] sees
    /// every line exactly once.
    pub(crate) fn push(&self, n: usize, mut make: impl FnMut(usize) -> Arc<LogRecord>) {
        let mut guard = self.lock();
        let ring = &mut *guard;
        if ring.tx.as_ref().is_some_and(|t| t.receiver_count() == 0) {
            ring.tx = None;
        }
        let first = if ring.tx.is_some() {
            0
        } else {
            n.saturating_sub(self.cap)
        };
        for i in first..n {
            let r = make(i);
            if let Some(tx) = &ring.tx {
                // Err only means no receiver is left: nothing to do.
                let _ = tx.send(r.clone());
            }
            if self.cap > 0 && i + self.cap >= n {
                if ring.lines.len() == self.cap {
                    ring.lines.pop_front();
                }
                ring.lines.push_back(r);
            }
        }
    }

    pub(crate) fn query(
        &self,
        stream: Option<StreamKind>,
        n: usize,
        since: Option<SystemTime>,
    ) -> Vec<Arc<LogRecord>> {
        select(&self.lock().lines, stream, n, since)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.lock().subscribe(self.cap)
    }

    pub(crate) fn follow(
        &self,
        stream: Option<StreamKind>,
        n: usize,
        since: Option<SystemTime>,
    ) -> (Vec<Arc<LogRecord>>, broadcast::Receiver<Arc<LogRecord>>) {
        let mut ring = self.lock();
        let rx = ring.subscribe(self.cap);
        (select(&ring.lines, stream, n, since), rx)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> Arc<LogRecord> {
        Arc::new(LogRecord {
            time: SystemTime::now(),
            watcher: Arc::from("w"),
            pid: 1,
            wid: 1,
            stream: StreamKind::Stdout,
            line: bytes::Bytes::copy_from_slice(line.as_bytes()),
            piece: Default::default(),
        })
    }

    #[test]
    fn followers_come_and_go_and_history_stays() {
        let h = History::new(2);
        h.push(3, |i| rec(&format!("a{i}")));
        let text = |r: &LogRecord| String::from_utf8_lossy(&r.line).into_owned();
        let lines = |v: Vec<Arc<LogRecord>>| v.iter().map(|r| text(r)).collect::<Vec<_>>();
        assert_eq!(lines(h.query(None, 10, None)), ["a1", "a2"]);
        let (old, mut rx) = h.follow(None, 1, None);
        assert_eq!(lines(old), ["a2"]);
        h.push(1, |_| rec("b"));
        assert_eq!(rx.try_recv().map(|r| text(&r)).ok().as_deref(), Some("b"));
        drop(rx);
        // The last follower gone: lines are only kept, and a new follower still gets them.
        h.push(1, |_| rec("c"));
        assert!(h.lock().tx.is_none());
        let mut rx = h.subscribe();
        h.push(1, |_| rec("d"));
        assert_eq!(rx.try_recv().map(|r| text(&r)).ok().as_deref(), Some("d"));
        assert_eq!(lines(h.query(None, 10, None)), ["c", "d"]);
    }
}
