//! The daemon's counters for `/metrics`: restarts, exits by reason, output
//! lines by stream, control requests by command and status. They are counted
//! where those things happen (a few typed calls), whether or not the HTTP
//! endpoint is on: each is a map lookup and an atomic add.

use crate::streams::StreamKind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};

/// Why a process ended, as `ringmaster_process_exits_total{reason}` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ExitReason {
    /// The supervisor stopped it (stop, restart, scale down, shutdown).
    Stopped,
    /// It exited on its own with status 0.
    Exited,
    /// It exited on its own with a non-zero status.
    Failed,
    /// A signal ended it, not sent by the supervisor.
    Signaled,
}

impl ExitReason {
    pub(crate) const ALL: [ExitReason; 4] = [
        ExitReason::Stopped,
        ExitReason::Exited,
        ExitReason::Failed,
        ExitReason::Signaled,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ExitReason::Stopped => "stopped",
            ExitReason::Exited => "exited",
            ExitReason::Failed => "failed",
            ExitReason::Signaled => "signaled",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a control request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RequestStatus {
    Ok,
    Error,
}

impl RequestStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Ok => "ok",
            RequestStatus::Error => "error",
        }
    }
}

/// One watcher's counters.
#[derive(Default)]
pub(crate) struct WatcherCounters {
    pub(crate) restarts: AtomicU64,
    exits: [AtomicU64; 4],
    lines: [AtomicU64; 2],
}

impl WatcherCounters {
    pub(crate) fn exits(&self, r: ExitReason) -> u64 {
        self.exits[r.index()].load(Relaxed)
    }

    pub(crate) fn lines(&self, s: StreamKind) -> u64 {
        self.lines[stream_index(s)].load(Relaxed)
    }
}

fn stream_index(s: StreamKind) -> usize {
    match s {
        StreamKind::Stdout => 0,
        StreamKind::Stderr => 1,
    }
}

#[derive(Default)]
struct Counters {
    watchers: RwLock<HashMap<Arc<str>, Arc<WatcherCounters>>>,
    /// (command, status): commands are the fixed set of `Request::command()`.
    requests: RwLock<HashMap<(&'static str, RequestStatus), u64>>,
}

fn counters() -> &'static Counters {
    static C: OnceLock<Counters> = OnceLock::new();
    C.get_or_init(Counters::default)
}

/// The counters of the watcher called `name` (created on first use; they
/// outlive a reload and a remove, as Prometheus counters should).
fn watcher(name: &str) -> Arc<WatcherCounters> {
    let c = counters();
    if let Some(w) = c.watchers.read().unwrap_or_else(|e| e.into_inner()).get(name) {
        return w.clone();
    }
    c.watchers
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(Arc::from(name))
        .or_default()
        .clone()
}

/// A process of `watcher` was spawned again after its previous one ended.
pub(crate) fn restarted(name: &str) {
    watcher(name).restarts.fetch_add(1, Relaxed);
}

pub(crate) fn exited(name: &str, reason: ExitReason) {
    watcher(name).exits[reason.index()].fetch_add(1, Relaxed);
}

pub(crate) fn log_lines(name: &str, stream: StreamKind, n: u64) {
    if n > 0 {
        watcher(name).lines[stream_index(stream)].fetch_add(n, Relaxed);
    }
}

pub(crate) fn control_request(command: &'static str, status: RequestStatus) {
    *counters()
        .requests
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry((command, status))
        .or_default() += 1;
}

/// Every watcher's counters, by name.
pub(crate) fn watchers() -> Vec<(Arc<str>, Arc<WatcherCounters>)> {
    let mut v: Vec<_> = counters()
        .watchers
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub(crate) fn restarts_of(name: &str) -> u64 {
    counters()
        .watchers
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .map_or(0, |w| w.restarts.load(Relaxed))
}

pub(crate) fn requests() -> Vec<((&'static str, RequestStatus), u64)> {
    let mut v: Vec<_> = counters()
        .requests
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    v.sort_by_key(|((c, s), _)| (*c, s.as_str()));
    v
}
