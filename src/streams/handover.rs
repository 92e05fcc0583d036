//! Upgrade in place: every capture stops reading and *parks* its pipe — the
//! read end it owns stays open, with the start of a line not ended yet — so
//! the upgrade hands the capture's own fd to the next image (no duplicate is
//! kept for that), which reads on where this image stopped.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::capture::Splitter;
use super::{lock, CaptureDone, HubInner, LogHub, ReadyMatch, StreamKind, WatcherLogs};

/// What a parked capture leaves for the next image: its pipe's fd number
/// (open, close-on-exec until the exec) and the unfinished line it had read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PipeTail {
    /// Bytes read after the last newline (less than one line's maximum).
    #[serde(default)]
    pub partial: Vec<u8>,
    /// The next bytes continue an over-long line already cut into pieces.
    #[serde(default)]
    pub cont: bool,
}

pub(crate) struct Parked {
    pub(crate) fd: RawFd,
    pub(crate) tail: PipeTail,
}

/// The hub's side: the pause switch, how many captures still read, and
/// the parked pipes by capture id.
pub(crate) struct Handover {
    pause: watch::Sender<bool>,
    reading: watch::Sender<usize>,
    parked: std::sync::Mutex<HashMap<u64, Parked>>,
}

impl Default for Handover {
    fn default() -> Self {
        Handover {
            pause: watch::channel(false).0,
            reading: watch::channel(0).0,
            parked: Default::default(),
        }
    }
}

impl Handover {
    pub(crate) fn pause_switch(&self) -> watch::Receiver<bool> {
        self.pause.subscribe()
    }
}

/// Counts a capture as reading while it neither parked nor ended (however
/// its task ends, abort included).
pub(crate) struct Reading {
    hub: std::sync::Arc<HubInner>,
    id: u64,
    parked: bool,
}

impl Reading {
    /// Counted from the moment the capture is created, before its task runs.
    pub(crate) fn new(hub: std::sync::Arc<HubInner>, id: u64) -> Reading {
        hub.handover.reading.send_modify(|n| *n += 1);
        Reading {
            hub,
            id,
            parked: false,
        }
    }

    /// Parks `fd` until the pause ends; returns it to read on.
    pub(crate) async fn park(&mut self, fd: OwnedFd, splitter: &mut Splitter) -> OwnedFd {
        let h = &self.hub.handover;
        let tail = splitter.tail();
        lock(&h.parked).insert(
            self.id,
            Parked {
                fd: fd.as_raw_fd(),
                tail,
            },
        );
        self.parked = true;
        h.reading.send_modify(|n| *n = n.saturating_sub(1));
        let mut pause = h.pause.subscribe();
        let _ = pause.wait_for(|p| !*p).await;
        lock(&h.parked).remove(&self.id);
        h.reading.send_modify(|n| *n += 1);
        self.parked = false;
        fd
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        let h = &self.hub.handover;
        if self.parked {
            lock(&h.parked).remove(&self.id);
        } else {
            h.reading.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

impl LogHub {
    /// Upgrade: every capture finishes what it read, then parks its pipe.
    /// Err when some did not within `bound` (a sink that blocks): then
    /// nothing can be handed over, and [`LogHub::resume_captures`] is due.
    pub(crate) async fn park_captures(&self, bound: Duration) -> Result<(), String> {
        let h = &self.inner.handover;
        h.pause.send_replace(true);
        let mut reading = h.reading.subscribe();
        let stopped = tokio::time::timeout(bound, async {
            let _ = reading.wait_for(|n| *n == 0).await;
        })
        .await;
        match stopped {
            Ok(()) => Ok(()),
            Err(_) => Err(format!(
                "{} output capture(s) did not stop reading within {bound:?}",
                *h.reading.borrow()
            )),
        }
    }

    /// The pipe capture `id` parked: (fd, unfinished line). None once it
    /// reached the end of its output.
    pub(crate) fn parked(&self, id: u64) -> Option<(RawFd, PipeTail)> {
        lock(&self.inner.handover.parked)
            .get(&id)
            .map(|p| (p.fd, p.tail.clone()))
    }

    /// The upgrade was abandoned: every parked capture reads on.
    pub(crate) fn resume_captures(&self) {
        self.inner.handover.pause.send_replace(false);
    }
}

impl WatcherLogs {
    /// After an upgrade: reads on a pipe the previous image parked, its
    /// unfinished line first.
    pub(crate) fn capture_carried(
        &self,
        fd: OwnedFd,
        pid: u32,
        wid: u32,
        stream: StreamKind,
        ready: Option<ReadyMatch>,
        tail: &PipeTail,
    ) -> CaptureDone {
        self.start_capture(fd, pid, wid, stream, ready, Splitter::resume(tail))
    }
}
