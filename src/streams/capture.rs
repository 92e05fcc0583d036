//! Reading one pipe on the log thread: split into lines, hand them to the
//! history/followers/publish hook and, formatted, to the sink.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};

use super::format::Formatter;
use super::sink::Sink;
use super::{CaptureStats, LogRecord, Piece, StreamKind, WatcherInner};

/// Longest line kept whole. A longer line is cut into pieces of at most this
/// many bytes (at a UTF-8 character boundary when the text is UTF-8); each
/// piece is its own [`LogRecord`] marked with [`Piece`]. Raw file output
/// writes the pieces back to back, so the file gets the original line.
pub const MAX_LINE: usize = 64 * 1024;

/// One read(2) takes at most this much.
const READ_BUF: usize = 256 * 1024;

/// Pipe buffer requested with F_SETPIPE_SZ, so that a fast writer is woken
/// less often. Unprivileged users get less: the kernel counts pipe memory
/// against a per-user soft limit (fs.pipe-user-pages-soft) and, past it,
/// gives *every* new pipe of that user a single page.
const PIPE_SIZE_ROOT: i32 = 1 << 20;
const PIPE_SIZE_USER: i32 = 256 << 10;

/// Burst coalescing (see `read_loop`): reads smaller than this, coming
/// closer together than the delay, make the capture wait the delay.
const COALESCE_BELOW: usize = 32 << 10;
const COALESCE_DELAY: Duration = Duration::from_millis(1);

/// When forced to stop (close/shutdown timeout), read at most the pipe's
/// capacity plus this much more: everything written before the stop request
/// is taken, even if the child keeps writing.
const FORCED_DRAIN_EXTRA: usize = READ_BUF;

thread_local! {
    // One buffer for every capture: they all run on the log thread and a
    // chunk is processed before the next read.
    static READ_SPACE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_BUF]);
}

/// Cuts a byte stream into lines and pieces of over-long lines.
#[derive(Default)]
pub(crate) struct Splitter {
    /// Start of a line whose newline has not come yet (< MAX_LINE bytes).
    pending: Vec<u8>,
    /// The next piece continues an over-long line.
    cont: bool,
}

/// Where to cut `s` (longer than `max`) so as not to split a UTF-8 sequence.
fn cut_point(s: &[u8], max: usize) -> usize {
    let is_cont = |b: u8| (b & 0xC0) == 0x80;
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| i > 0 && !is_cont(s[i]))
        .unwrap_or(max)
}

type Emit<'a> = dyn FnMut(usize, usize, Piece) + 'a;

fn emit_complete(buf: &[u8], start: usize, end: usize, cont: &mut bool, emit: &mut Emit<'_>) {
    let mut pos = start;
    while end - pos > MAX_LINE {
        let cut = cut_point(&buf[pos..end], MAX_LINE);
        emit(pos, pos + cut, if *cont { Piece::Middle } else { Piece::First });
        *cont = true;
        pos += cut;
    }
    emit(pos, end, if *cont { Piece::Last } else { Piece::Whole });
    *cont = false;
}

/// Emit (as ranges of `buf`) every complete line and the full-size pieces of
/// the unterminated tail; return how many bytes were consumed.
fn split(buf: &[u8], cont: &mut bool, emit: &mut Emit<'_>) -> usize {
    let mut pos = 0;
    for nl in memchr::memchr_iter(b'\n', buf) {
        emit_complete(buf, pos, nl, cont, emit);
        pos = nl + 1;
    }
    while buf.len() - pos > MAX_LINE {
        let cut = cut_point(&buf[pos..], MAX_LINE);
        emit(pos, pos + cut, if *cont { Piece::Middle } else { Piece::First });
        *cont = true;
        pos += cut;
    }
    pos
}

