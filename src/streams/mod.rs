//! Capture of the supervised processes' stdout/stderr.
//!
//! # Threads
//! * One **log thread** (`ringmaster-log`) runs its own current-thread tokio
//!   runtime. Every pipe is read there: non-blocking reads of up to 256 KiB,
//!   the pipe enlarged with `F_SETPIPE_SZ` (1 MiB as root, 256 KiB
//!   otherwise), cut into lines, recorded in the watcher's history, sent to
//!   followers and to the publish hook, and formatted for its sink. Nothing
//!   here runs on the daemon's event loop: the core only hands over fds and
//!   awaits small futures.
//! * One **writer thread per sink** (each log file, the daemon's stdout, the
//!   daemon's stderr) does the blocking writes, rotation, reopen checks and
//!   fsync. A sink that cannot keep up (or blocks) holds back only the
//!   captures writing to it (a 4 MiB budget per sink), never the others.
//! * gzip of rotated files runs on a short-lived helper thread.
//!
//! # Latency and batching
//! A lone line is read, written and flushed at once (tens of microseconds).
//! When a child writes many small chunks in a row (a line-buffered logger),
//! the capture waits 1 ms between reads so that a burst is taken in a few
//! large reads; the writer flushes whenever its queue is empty.
//!
//! # Losslessness
//! A capture reads until EOF before it reports done; its last partial line
//! is written; [`CaptureDone`] resolves once the sink has written the lines.
//! `close()`/`shutdown()` wait for EOF (bounded), then drain what is still in
//! the pipe, then flush and fsync every file.
//!
//! See `docs/logs.md` for the configuration.

mod capture;
mod config;
mod file;
mod format;
mod handover;
mod history;
pub(crate) mod seq;
mod sink;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::AbortHandle;

pub use capture::{ReadyMatch, MAX_LINE};
pub use config::{LogFormat, RotateWhen, StreamClass, StreamConfig};
pub(crate) use handover::PipeTail;

use config::{ResolvedStream, Rotation};
use format::{Formatter, Style};
use history::History;
use sink::{Console, Sink};

/// Default number of lines kept per watcher.
pub const DEFAULT_HISTORY_LINES: usize = 1000;

/// Default bound of [`WatcherLogs::close`].
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reading what is left in the pipes after the EOF wait timed out gets at
/// least this long (a full 1 MiB pipe of tiny lines takes a while).
const FORCED_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// fsync can be slow on a busy disk; it gets at least this long.
const MIN_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Stdout,
    Stderr,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of a line a record is. Lines longer than [`MAX_LINE`] are
/// cut into pieces: `First`, `Middle`…, `Last`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Piece {
    #[default]
    Whole,
    First,
    Middle,
    Last,
}

impl Piece {
    /// The line goes on in the next record of the same pid and stream.
    pub fn continues(self) -> bool {
        matches!(self, Piece::First | Piece::Middle)
    }

    /// This record carries on the previous record's line.
    pub fn is_continuation(self) -> bool {
        matches!(self, Piece::Middle | Piece::Last)
    }
}

/// One line (or piece of an over-long line) of a process's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// When the daemon read it.
    pub time: SystemTime,
    pub watcher: Arc<str>,
    pub pid: u32,
    pub wid: u32,
    pub stream: StreamKind,
    /// Raw bytes, without the `\n`.
    pub line: Bytes,
    pub piece: Piece,
}

/// Result of one capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub bytes: u64,
    /// Lines (an over-long line counts once).
    pub lines: u64,
    /// The pipe reached EOF (false: stopped by a close/shutdown timeout).
    pub eof: bool,
}

/// Resolves when the pipe reached EOF (or was drained by a forced stop) and
/// every line has been written by its sink (to the kernel, not necessarily
/// fsynced). Dropping it does not affect the capture.
pub struct CaptureDone {
    rx: oneshot::Receiver<CaptureStats>,
    id: u64,
}

impl CaptureDone {
    /// The capture's id, by which an upgrade finds its parked pipe.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Future for CaptureDone {
    type Output = anyhow::Result<CaptureStats>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.map_err(|_| anyhow!("output capture was aborted (log hub stopped)")))
    }
}

type Hook = dyn Fn(&LogRecord) + Send + Sync;

struct FileEntry {
    sink: Weak<Sink>,
    rotation: Rotation,
    gzip: bool,
}

