//! What a watcher does with its slots' reports: keep each slot's pid,
//! publish the events, and feed the lifecycle table what concerns it (a slot
//! that gave up, the last process of a `respawn = false` watcher ending,
//! `max_age` replacements).

use super::actor::WatcherActor;
use super::state::Event;
use super::WatcherState;
use crate::events::WatcherEvent;
use crate::processes::{SlotEvent, SlotReport};
use crate::reaper::ExitStatus;
use actix::prelude::*;
use serde_json::json;

impl Handler<SlotReport> for WatcherActor {
    type Result = ();
    fn handle(&mut self, m: SlotReport, ctx: &mut Self::Context) {
        let wid = m.wid;
        // Reports of a slot that was replaced under the same wid only feed events.
        let current = self.slots.current(wid, m.slot_id).is_some();
        match m.event {
            SlotEvent::Spawned { pid } => {
                if let Some(s) = self.slots.current(wid, m.slot_id) {
                    s.pid = Some(pid);
                }
                self.slots.set_ended(wid, m.slot_id, false);
                self.publish(WatcherEvent::Spawn, json!({"process_pid": pid, "wid": wid}));
            }
            SlotEvent::Ready { pid } => {
                self.publish(WatcherEvent::Ready, json!({"process_pid": pid, "wid": wid}))
            }
            SlotEvent::ReadyFailed { pid, reason } => self.publish(
                WatcherEvent::ReadyFailed,
                json!({"process_pid": pid, "wid": wid, "reason": reason}),
            ),
            SlotEvent::Exited {
                pid,
                status,
                on_its_own,
                ..
            } => {
                let failed = on_its_own && status != ExitStatus::Code(0);
                if current && failed && self.spec.critical && !self.spec.respawn {
                    self.events.critical_ended(
                        &self.spec.name,
                        format!("process {pid} exited on its own: {status}"),
                    );
                }
                if let Some(s) = self.slots.current(wid, m.slot_id) {
                    if s.pid == Some(pid) {
                        s.pid = None;
                    }
                }
                self.publish(
                    WatcherEvent::Reap,
                    json!({"process_pid": pid, "wid": wid, "exit_code": status.circus_code()}),
                );
            }
            SlotEvent::Killed { pid, signal } => self.publish(
                WatcherEvent::Kill,
                json!({"process_pid": pid, "wid": wid, "signal": signal.0}),
            ),
            SlotEvent::SpawnFailed { reason } => {
                self.publish(WatcherEvent::SpawnFailed, json!({"wid": wid, "reason": reason}))
            }
            SlotEvent::Backoff { delay, failures } => self.publish(
                WatcherEvent::Backoff,
                json!({"wid": wid, "delay": delay.as_secs_f64(), "failures": failures}),
            ),
            SlotEvent::Aged { pid } => {
                let still = self.slots.live.get(&wid).and_then(|s| s.pid) == Some(pid);
                if current && still && self.state() == WatcherState::Active {
                    let (surge, unavailable) = (self.spec.max_surge, self.spec.max_unavailable);
                    let op = self.life.op();
                    let f = self.rollout(op, vec![(wid, m.slot_id, pid)], surge, unavailable, ctx);
                    // A scale during the replacement counted its extra process.
                    ctx.spawn(f.map(move |_, act, ctx| {
                        if act.life.op() == op {
                            act.feed(Event::Scale, ctx);
                        }
                    }));
                }
            }
            SlotEvent::Failed { failures } => {
                // A new process of a rollout that gives up fails the rollout, not the watcher.
                if current && !self.rollout_slots.contains(&m.slot_id) {
                    self.last_failure = (wid, failures);
                    self.feed(Event::SlotFailed, ctx);
                }
            }
            SlotEvent::Stopped => {
                if let Some(s) = self.slots.current(wid, m.slot_id) {
                    s.pid = None;
                }
                self.slots.set_ended(wid, m.slot_id, true);
                // respawn = false: the watcher stops when its last process is gone.
                if current && !self.spec.respawn && self.slots.all_ended() {
                    self.feed(Event::AllEnded, ctx);
                }
            }
        }
    }
}