impl Splitter {
    /// Feed one read. Every line (or piece) is handed to `emit` as a slice
    /// of one shared buffer (one allocation per read, not per line); the
    /// return value is the consumed part of that buffer, which is exactly the
    /// raw output of those lines.
    pub(crate) fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(Bytes, Piece)) -> Bytes {
        let buf = if self.pending.is_empty() {
            Bytes::copy_from_slice(data)
        } else {
            // Exact-size copy: a line kept in the history pins this buffer,
            // so it must not carry spare capacity.
            let mut v = Vec::with_capacity(self.pending.len() + data.len());
            v.extend_from_slice(&self.pending);
            v.extend_from_slice(data);
            Bytes::from(v)
        };
        let used = split(&buf, &mut self.cont, &mut |a, b, p| emit(buf.slice(a..b), p));
        self.pending.clear();
        self.pending.extend_from_slice(&buf[used..]);
        if self.pending.capacity() > 4 * MAX_LINE && self.pending.len() < MAX_LINE {
            self.pending.shrink_to(MAX_LINE);
        }
        buf.slice(..used)
    }

    /// What was read of a line not ended yet (for an upgrade's handover).
    pub(crate) fn tail(&self) -> super::handover::PipeTail {
        super::handover::PipeTail {
            partial: self.pending.clone(),
            cont: self.cont,
        }
    }

    /// Goes on from a previous image's [`Splitter::tail`].
    pub(crate) fn resume(t: &super::handover::PipeTail) -> Splitter {
        Splitter {
            pending: t.partial.clone(),
            cont: t.cont,
        }
    }

    /// End of stream: a last line without newline is still a line, and an
    /// over-long line cut short gets its final (possibly empty) piece.
    /// Returns the line, if there is one.
    pub(crate) fn finish(&mut self) -> Option<(Bytes, Piece)> {
        if self.pending.is_empty() && !self.cont {
            return None;
        }
        let line = Bytes::copy_from_slice(&self.pending);
        self.pending = Vec::new();
        let piece = if self.cont { Piece::Last } else { Piece::Whole };
        self.cont = false;
        Some((line, piece))
    }
}

/// Everything one capture task needs.
pub(crate) struct Capture {
    pub(crate) watcher: Arc<WatcherInner>,
    pub(crate) pid: u32,
    pub(crate) wid: u32,
    pub(crate) stream: StreamKind,
    /// `None` when the stream goes nowhere (class null).
    pub(crate) out: Option<(Arc<Sink>, Formatter)>,
    pub(crate) src: u64,
    pub(crate) force: watch::Receiver<bool>,
    /// Readiness by output (`ready.type = "log"`): fired by the first matching line.
    pub(crate) ready: Option<ReadyMatch>,
    /// Where splitting starts (an upgrade's unfinished line, or nothing).
    pub(crate) splitter: Splitter,
    /// Set during an upgrade: park the pipe (see `handover`).
    pub(crate) pause: watch::Receiver<bool>,
    pub(crate) reading: super::handover::Reading,
}

/// Tells a process's slot that a line of its output matched the readiness
/// pattern. Shared by the process's stdout and stderr captures; fires once.
#[derive(Clone)]
pub struct ReadyMatch {
    pattern: Arc<regex::bytes::Regex>,
    tx: Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl ReadyMatch {
    pub fn new(pattern: Arc<regex::bytes::Regex>) -> (ReadyMatch, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            ReadyMatch {
                pattern,
                tx: Arc::new(std::sync::Mutex::new(Some(tx))),
            },
            rx,
        )
    }

    /// True once fired (by this capture or the other stream's).
    fn check(&self, line: &[u8]) -> bool {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.is_none() {
            return true;
        }
        if self.pattern.is_match(line) {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
            return true;
        }
        false
    }
}

/// Output of one read, built synchronously and then handed on.
struct Chunk {
    time: SystemTime,
    lines: Vec<(Bytes, Piece)>,
    /// Formatted output for the sink.
    out: Bytes,
    /// The output ends inside a line (raw style, over-long line).
    open: bool,
}