pub(crate) struct HubInner {
    rt: tokio::runtime::Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    exited: Mutex<Option<oneshot::Receiver<()>>>,
    history_default: usize,
    hook: RwLock<Option<Arc<Hook>>>,
    stdout: Arc<Sink>,
    stderr: Arc<Sink>,
    stdout_tty: bool,
    stderr_tty: bool,
    files: Mutex<HashMap<PathBuf, FileEntry>>,
    watchers: Mutex<Vec<Weak<WatcherInner>>>,
    next_src: AtomicU64,
    stopped: AtomicBool,
    handover: handover::Handover,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a short, panic-free update.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HubInner {
    pub(crate) fn hook(&self) -> Option<Arc<Hook>> {
        self.hook.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The process-wide log machinery. Cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<HubInner>,
}

impl fmt::Debug for LogHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHub").finish_non_exhaustive()
    }
}

impl LogHub {
    /// Start the log thread and the console writers.
    pub fn start(history_lines_default: usize) -> anyhow::Result<LogHub> {
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ringmaster-log".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = htx.send(Err(e));
                        return;
                    }
                };
                let _ = htx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // Tasks still running (stuck on a blocked sink) are dropped
                // here, closing their pipes.
                drop(rt);
                let _ = exit_tx.send(());
            })
            .context("cannot start the log thread")?;
        let rt = hrx
            .recv()
            .context("log thread died during start")?
            .context("cannot create the log thread's runtime")?;
        Ok(LogHub {
            inner: Arc::new(HubInner {
                rt,
                stop: Mutex::new(Some(stop_tx)),
                exited: Mutex::new(Some(exit_rx)),
                history_default: history_lines_default,
                hook: RwLock::new(None),
                stdout: Sink::spawn("stdout".into(), Console::new(false))?,
                stderr: Sink::spawn("stderr".into(), Console::new(true))?,
                stdout_tty: std::io::stdout().is_terminal(),
                stderr_tty: std::io::stderr().is_terminal(),
                files: Mutex::new(HashMap::new()),
                watchers: Mutex::new(Vec::new()),
                next_src: AtomicU64::new(1),
                stopped: AtomicBool::new(false),
                handover: Default::default(),
            }),
        })
    }

    /// The `history_lines_default` given to [`LogHub::start`], for watchers
    /// that do not configure their own.
    pub fn default_history_lines(&self) -> usize {
        self.inner.history_default
    }

    /// Open the sinks of a watcher. Files are opened now, so an unwritable
    /// path is reported here (the error names the file).
    pub fn add_watcher(
        &self,
        name: &str,
        stdout: &StreamConfig,
        stderr: &StreamConfig,
        history_lines: usize,
    ) -> anyhow::Result<WatcherLogs> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            anyhow::bail!("log hub is shut down");
        }
        let name: Arc<str> = Arc::from(name);
        let out = self
            .open_stream(&name, StreamKind::Stdout, stdout)
            .with_context(|| format!("watcher {name}: stdout_stream"))?;
        let err = self
            .open_stream(&name, StreamKind::Stderr, stderr)
            .with_context(|| format!("watcher {name}: stderr_stream"))?;
        let inner = Arc::new(WatcherInner {
            hub: self.inner.clone(),
            name,
            history: History::new(history_lines),
            outs: Mutex::new(Some([out, err])),
            active: watch::channel(0).0,
            force: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            close_done: watch::channel(false).0,
        });
        let mut ws = lock(&self.inner.watchers);
        ws.retain(|w| w.strong_count() > 0);
        ws.push(Arc::downgrade(&inner));
        Ok(WatcherLogs { inner })
    }

    fn open_stream(
        &self,
        name: &Arc<str>,
        kind: StreamKind,
        cfg: &StreamConfig,
    ) -> anyhow::Result<StreamOut> {
        Ok(match cfg.resolve(kind)? {
            ResolvedStream::Null => StreamOut {
                sink: None,
                style: StyleSpec::None,
            },
            ResolvedStream::Console {
                stderr,
                format,
                time,
                color,
            } => {
                let tty = if stderr {
                    self.inner.stderr_tty
                } else {
                    self.inner.stdout_tty
                };
                let color = match color {
                    _ if !tty => None,
                    Some(0) => None,
                    Some(c) => Some(c),
                    None => Some(format::color_for(name)),
                };
                let sink = if stderr {
                    &self.inner.stderr
                } else {
                    &self.inner.stdout
                };
                StreamOut {
                    sink: Some(sink.clone()),
                    style: match format {
                        LogFormat::Json => StyleSpec::Json,
                        LogFormat::Text => StyleSpec::Console(time, color),
                    },
                }
            }
            ResolvedStream::File(spec) => {
                let path = std::path::absolute(&spec.path)
                    .with_context(|| format!("invalid log file path {}", spec.path.display()))?;
                let sink = self.file_sink(&path, &spec.rotation, spec.gzip)?;
                StreamOut {
                    sink: Some(sink),
                    style: match (spec.format, spec.time) {
                        (LogFormat::Json, _) => StyleSpec::Json,
                        (LogFormat::Text, Some(t)) => StyleSpec::Prefixed(t),
                        (LogFormat::Text, None) => StyleSpec::Raw,
                    },
                }
            }
        })
    }

    /// One writer per file, shared by every stream that names it.
    fn file_sink(
        &self,
        path: &std::path::Path,
        rotation: &Rotation,
        gzip: bool,
    ) -> anyhow::Result<Arc<Sink>> {
        let mut files = lock(&self.inner.files);
        files.retain(|_, e| e.sink.strong_count() > 0);
        if let Some(e) = files.get(path) {
            if let Some(s) = e.sink.upgrade() {
                if e.rotation != *rotation || e.gzip != gzip {
                    anyhow::bail!(
                        "log file {} is already used by another stream with different \
                         rotation settings",
                        path.display()
                    );
                }
                return Ok(s);
            }
        }
        let target = file::FileTarget::open(path, rotation.clone(), gzip)?;
        let sink = Sink::spawn(path.display().to_string(), target)?;
        files.insert(
            path.to_path_buf(),
            FileEntry {
                sink: Arc::downgrade(&sink),
                rotation: rotation.clone(),
                gzip,
            },
        );
        Ok(sink)
    }

    /// Called for every line, on the log thread. It must be cheap and must
    /// not block (e.g. `try_send` into a channel): a slow hook slows the
    /// capture of every process.
    pub fn set_publish_hook(&self, hook: Box<dyn Fn(&LogRecord) + Send + Sync>) {
        *self.inner.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(hook));
    }

    /// Adds `tap` after the publish hook: each line goes to both. Same rules.
    pub(crate) fn add_publish_tap(&self, tap: Box<dyn Fn(&LogRecord) + Send + Sync>) {
        let mut h = self.inner.hook.write().unwrap_or_else(|e| e.into_inner());
        let tap: Arc<Hook> = Arc::from(tap);
        *h = Some(match h.take() {
            None => tap,
            Some(first) => Arc::new(move |r: &LogRecord| {
                first(r);
                tap(r);
            }),
        });
    }

    pub fn clear_publish_hook(&self) {
        *self.inner.hook.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Reopen every log file (SIGUSR1, after an external logrotate).
    pub fn reopen_all(&self) {
        let sinks: Vec<Arc<Sink>> = lock(&self.inner.files)
            .values()
            .filter_map(|e| e.sink.upgrade())
            .collect();
        for s in sinks {
            s.reopen();
        }
    }

    /// Upgrade, once the captures are parked ([`LogHub::park_captures`]):
    /// flush every sink, within `bound`.
    pub(crate) async fn flush_for_exec(&self, bound: Duration) {
        let watchers: Vec<Arc<WatcherInner>> = lock(&self.inner.watchers)
            .iter()
            .filter_map(|w| w.upgrade())
            .collect();
        let mut sinks = vec![self.inner.stdout.clone(), self.inner.stderr.clone()];
        for w in &watchers {
            if let Some(outs) = &*lock(&w.outs) {
                sinks.extend(outs.iter().filter_map(|o| o.sink.clone()));
            }
        }
        let flushed = futures::future::join_all(sinks.iter().map(|s| s.sync()));
        if tokio::time::timeout(bound, flushed).await.is_err() {
            tracing::warn!("upgrade: the log files were not flushed in time");
        }
    }

    /// Wait (up to `drain_timeout`) until every capture reached EOF, drain
    /// what is left, flush and fsync every sink, and stop the log thread.
    /// Captures started afterwards are refused.
    pub async fn shutdown(&self, drain_timeout: Duration) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let watchers: Vec<Arc<WatcherInner>> = lock(&self.inner.watchers)
            .drain(..)
            .filter_map(|w| w.upgrade())
            .collect();
        futures::future::join_all(watchers.iter().map(|w| w.close(drain_timeout))).await;
        let sync_bound = drain_timeout.max(MIN_SYNC_TIMEOUT);
        let consoles = [self.inner.stdout.clone(), self.inner.stderr.clone()];
        if tokio::time::timeout(
            sync_bound,
            futures::future::join_all(consoles.iter().map(|s| s.sync())),
        )
        .await
        .is_err()
        {
            tracing::warn!("daemon stdout/stderr did not take the last process output in time");
        }
        if let Some(stop) = lock(&self.inner.stop).take() {
            let _ = stop.send(());
        }
        let exited = lock(&self.inner.exited).take();
        if let Some(rx) = exited {
            if tokio::time::timeout(sync_bound, rx).await.is_err() {
                tracing::warn!("log thread did not stop in time");
            }
        }
    }
}

