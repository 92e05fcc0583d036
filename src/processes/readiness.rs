//! A slot's readiness checks, performing what the readiness table
//! (`crate::readiness::state`) decides: start the configured check (delay,
//! notify, log line, TCP, HTTP, command), confirm or fail it, run the
//! watchdog.

use super::actor::ProcessActor;
use super::messages::SlotEvent;
use super::state::Event;
use crate::config::model::ReadyKind;
use crate::events::WatcherEvent;
use crate::readiness::probe;
use crate::readiness::state::{Action, Event as Ready};
use crate::streams::ReadyMatch;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Instant;

impl ProcessActor {
    /// Feeds the readiness table and performs what it decides.
    pub(super) fn ready_step(&mut self, ev: Ready, ctx: &mut Context<Self>) {
        for a in self.readiness.step(ev) {
            match a {
                Action::Begin { pid } => self.begin_check(pid, ctx),
                Action::Cancel => {
                    for h in self.checks.drain(..) {
                        ctx.cancel_future(h);
                    }
                    if let Some(h) = self.watchdog_timer.take() {
                        ctx.cancel_future(h);
                    }
                }
                Action::Confirm { pid } => {
                    tracing::info!(watcher = %self.spec.name, wid = self.wid, pid, "ready");
                    self.resolve_ready_waiters(Ok(pid));
                    self.report(SlotEvent::Ready { pid });
                }
                Action::Fail { pid, reason } => {
                    tracing::error!(watcher = %self.spec.name, wid = self.wid, pid, %reason, "readiness failed; killing the process");
                    self.last_error = Some(format!("readiness failed: {reason}"));
                    self.resolve_ready_waiters(Err(format!("process {pid} failed readiness: {reason}")));
                    self.report(SlotEvent::ReadyFailed { pid, reason });
                    self.containment.kill(Some(pid));
                }
                Action::NotReady { pid } => {
                    let why = self
                        .last_error
                        .clone()
                        .unwrap_or_else(|| format!("process {pid} exited before it was ready"));
                    self.last_error = Some(why.clone());
                    self.resolve_ready_waiters(Err(why));
                }
                Action::ArmWatchdog { pid } => self.arm_watchdog(pid, ctx),
                Action::Replace { pid } => {
                    let t = self.spec.ready.watchdog_timeout.unwrap_or_default();
                    tracing::warn!(watcher = %self.spec.name, wid = self.wid, pid, "watchdog: no WATCHDOG=1 within {t:?}; restarting the process");
                    self.events.watcher(
                        &self.spec.name,
                        WatcherEvent::Watchdog,
                        serde_json::json!({"process_pid": pid, "wid": self.wid, "time": crate::watchers::now_f64()}),
                    );
                    self.feed(Event::Replace, ctx);
                }
            }
        }
    }

    fn arm_watchdog(&mut self, pid: i32, ctx: &mut Context<Self>) {
        if let Some(t) = self.spec.ready.watchdog_timeout {
            self.arm_watchdog_in(pid, t, ctx);
        }
    }

    /// The watchdog of `pid` expires after `t` unless pinged.
    pub(super) fn arm_watchdog_in(&mut self, pid: i32, t: std::time::Duration, ctx: &mut Context<Self>) {
        if let Some(h) = self.watchdog_timer.take() {
            ctx.cancel_future(h);
        }
        self.watchdog_at = Some(Instant::now() + t);
        self.watchdog_timer = Some(ctx.run_later(t, move |act, ctx| {
            act.watchdog_timer = None;
            act.ready_step(Ready::WatchdogExpired { pid }, ctx);
        }));
    }

    /// For `ready.type = "log"`: the matcher handed to this spawn's captures
    /// (its receiver is kept for the check).
    pub(super) fn log_ready_match(&mut self) -> Option<ReadyMatch> {
        self.log_ready = None;
        if self.spec.ready.kind != ReadyKind::Log {
            return None;
        }
        let pattern = self.spec.ready.pattern.as_deref().unwrap_or_default();
        match regex::bytes::Regex::new(pattern) {
            Ok(re) => {
                let (m, rx) = ReadyMatch::new(Arc::new(re));
                self.log_ready = Some(rx);
                Some(m)
            }
            Err(e) => {
                // Checked when the configuration was loaded; the timeout reports it.
                tracing::error!(watcher = %self.spec.name, "ready.pattern: {e}");
                None
            }
        }
    }

    /// Fails the check of `pid` after `ready.start_timeout`, saying `why`.
    fn fail_after_timeout(&mut self, pid: i32, why: String, ctx: &mut Context<Self>) {
        let h = ctx.run_later(self.spec.ready.start_timeout, move |act, ctx| {
            act.ready_step(Ready::Failed { pid, reason: why }, ctx);
        });
        self.checks.push(h);
    }

    fn begin_check(&mut self, pid: i32, ctx: &mut Context<Self>) {
        let r = self.spec.ready.clone();
        match r.kind {
            ReadyKind::Delay => {
                let warmup = self.spec.warmup_delay;
                if warmup.is_zero() {
                    self.ready_step(Ready::Passed { pid }, ctx);
                } else {
                    let h = ctx.run_later(warmup, move |act, ctx| act.ready_step(Ready::Passed { pid }, ctx));
                    self.checks.push(h);
                }
            }
            ReadyKind::Notify => {
                let why = format!("no READY=1 within {:?}", r.start_timeout);
                self.fail_after_timeout(pid, why, ctx);
            }
            ReadyKind::Log => {
                let why = format!(
                    "no output line matched {:?} within {:?}",
                    r.pattern.as_deref().unwrap_or_default(),
                    r.start_timeout
                );
                self.fail_after_timeout(pid, why, ctx);
                if let Some(rx) = self.log_ready.take() {
                    let h = ctx.spawn(rx.into_actor(self).map(move |matched, act, ctx| {
                        // Err: the output ended without a match (the timeout reports it).
                        if matched.is_ok() {
                            act.ready_step(Ready::Passed { pid }, ctx);
                        }
                    }));
                    self.checks.push(h);
                }
            }
            ReadyKind::Tcp | ReadyKind::Http | ReadyKind::Command => {
                let env = vec![
                    ("RINGMASTER_WATCHER".to_string(), self.spec.name.clone()),
                    ("RINGMASTER_PID".to_string(), pid.to_string()),
                    ("RINGMASTER_WID".to_string(), self.wid.to_string()),
                ];
                let fut = async move {
                    let deadline = Instant::now() + r.start_timeout;
                    let mut attempts = 0u32;
                    loop {
                        attempts += 1;
                        let res = match r.kind {
                            ReadyKind::Tcp => {
                                probe::tcp(r.address.as_deref().unwrap_or_default(), r.timeout).await
                            }
                            ReadyKind::Http => {
                                probe::http(r.url.as_deref().unwrap_or_default(), r.timeout).await
                            }
                            _ => {
                                probe::command(r.command.as_deref().unwrap_or_default(), &env, r.timeout)
                                    .await
                            }
                        };
                        let last = match res {
                            Ok(()) => return Ok(()),
                            Err(e) => e,
                        };
                        if r.retries.is_some_and(|n| attempts >= n) || Instant::now() + r.interval > deadline
                        {
                            return Err(format!("not ready after {attempts} probes: {last}"));
                        }
                        actix::clock::sleep(r.interval).await;
                    }
                };
                let h = ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                    let ev = match res {
                        Ok(()) => Ready::Passed { pid },
                        Err(reason) => Ready::Failed { pid, reason },
                    };
                    act.ready_step(ev, ctx);
                }));
                self.checks.push(h);
            }
        }
    }
}