/// Decrements the watcher's active-capture count however the task ends
/// (including abort).
struct ActiveGuard(Arc<WatcherInner>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Capture {
    /// Split and format one read (`None`: end of stream).
    fn render(&mut self, splitter: &mut Splitter, data: Option<&[u8]>) -> Chunk {
        let time = SystemTime::now();
        let mut lines = Vec::new();
        let raw = match data {
            Some(d) => splitter.feed(d, &mut |l, p| lines.push((l, p))),
            None => {
                lines.extend(splitter.finish());
                Bytes::new()
            }
        };
        let mut open = false;
        let out = match &mut self.out {
            None => Bytes::new(),
            Some((_, f)) if f.is_raw() && data.is_some() => {
                // Raw output is the input, byte for byte: no copy.
                open = lines.last().is_some_and(|(_, p)| p.continues());
                raw
            }
            Some((_, f)) => {
                let mut out = Vec::with_capacity(lines.iter().map(|(l, _)| l.len() + 48).sum());
                for (l, p) in &lines {
                    f.line(&mut out, time, l, *p);
                }
                Bytes::from(out)
            }
        };
        Chunk {
            time,
            lines,
            out,
            open,
        }
    }

    fn record(&self, time: SystemTime, line: Bytes, piece: Piece) -> LogRecord {
        LogRecord {
            time,
            watcher: self.watcher.name.clone(),
            pid: self.pid,
            wid: self.wid,
            stream: self.stream,
            line,
            piece,
        }
    }

    async fn deliver(&mut self, chunk: Chunk, stats: &mut CaptureStats) {
        let Chunk {
            time,
            lines,
            out,
            open,
        } = chunk;
        let complete = lines.iter().filter(|(_, p)| !p.continues()).count() as u64;
        stats.lines += complete;
        crate::http::counters::log_lines(&self.watcher.name, self.stream, complete);
        if let Some(m) = &self.ready {
            if lines.iter().any(|(l, _)| m.check(l)) {
                self.ready = None;
            }
        }
        if !lines.is_empty() {
            if let Some(hook) = self.watcher.hub.hook() {
                for (l, p) in &lines {
                    hook(&self.record(time, l.clone(), *p));
                }
            }
            // Records are allocated only for what the history keeps or a
            // follower is waiting for.
            self.watcher.history.push(lines.len(), |i| {
                Arc::new(self.record(time, lines[i].0.clone(), lines[i].1))
            });
        }
        if let Some((sink, _)) = &self.out {
            sink.send(self.src, out, open).await;
        }
    }

    /// Read until EOF (or a forced stop), then flush the partial line and
    /// wait until the sink has written everything.
    pub(crate) async fn run(mut self, fd: OwnedFd, done: oneshot::Sender<CaptureStats>) {
        let _active = ActiveGuard(self.watcher.clone());
        let mut stats = CaptureStats::default();
        let mut splitter = std::mem::take(&mut self.splitter);
        match prepare(&fd) {
            Ok(()) => self.read_loop(fd, &mut splitter, &mut stats).await,
            Err(e) => tracing::error!(
                watcher = %self.watcher.name, pid = self.pid,
                "cannot make output pipe non-blocking, output lost: {e}"
            ),
        }
        let chunk = self.render(&mut splitter, None);
        self.deliver(chunk, &mut stats).await;
        if let Some((sink, _)) = &self.out {
            sink.ack().await;
        }
        // Let go of the sink before this capture counts as finished, so that
        // `close` sees whether it holds the last handle (and can wait for the
        // writer thread to close the file).
        self.out = None;
        let _ = done.send(stats);
    }

    /// One non-blocking read into the shared buffer, processed at once.
    fn read_once(&mut self, fd: &OwnedFd, splitter: &mut Splitter, stats: &mut CaptureStats) -> Read {
        READ_SPACE.with_borrow_mut(|buf| match nix::unistd::read(fd, buf) {
            Ok(0) => Read::Eof,
            Ok(n) => {
                stats.bytes += n as u64;
                Read::Data(n, self.render(splitter, Some(&buf[..n])))
            }
            Err(nix::errno::Errno::EAGAIN) => Read::Empty,
            Err(nix::errno::Errno::EINTR) => Read::Interrupted,
            // EIO is how a pty master reports that the other side closed:
            // an EOF, not an error.
            Err(nix::errno::Errno::EIO) => Read::Eof,
            Err(e) => Read::Failed(e),
        })
    }

    /// The fd is registered with the reactor only while waiting for data
    /// after the pipe ran dry. While a burst is being read it is not: a
    /// registered pipe wakes the reactor on *every* write of the child, and
    /// a line-buffered child would make the log thread spin through tens of
    /// thousands of wake-ups per second during the coalescing pause.
    async fn read_loop(&mut self, mut fd: OwnedFd, splitter: &mut Splitter, stats: &mut CaptureStats) {
        let mut force = self.force.clone();
        let forced = async move {
            let _ = force.wait_for(|f| *f).await;
        };
        tokio::pin!(forced);
        let mut last_read: Option<Instant> = None;
        loop {
            // A child that writes non-stop never lets the pipe run dry, so
            // the stop request is also checked between reads.
            if *self.force.borrow() {
                break;
            }
            if *self.pause.borrow() {
                fd = self.reading.park(fd, splitter).await;
                last_read = None;
                continue;
            }
            match self.read_once(&fd, splitter, stats) {
                Read::Data(n, chunk) => {
                    self.deliver(chunk, stats).await;
                    let now = Instant::now();
                    let burst = last_read.is_some_and(|t| now.duration_since(t) < COALESCE_DELAY);
                    last_read = Some(now);
                    if burst && n < COALESCE_BELOW {
                        // Many small writes in a row (a line-buffered child):
                        // let a millisecond of them pile up in the pipe and
                        // take them in one read, rather than waking up (and
                        // waking the sink) for each line. A lone line is
                        // never delayed, only the rest of a burst.
                        let mut pause = self.pause.clone();
                        tokio::select! {
                            biased;
                            _ = &mut forced => break,
                            _ = pause.wait_for(|p| *p) => {}
                            _ = tokio::time::sleep(COALESCE_DELAY) => {}
                        }
                    } else {
                        // Let the other captures run between two big reads.
                        tokio::task::yield_now().await;
                    }
                }
                Read::Empty => {
                    let rx = match pipe::Receiver::from_owned_fd_unchecked(fd) {
                        Ok(rx) => rx,
                        Err(e) => {
                            // The fd was consumed by the failed registration.
                            tracing::error!(
                                watcher = %self.watcher.name, pid = self.pid,
                                "cannot watch output pipe, rest of output lost: {e}"
                            );
                            return;
                        }
                    };
                    let mut pause = self.pause.clone();
                    let stop = tokio::select! {
                        biased;
                        r = rx.readable() => r.is_err(),
                        _ = &mut forced => true,
                        _ = pause.wait_for(|p| *p) => false,
                    };
                    fd = match rx.into_nonblocking_fd() {
                        Ok(fd) => fd,
                        Err(e) => {
                            tracing::error!(
                                watcher = %self.watcher.name, pid = self.pid,
                                "cannot unregister output pipe, rest of output lost: {e}"
                            );
                            return;
                        }
                    };
                    if stop {
                        break;
                    }
                }
                Read::Interrupted => {}
                Read::Eof => {
                    stats.eof = true;
                    return;
                }
                Read::Failed(e) => {
                    tracing::error!(watcher = %self.watcher.name, pid = self.pid, "reading output: {e}");
                    stats.eof = true;
                    return;
                }
            }
        }
        self.forced_drain(&fd, splitter, stats).await;
    }

    /// Take what is in the pipe now (bounded: the child may keep writing).
    async fn forced_drain(&mut self, fd: &OwnedFd, splitter: &mut Splitter, stats: &mut CaptureStats) {
        let capacity = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|c| usize::try_from(c).ok())
            .unwrap_or(PIPE_SIZE_ROOT as usize);
        let mut taken = 0usize;
        while taken < capacity + FORCED_DRAIN_EXTRA {
            match self.read_once(fd, splitter, stats) {
                Read::Data(n, chunk) => {
                    taken += n;
                    self.deliver(chunk, stats).await;
                }
                Read::Interrupted => {}
                Read::Eof => {
                    stats.eof = true;
                    return;
                }
                Read::Empty | Read::Failed(_) => return,
            }
        }
    }
}