#[derive(Clone)]
enum StyleSpec {
    None,
    Raw,
    Prefixed(config::TimeFmt),
    Console(config::TimeFmt, Option<u8>),
    Json,
}

struct StreamOut {
    sink: Option<Arc<Sink>>,
    style: StyleSpec,
}

pub(crate) struct WatcherInner {
    pub(crate) hub: Arc<HubInner>,
    pub(crate) name: Arc<str>,
    pub(crate) history: History,
    /// `None` once closed.
    outs: Mutex<Option<[StreamOut; 2]>>,
    /// Number of captures still running.
    pub(crate) active: watch::Sender<usize>,
    /// Set when `close` gave up waiting for EOF.
    force: watch::Sender<bool>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// `close` has started.
    closed: AtomicBool,
    /// `close` has finished.
    close_done: watch::Sender<bool>,
}

impl WatcherInner {
    async fn wait_idle(&self, bound: Duration) -> bool {
        let mut rx = self.active.subscribe();
        let idle = tokio::time::timeout(bound, async {
            let _ = rx.wait_for(|n| *n == 0).await;
        })
        .await;
        idle.is_ok()
    }

    async fn close(&self, bound: Duration) {
        if self.closed.swap(true, Ordering::SeqCst) {
            // Another caller (e.g. shutdown racing a watcher removal) is
            // closing: return when it is done, not before.
            let mut done = self.close_done.subscribe();
            let _ = done.wait_for(|d| *d).await;
            return;
        }
        self.close_inner(bound).await;
        self.close_done.send_replace(true);
    }

