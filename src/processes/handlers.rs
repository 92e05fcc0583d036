//! How a slot's actor answers its messages: commands from its watcher, exits
//! from the reaper, sd_notify messages, status queries.

use super::actor::ProcessActor;
use super::messages::*;
use super::state::{Event, State};
use crate::readiness::notify::{Notify, NotifyRouter};
use crate::readiness::state::{Event as Ready, Phase};
use crate::reaper::{Exited, GroupGone};
use actix::prelude::*;
use std::time::Duration;
use tokio::sync::oneshot;

impl Handler<StartSlot> for ProcessActor {
    type Result = ResponseFuture<Option<i32>>;
    fn handle(&mut self, _: StartSlot, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.spawn_waiters.push(tx);
        self.feed(Event::Start, ctx);
        if let Some(pid) = self.life.state.pid() {
            // Already running: nothing was spawned.
            self.resolve_spawn_waiters(Some(pid));
        }
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<WaitReady> for ProcessActor {
    type Result = ResponseFuture<Result<i32, String>>;
    fn handle(&mut self, _: WaitReady, _: &mut Self::Context) -> Self::Result {
        let r = match self.life.state {
            State::Running { pid } if self.readiness.is_ready() => Some(Ok(pid)),
            State::Running { .. } | State::Spawning => None,
            other => Some(Err(self
                .last_error
                .clone()
                .unwrap_or_else(|| format!("process is not running ({})", other.name())))),
        };
        if let Some(r) = r {
            return Box::pin(async move { r });
        }
        let (tx, rx) = oneshot::channel();
        self.ready_waiters.push(tx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err("process slot went away".into())) })
    }
}

impl Handler<ReplaceSlot> for ProcessActor {
    type Result = ResponseFuture<Option<i32>>;
    fn handle(&mut self, m: ReplaceSlot, ctx: &mut Self::Context) -> Self::Result {
        if self.life.state.pid().is_none() {
            return Box::pin(async { None });
        }
        let (tx, rx) = oneshot::channel();
        self.spawn_waiters.push(tx);
        self.stop_override = Some((m.signal, m.timeout));
        self.feed(Event::Replace, ctx);
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<DetachSlot> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: DetachSlot, ctx: &mut Self::Context) {
        self.detached = true;
        ctx.stop();
    }
}

impl Handler<UpdateSlotSpec> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: UpdateSlotSpec, _: &mut Self::Context) {
        self.readiness.set_watchdog(m.0.ready.watchdog_timeout.is_some());
        self.spec = m.0;
        self.sockets = m.1;
        self.logs = m.2;
    }
}

impl Handler<StopSlot> for ProcessActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: StopSlot, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        self.feed(Event::Stop, ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<KillSlot> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: KillSlot, ctx: &mut Self::Context) {
        self.feed(Event::Kill, ctx);
    }
}

impl Handler<SignalSlot> for ProcessActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: SignalSlot, _: &mut Self::Context) -> Self::Result {
        let pid = self
            .life
            .state
            .pid()
            .ok_or_else(|| "process is not running".to_string())?;
        // SAFETY: plain syscalls.
        let rc = if m.group {
            unsafe { libc::killpg(pid, m.signal.0) }
        } else {
            unsafe { libc::kill(pid, m.signal.0) }
        };
        if rc != 0 {
            return Err(format!(
                "cannot signal {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

impl Handler<Exited> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: Exited, ctx: &mut Self::Context) {
        if self.life.state == State::Spawning {
            // The reaper knew the pid before the spawner thread told us.
            self.early_exits.push(m);
            return;
        }
        if self.life.state.pid() != Some(m.pid) {
            return; // a process whose exec failed, already accounted for
        }
        // Its pipes are read to EOF by the log thread: nothing to hand over.
        self.captures = [None, None];
        if let Some(r) = NotifyRouter::get() {
            r.unregister(m.pid);
        }
        let lived = self.started_at.map_or(Duration::ZERO, |t| t.elapsed());
        // A process that failed its readiness check failed to start, however long it took.
        let failed_ready = self.readiness.phase == Phase::Failed { pid: m.pid };
        let uptime = if failed_ready { Duration::ZERO } else { lived };
        tracing::info!(watcher = %self.spec.name, wid = self.wid, pid = m.pid, status = %m.status, uptime_ms = lived.as_millis() as u64, "exited");
        if !self.readiness.is_ready() && self.last_error.is_none() {
            self.last_error = Some(format!("process exited before it was ready ({})", m.status));
        }
        self.ready_step(Ready::Exited { pid: m.pid }, ctx);
        let on_its_own = self.life.state == State::Running { pid: m.pid };
        crate::http::counters::exited(&self.spec.name, exit_reason(on_its_own, m.status));
        self.report(SlotEvent::Exited {
            pid: m.pid,
            status: m.status,
            uptime: lived,
            on_its_own,
        });
        if crate::hooks::configured(&self.spec, crate::hooks::Hook::AfterReap) {
            let (spec, events, wid, pid) = (self.spec.clone(), self.events.clone(), self.wid, m.pid);
            actix::spawn(async move {
                crate::hooks::run(
                    &spec,
                    &events,
                    crate::hooks::Hook::AfterReap,
                    Some(pid),
                    Some(wid),
                )
                .await;
            });
        }
        let group_alive = self.containment.alive_after_exit(&m.group);
        self.feed(
            Event::Exited {
                pid: m.pid,
                uptime,
                group_alive,
            },
            ctx,
        );
    }
}

impl Handler<GroupGone> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: GroupGone, ctx: &mut Self::Context) {
        self.feed(Event::GroupEmpty, ctx);
    }
}

impl Handler<Notify> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: Notify, ctx: &mut Self::Context) {
        let Some(pid) = self.life.state.pid() else { return };
        if let Some(s) = &m.status {
            self.status_text = Some(s.clone());
        }
        if m.reloading {
            self.ready_step(Ready::Reloading { pid }, ctx);
        }
        if m.stopping {
            tracing::info!(watcher = %self.spec.name, wid = self.wid, pid, "process says it is stopping");
        }
        if m.ready {
            self.ready_step(Ready::Passed { pid }, ctx);
        }
        if m.watchdog {
            self.ready_step(Ready::Ping { pid }, ctx);
        }
    }
}

impl Handler<GetProcInfo> for ProcessActor {
    type Result = MessageResult<GetProcInfo>;
    fn handle(&mut self, _: GetProcInfo, _: &mut Self::Context) -> Self::Result {
        MessageResult(ProcInfo {
            wid: self.wid,
            pid: self.life.state.pid(),
            state: self.life.state.name(),
            ready: self.readiness.is_ready(),
            status_text: self.status_text.clone(),
            started: self.started_wall.filter(|_| self.life.state.pid().is_some()),
            restarts: self.spawns.saturating_sub(1),
            argv: self.argv.clone(),
        })
    }
}

fn exit_reason(on_its_own: bool, status: crate::reaper::ExitStatus) -> crate::http::counters::ExitReason {
    use crate::http::counters::ExitReason;
    use crate::reaper::ExitStatus;
    match (on_its_own, status) {
        (false, _) => ExitReason::Stopped,
        (true, ExitStatus::Code(0)) => ExitReason::Exited,
        (true, ExitStatus::Code(_)) => ExitReason::Failed,
        (true, ExitStatus::Signal(_)) => ExitReason::Signaled,
    }
}