enum Read {
    Data(usize, Chunk),
    Empty,
    Interrupted,
    Eof,
    Failed(nix::errno::Errno),
}

/// Non-blocking mode (required by the reactor) and a bigger pipe buffer.
fn prepare(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    let want = if nix::unistd::geteuid().is_root() {
        PIPE_SIZE_ROOT
    } else {
        PIPE_SIZE_USER
    };
    // Not a pipe (socket, pty) or over the limit: keep what it has.
    if let Ok(cur) = fcntl(fd, FcntlArg::F_GETPIPE_SZ) {
        if cur < want {
            let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(want));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], eof: bool) -> Vec<(Vec<u8>, Piece)> {
        let mut s = Splitter::default();
        let mut got = Vec::new();
        let mut raw = Vec::new();
        let mut input = Vec::new();
        for c in chunks {
            input.extend_from_slice(c);
            let used = s.feed(c, &mut |l, p| got.push((l.to_vec(), p)));
            raw.extend_from_slice(&used);
        }
        if eof {
            if let Some((l, p)) = s.finish() {
                raw.extend_from_slice(&l);
                got.push((l.to_vec(), p));
            }
            // Raw output is the input exactly (EOF adds only a newline).
            assert_eq!(raw, input);
        }
        got
    }

    #[test]
    fn a_line_goes_on_in_a_resumed_splitter() {
        let mut a = Splitter::default();
        let mut got = Vec::new();
        a.feed(b"one\ntw", &mut |l, _| got.push(l.to_vec()));
        let mut b = Splitter::resume(&a.tail());
        let raw = b.feed(b"o\n", &mut |l, _| got.push(l.to_vec()));
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        // Raw output is the whole line: the start read by the previous image too.
        assert_eq!(&raw[..], b"two\n");
    }

    #[test]
    fn lines_across_chunks() {
        let got = run(&[b"ab", b"c\nde", b"f\n\nxy"], true);
        let lines: Vec<_> = got
            .iter()
            .map(|(l, p)| (String::from_utf8_lossy(l).into_owned(), *p))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("abc".into(), Piece::Whole),
                ("def".into(), Piece::Whole),
                ("".into(), Piece::Whole),
                ("xy".into(), Piece::Whole)
            ]
        );
        assert!(run(&[b"abc"], false).is_empty());
    }

    #[test]
    fn long_line_pieces_keep_utf8() {
        // 3-byte characters so that MAX_LINE falls inside one.
        let line: Vec<u8> = "€".repeat(MAX_LINE).into_bytes();
        let mut input = line.clone();
        input.push(b'\n');
        for chunking in [input.len(), 4096, 65_536, 100_000] {
            let chunks: Vec<&[u8]> = input.chunks(chunking).collect();
            let got = run(&chunks, true);
            assert!(got.len() >= 3);
            assert_eq!(got[0].1, Piece::First);
            assert_eq!(got.last().unwrap().1, Piece::Last);
            let mut joined = Vec::new();
            for (l, p) in &got {
                assert!(l.len() <= MAX_LINE);
                assert!(std::str::from_utf8(l).is_ok(), "piece cut inside a char");
                if *p != Piece::First {
                    assert!(p.is_continuation());
                }
                joined.extend_from_slice(l);
            }
            assert_eq!(joined, line);
        }
    }

    #[test]
    fn exact_max_is_whole_and_open_line_closed_at_eof() {
        let mut input = vec![b'a'; MAX_LINE];
        input.push(b'\n');
        let got = run(&[&input[..10], &input[10..]], true);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, Piece::Whole);
        let got = run(&[&vec![b'b'; MAX_LINE + 1]], true);
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            vec![Piece::First, Piece::Last]
        );
        let got = run(&[&vec![b'b'; 2 * MAX_LINE + 1]], true);
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            vec![Piece::First, Piece::Middle, Piece::Last]
        );
    }
}