    async fn close_inner(&self, bound: Duration) {
        if !self.wait_idle(bound).await {
            tracing::info!(
                watcher = %self.name,
                "output pipes still open after {bound:?} (a child or grandchild still holds them): \
                 draining what is there and closing"
            );
            self.force.send_replace(true);
            if !self.wait_idle(bound.max(FORCED_DRAIN_TIMEOUT)).await {
                tracing::warn!(watcher = %self.name, "log sink not keeping up: abandoning capture");
                for t in lock(&self.tasks).drain(..) {
                    t.abort();
                }
            }
        }
        lock(&self.tasks).clear();
        let outs = lock(&self.outs).take();
        if let Some(outs) = outs {
            let mut sinks: Vec<Arc<Sink>> = outs.into_iter().filter_map(|o| o.sink).collect();
            // stdout and stderr may share one file.
            sinks.dedup_by(|a, b| Arc::ptr_eq(a, b));
            let bound = bound.max(MIN_SYNC_TIMEOUT);
            if tokio::time::timeout(bound, futures::future::join_all(sinks.iter().map(|s| s.sync())))
                .await
                .is_err()
            {
                tracing::warn!(watcher = %self.name, "log files not synced within {bound:?}");
            }
            // Dropping the last handle of a file sink stops its writer
            // thread, which closes the file (and finishes a pending gzip).
            let finishing: Vec<_> = sinks
                .iter()
                .filter(|s| Arc::strong_count(s) == 1)
                .filter_map(|s| s.take_finished())
                .collect();
            drop(sinks);
            if tokio::time::timeout(bound, futures::future::join_all(finishing))
                .await
                .is_err()
            {
                tracing::warn!(watcher = %self.name, "log writer threads did not finish within {bound:?}");
            }
        }
    }
}

/// The logs of one watcher. Cheap to clone.
#[derive(Clone)]
pub struct WatcherLogs {
    inner: Arc<WatcherInner>,
}

