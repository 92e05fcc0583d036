//! Sinks: one writer thread per output (file, daemon stdout, daemon stderr).
//!
//! Capture tasks on the log thread hand formatted batches to a sink over an
//! unbounded channel whose *data* is bounded by a byte budget (a semaphore):
//! a sink that cannot write (full pipe on the daemon's stdout, a hung NFS
//! mount) makes only the captures feeding it wait, and so only the children
//! writing to it, exactly as `prog | cat` would. Everything else keeps going.
//! Control messages (ack, sync, reopen) bypass the budget, so `reopen()` never
//! blocks its caller.
//!
//! The writer thread buffers while its queue is non-empty and flushes as soon
//! as the queue is drained: a lone line reaches the kernel within
//! microseconds, and a burst is written in large blocks.

use std::io::{self, Write};
use std::sync::Arc;
use std::thread;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Bytes a sink may have queued but not yet written.
const SINK_BUDGET: usize = 4 << 20;

/// Writer buffer: output is coalesced up to this size before a write(2).
pub(crate) const WRITE_BUF: usize = 256 << 10;

pub(crate) enum Msg {
    Data {
        src: u64,
        bytes: Bytes,
        /// The batch ends inside a line (raw output of an over-long line).
        open: bool,
        permits: u32,
    },
    /// Reply once everything queued before has been written to the kernel.
    Ack(oneshot::Sender<()>),
    /// Reply once everything queued before has been written and fsynced.
    Sync(oneshot::Sender<()>),
    Reopen,
}

/// What a writer thread writes to.
pub(crate) trait Target: Send + 'static {
    fn write(&mut self, src: u64, data: &[u8], open: bool);
    fn flush(&mut self);
    fn sync(&mut self);
    fn reopen(&mut self);
    /// Last call, after the channel closed.
    fn close(&mut self) {
        self.flush();
        self.sync();
    }
}

/// Handle to a writer thread. The thread exits (after a final flush and
/// fsync) when the last handle is dropped.
pub(crate) struct Sink {
    pub(crate) name: String,
    tx: mpsc::UnboundedSender<Msg>,
    budget: Arc<Semaphore>,
    /// Resolves when the writer thread has finished.
    finished: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Sink {
    pub(crate) fn spawn<T: Target>(name: String, target: T) -> anyhow::Result<Arc<Sink>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(SINK_BUDGET));
        let (fin_tx, fin_rx) = oneshot::channel();
        let b = budget.clone();
        thread::Builder::new()
            .name(thread_name(&name))
            .stack_size(512 << 10)
            .spawn(move || {
                writer_loop(rx, b, target);
                let _ = fin_tx.send(());
            })
            .with_context(|| format!("cannot start the writer thread for {name}"))?;
        Ok(Arc::new(Sink {
            name,
            tx,
            budget,
            finished: std::sync::Mutex::new(Some(fin_rx)),
        }))
    }

    /// Queue a batch, waiting while the sink is over its byte budget.
    pub(crate) async fn send(&self, src: u64, bytes: Bytes, open: bool) {
        if bytes.is_empty() {
            return;
        }
        let permits = bytes.len().min(SINK_BUDGET) as u32;
        // The semaphore is never closed; if it were, queueing unthrottled
        // beats losing the batch.
        if let Ok(p) = self.budget.acquire_many(permits).await {
            p.forget();
        }
        if let Err(mpsc::error::SendError(Msg::Data { permits, .. })) = self.tx.send(Msg::Data {
            src,
            bytes,
            open,
            permits,
        }) {
            self.budget.add_permits(permits as usize);
            tracing::warn!(sink = %self.name, "log writer has stopped; lines dropped");
        }
    }

    pub(crate) async fn ack(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Ack(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub(crate) async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub(crate) fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    /// A future resolving when the writer thread has exited; only the first
    /// caller gets it.
    pub(crate) fn take_finished(&self) -> Option<oneshot::Receiver<()>> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

fn thread_name(sink: &str) -> String {
    // Linux truncates thread names to 15 bytes; keep the informative tail.
    let base = sink.rsplit('/').next().unwrap_or(sink);
    let mut n = format!("log:{base}");
    while n.len() > 15 {
        n.remove(4);
    }
    n
}

fn writer_loop<T: Target>(mut rx: mpsc::UnboundedReceiver<Msg>, budget: Arc<Semaphore>, mut t: T) {
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Queue drained: this is the moment to hand data to the kernel.
                t.flush();
                match rx.blocking_recv() {
                    Some(m) => m,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match msg {
            Msg::Data {
                src,
                bytes,
                open,
                permits,
            } => {
                t.write(src, &bytes, open);
                budget.add_permits(permits as usize);
            }
            Msg::Ack(reply) => {
                t.flush();
                let _ = reply.send(());
            }
            Msg::Sync(reply) => {
                t.flush();
                t.sync();
                let _ = reply.send(());
            }
            Msg::Reopen => t.reopen(),
        }
    }
    t.close();
}

/// The daemon's own stdout or stderr.
pub(crate) struct Console {
    stderr: bool,
    buf: Vec<u8>,
    failed: bool,
}

impl Console {
    pub(crate) fn new(stderr: bool) -> Console {
        Console {
            stderr,
            buf: Vec::with_capacity(64 << 10),
            failed: false,
        }
    }

    fn put(&mut self) -> io::Result<()> {
        // Locking std's handle keeps our lines whole relative to anything
        // else in the daemon that prints through std (e.g. tracing).
        if self.stderr {
            let mut h = io::stderr().lock();
            h.write_all(&self.buf)?;
            h.flush()
        } else {
            let mut h = io::stdout().lock();
            h.write_all(&self.buf)?;
            h.flush()
        }
    }
}

impl Target for Console {
    fn write(&mut self, _src: u64, data: &[u8], _open: bool) {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_BUF {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.put() {
            Ok(()) => self.failed = false,
            Err(e) => {
                // Nowhere to put it (e.g. stdout closed): drop, report once.
                if !self.failed {
                    self.failed = true;
                    let which = if self.stderr { "stderr" } else { "stdout" };
                    tracing::warn!("cannot write process output to the daemon's {which}: {e}");
                }
            }
        }
        self.buf.clear();
    }

    fn sync(&mut self) {}

    fn reopen(&mut self) {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_names_fit() {
        assert_eq!(super::thread_name("/var/log/some-long-name.log").len(), 15);
        assert_eq!(super::thread_name("stdout"), "log:stdout");
    }
}
