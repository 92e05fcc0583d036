//! Starting many processes without holding up the actors' thread.
//!
//! Each start is prepared on that thread (a process actor, its containment,
//! its spawn job), and every watcher shares it: preparing 10,000 starts in
//! one go kept a `list` of another watcher waiting for seconds. A grow keeps
//! at most [`WINDOW`] starts in flight and adds the next slot only as one of
//! them has spawned, so the thread goes back to its mailbox between steps and
//! the spawner's queue stays short (it makes callers wait when full). Slots are added only while the operation
//! that began the grow is current, so a stop is never overtaken by a start.

use super::actor::WatcherActor;
use crate::processes::{ProcessActor, StartSlot};
use actix::prelude::*;
use std::collections::VecDeque;
use tokio::sync::oneshot;

/// Starts in flight at once per watcher.
const WINDOW: usize = 32;

pub(super) struct Grow {
    /// The operation it works for; once another begins it adds nothing more.
    op: u64,
    /// Tells this grow's completions from an earlier one's.
    id: u64,
    in_flight: usize,
    /// Existing slots to start before any is added (a watcher's start).
    pending: VecDeque<Addr<ProcessActor>>,
    /// Every slot started, for whoever began the grow with [`WatcherActor::grow_start`].
    started: Vec<Addr<ProcessActor>>,
    report: Option<oneshot::Sender<Vec<Addr<ProcessActor>>>>,
    /// Resolved when the grow ends (scale-ups that joined it).
    waiters: Vec<oneshot::Sender<()>>,
}

impl WatcherActor {
    /// Starts `pending`, then adds and starts slots up to numprocesses, for
    /// operation `op`. Resolves with the slots started once each has spawned
    /// (or the grow ended early: another operation began).
    pub(super) fn grow_start(
        &mut self,
        op: u64,
        pending: VecDeque<Addr<ProcessActor>>,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Vec<Addr<ProcessActor>>> {
        self.end_grow();
        let (tx, rx) = oneshot::channel();
        self.begin_grow(op, pending, Some(tx), ctx);
        rx
    }

    /// Adds and starts slots up to numprocesses for the current operation,
    /// joining the grow in progress if there is one. Resolves once the grow
    /// has ended.
    pub(super) fn grow_join(&mut self, ctx: &mut Context<Self>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let op = self.life.op();
        match &mut self.growing {
            Some(g) if g.op == op => g.waiters.push(tx),
            _ if self.slots.live.len() as u32 >= self.numprocesses => {
                let _ = tx.send(());
            }
            _ => {
                self.end_grow();
                self.begin_grow(op, VecDeque::new(), None, ctx);
                if let Some(g) = &mut self.growing {
                    g.waiters.push(tx);
                }
            }
        }
        rx
    }

    fn begin_grow(
        &mut self,
        op: u64,
        pending: VecDeque<Addr<ProcessActor>>,
        report: Option<oneshot::Sender<Vec<Addr<ProcessActor>>>>,
        ctx: &mut Context<Self>,
    ) {
        self.grow_ids += 1;
        self.growing = Some(Grow {
            op,
            id: self.grow_ids,
            in_flight: 0,
            pending,
            started: Vec::new(),
            report,
            waiters: Vec::new(),
        });
        self.grow_step(ctx);
    }

    /// Ends the grow in progress, if any: whoever waits for it is answered
    /// with what it started so far.
    pub(super) fn end_grow(&mut self) {
        if let Some(g) = self.growing.take() {
            if let Some(r) = g.report {
                let _ = r.send(g.started);
            }
            for w in g.waiters {
                let _ = w.send(());
            }
        }
    }

    /// Fills the window; ends the grow once nothing is left to start.
    fn grow_step(&mut self, ctx: &mut Context<Self>) {
        let Some(mut g) = self.growing.take() else {
            return;
        };
        if g.op != self.life.op() || !self.state().running() {
            self.growing = Some(g);
            self.end_grow();
            return;
        }
        let mut starts = Vec::new();
        while g.in_flight + starts.len() < WINDOW {
            if let Some(a) = g.pending.pop_front() {
                starts.push(a);
            } else if (self.slots.live.len() as u32) < self.numprocesses {
                starts.push(self.add_slot(ctx).1);
            } else {
                break;
            }
        }
        g.in_flight += starts.len();
        let (id, record, idle) = (g.id, g.report.is_some(), g.in_flight == 0);
        for a in starts {
            let req = a.send(StartSlot);
            if record {
                g.started.push(a);
            }
            ctx.spawn(
                async move {
                    let _ = req.await;
                }
                .into_actor(self)
                .map(move |(), act, ctx| {
                    match &mut act.growing {
                        Some(g) if g.id == id => g.in_flight -= 1,
                        _ => return,
                    }
                    act.grow_step(ctx);
                }),
            );
        }
        self.growing = Some(g);
        if idle {
            self.end_grow();
        }
    }
}