impl fmt::Debug for WatcherLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatcherLogs")
            .field("watcher", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl WatcherLogs {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Start reading the read end of a process's stdout or stderr pipe.
    /// Never blocks; the returned future may be dropped.
    pub fn capture(&self, fd: OwnedFd, pid: u32, wid: u32, stream: StreamKind) -> CaptureDone {
        self.capture_matching(fd, pid, wid, stream, None)
    }

    /// [`Self::capture`], also checking each line against a readiness pattern.
    pub fn capture_matching(
        &self,
        fd: OwnedFd,
        pid: u32,
        wid: u32,
        stream: StreamKind,
        ready: Option<ReadyMatch>,
    ) -> CaptureDone {
        self.start_capture(fd, pid, wid, stream, ready, capture::Splitter::default())
    }

    fn start_capture(
        &self,
        fd: OwnedFd,
        pid: u32,
        wid: u32,
        stream: StreamKind,
        ready: Option<ReadyMatch>,
        splitter: capture::Splitter,
    ) -> CaptureDone {
        let (done_tx, rx) = oneshot::channel();
        let w = &self.inner;
        let src = w.hub.next_src.fetch_add(1, Ordering::Relaxed);
        let stopped = w.hub.stopped.load(Ordering::SeqCst);
        let out = match &*lock(&w.outs) {
            Some(outs) if !stopped && !w.closed.load(Ordering::SeqCst) => {
                let o = match stream {
                    StreamKind::Stdout => &outs[0],
                    StreamKind::Stderr => &outs[1],
                };
                let style = match &o.style {
                    StyleSpec::None => None,
                    StyleSpec::Raw => Some(Style::Raw),
                    StyleSpec::Prefixed(t) => Some(Style::Prefixed(t.clone())),
                    StyleSpec::Console(t, c) => Some(Style::Console {
                        time: t.clone(),
                        color: *c,
                    }),
                    StyleSpec::Json => Some(Style::Json),
                };
                match (&o.sink, style) {
                    (Some(s), Some(st)) => {
                        Some(Some((s.clone(), Formatter::new(st, &w.name, pid, wid, stream))))
                    }
                    _ => Some(None),
                }
            }
            _ => None,
        };
        let Some(out) = out else {
            tracing::warn!(watcher = %w.name, pid, "capture after close: output discarded");
            drop(fd);
            return CaptureDone { rx, id: src };
        };
        w.active.send_modify(|n| *n += 1);
        let cap = capture::Capture {
            watcher: w.clone(),
            pid,
            wid,
            stream,
            out,
            src,
            force: w.force.subscribe(),
            ready,
            splitter,
            pause: w.hub.handover.pause_switch(),
            reading: handover::Reading::new(w.hub.clone(), src),
        };
        let task = w.hub.rt.spawn(cap.run(fd, done_tx));
        let mut tasks = lock(&w.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
        CaptureDone { rx, id: src }
    }

    /// The last `n` kept lines (oldest first), optionally only one stream
    /// and only lines read at or after `since`.
    pub fn history(
        &self,
        stream: Option<StreamKind>,
        n: usize,
        since: Option<SystemTime>,
    ) -> Vec<Arc<LogRecord>> {
        self.inner.history.query(stream, n, since)
    }

    /// After an upgrade: the previous image's kept lines, oldest first.
    pub(crate) fn restore_history(&self, records: Vec<LogRecord>) {
        let records: Vec<Arc<LogRecord>> = records.into_iter().map(Arc::new).collect();
        self.inner.history.push(records.len(), |i| records[i].clone());
    }

    /// Live lines from now on. A receiver that falls behind loses its oldest
    /// lines and gets `RecvError::Lagged(count)`; it never slows anything.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.inner.history.subscribe()
    }

    /// [`Self::history`] and [`Self::subscribe`] taken atomically: every line
    /// is in exactly one of the two (for `tail -f`-style followers).
    pub fn follow(
        &self,
        stream: Option<StreamKind>,
        n: usize,
        since: Option<SystemTime>,
    ) -> (Vec<Arc<LogRecord>>, broadcast::Receiver<Arc<LogRecord>>) {
        self.inner.history.follow(stream, n, since)
    }

    /// Reopen this watcher's log files.
    pub fn reopen(&self) {
        if let Some(outs) = &*lock(&self.inner.outs) {
            for o in outs {
                if let Some(s) = &o.sink {
                    s.reopen();
                }
            }
        }
    }

    /// Flush and fsync this watcher's sinks (everything captured so far).
    pub async fn sync(&self) {
        let sinks: Vec<Arc<Sink>> = match &*lock(&self.inner.outs) {
            Some(outs) => outs.iter().filter_map(|o| o.sink.clone()).collect(),
            None => Vec::new(),
        };
        futures::future::join_all(sinks.iter().map(|s| s.sync())).await;
    }

    /// The watcher was removed: wait for its captures to reach EOF (at most
    /// [`DEFAULT_CLOSE_TIMEOUT`]), drain, flush, fsync and close its files.
    pub async fn close(&self) {
        self.close_with_timeout(DEFAULT_CLOSE_TIMEOUT).await
    }

    pub async fn close_with_timeout(&self, drain_timeout: Duration) {
        self.inner.close(drain_timeout).await;
        let hub = &self.inner.hub;
        lock(&hub.watchers)
            .retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.inner)));
    }
}
