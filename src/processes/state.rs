//! The lifecycle of one process slot, as one table of states × events.
//!
//! A slot is a worker position (its `wid`) that outlives the processes run in
//! it: it spawns, watches, backs off and respawns. This module decides; the
//! actor in `actor.rs` performs the actions and feeds results back as events.
//! Nothing here touches the OS, so every transition is unit-tested.
//!
//! | state \ event | Start | Spawned | SpawnFailed | Exited | RetryDue | Stop | Kill | GraceExpired | GroupEmpty | Replace |
//! |---|---|---|---|---|---|---|---|---|---|---|
//! | Idle/Stopped/Failed | spawn → Spawning | – | – | – | – | report stopped | report stopped | – | – | – |
//! | Spawning | – | → Running | failure¹ | – | – | (stop after spawn) | (kill after spawn) | – | – | – |
//! | Running | – | – | – | respawn² | – | signal group, arm grace → Stopping | SIGKILL group → Stopping | – | – | signal group → Stopping (then respawn) |
//! | Backoff | – | – | – | – | spawn → Spawning | → Stopped | → Stopped | – | – | – |
//! | Stopping | respawn after | – | – | group left? → Draining : done³ | – | – | SIGKILL group | SIGKILL group | – | – |
//! | Draining | respawn after | – | – | – | – | – | SIGKILL group | SIGKILL group | done³ | – |
//!
//! ¹ failure: count a quick failure; past `max_retry` → Failed, else Backoff.
//! ² respawn: not wanted (`respawn = false`) → Stopped; up ≥ min_uptime → spawn at
//!   once and reset the count; else failure¹. Leftovers of its group are killed.
//! ³ done: → Stopped, or spawn again if a restart (max_age, Start) was asked for.
//!
//! "Group" means every process of the slot as `crate::containment` knows
//! it (its cgroup, or its process tree), not only the leader's process group.

use crate::config::Signum;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Spawning,
    Running { pid: i32 },
    Backoff,
    Stopping { pid: i32 },
    Draining { pgid: i32 },
    Stopped,
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Spawning => "spawning",
            State::Running { .. } => "running",
            State::Backoff => "backoff",
            State::Stopping { .. } => "stopping",
            State::Draining { .. } => "stopping",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }

    pub fn pid(self) -> Option<i32> {
        match self {
            State::Running { pid } | State::Stopping { pid } => Some(pid),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    Start,
    Spawned {
        pid: i32,
    },
    SpawnFailed,
    /// The leader was reaped; `group_alive` tells whether others remain in its group.
    Exited {
        pid: i32,
        uptime: Duration,
        group_alive: bool,
    },
    RetryDue,
    Stop,
    Kill,
    GraceExpired,
    GroupEmpty,
    /// Replace the process gracefully (max_age, kill, reload): stop it, then spawn again.
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Spawn,
    /// Wait before spawning again; `failures` is the consecutive quick-failure count (≥ 1).
    Backoff {
        failures: u32,
    },
    SignalGroup(Signum),
    KillGroup,
    ArmGraceTimer,
    CancelTimers,
    WatchGroup {
        pgid: i32,
    },
    /// The slot is down and nothing more will happen until told.
    Stopped,
    /// The restart policy gave up.
    Failed {
        failures: u32,
    },
}

/// What the state machine needs to know about its watcher's policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub respawn: bool,
    pub min_uptime: Duration,
    pub max_retry: i64,
    pub stop_signal: Signum,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub state: State,
    /// Consecutive quick failures.
    pub failures: u32,
    /// Spawn again once the current process is gone (max_age, restart).
    respawn_after_stop: bool,
    /// A Stop/Kill arrived while spawning.
    pending: Option<Event>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            state: State::Idle,
            failures: 0,
            respawn_after_stop: false,
            pending: None,
        }
    }
}

impl Lifecycle {
    pub fn step(&mut self, ev: Event, p: &Policy) -> Vec<Action> {
        use Action as A;
        use State as S;
        match (self.state, ev) {
            (S::Idle | S::Stopped | S::Failed, Event::Start) => {
                self.failures = 0;
                self.respawn_after_stop = false;
                self.state = S::Spawning;
                vec![A::Spawn]
            }
            (S::Idle | S::Stopped | S::Failed, Event::Stop | Event::Kill) => vec![A::Stopped],
            (
                S::Idle | S::Stopped | S::Failed,
                Event::Spawned { .. }
                | Event::SpawnFailed
                | Event::Exited { .. }
                | Event::RetryDue
                | Event::GraceExpired
                | Event::GroupEmpty
                | Event::Replace,
            ) => vec![],

            (S::Spawning, Event::Spawned { pid }) => {
                self.state = S::Running { pid };
                match self.pending.take() {
                    Some(ev) => self.step(ev, p),
                    None => vec![],
                }
            }
            (S::Spawning, Event::SpawnFailed) => {
                if self.pending.take().is_some() {
                    self.state = S::Stopped;
                    return vec![A::Stopped];
                }
                self.quick_failure(p)
            }
            (S::Spawning, Event::Stop | Event::Kill) => {
                self.pending = Some(ev);
                vec![]
            }
            // Whoever waits for a pending stop must see it happen; the
            // watcher never starts a slot it is stopping (it queues the start).
            (S::Spawning, Event::Start) => vec![],
            // The actor replays an exit that beats the spawn's outcome after `Spawned`.
            (
                S::Spawning,
                Event::Exited { .. }
                | Event::RetryDue
                | Event::GraceExpired
                | Event::GroupEmpty
                | Event::Replace,
            ) => vec![],

            (
                S::Running { pid },
                Event::Exited {
                    pid: dead, uptime, ..
                },
            ) if pid == dead => {
                let mut acts = vec![A::KillGroup, A::CancelTimers];
                if !p.respawn {
                    self.state = S::Stopped;
                    acts.push(A::Stopped);
                } else if uptime >= p.min_uptime {
                    self.failures = 0;
                    self.state = S::Spawning;
                    acts.push(A::Spawn);
                } else {
                    acts.extend(self.quick_failure(p));
                }
                acts
            }
            (S::Running { pid }, Event::Stop) => {
                self.respawn_after_stop = false;
                self.state = S::Stopping { pid };
                vec![A::SignalGroup(p.stop_signal), A::ArmGraceTimer]
            }
            (S::Running { pid }, Event::Replace) => {
                self.respawn_after_stop = true;
                self.state = S::Stopping { pid };
                vec![A::SignalGroup(p.stop_signal), A::ArmGraceTimer]
            }
            (S::Running { pid }, Event::Kill) => {
                self.respawn_after_stop = false;
                self.state = S::Stopping { pid };
                vec![A::KillGroup]
            }
            // Another pid's exit, an old timer, a start of a running slot.
            (
                S::Running { .. },
                Event::Exited { .. }
                | Event::Start
                | Event::Spawned { .. }
                | Event::SpawnFailed
                | Event::RetryDue
                | Event::GraceExpired
                | Event::GroupEmpty,
            ) => vec![],

            (S::Backoff, Event::RetryDue) => {
                self.state = S::Spawning;
                vec![A::Spawn]
            }
            (S::Backoff, Event::Stop | Event::Kill) => {
                self.state = S::Stopped;
                vec![A::CancelTimers, A::Stopped]
            }
            // Already on its way to a new spawn.
            (
                S::Backoff,
                Event::Start
                | Event::Replace
                | Event::Spawned { .. }
                | Event::SpawnFailed
                | Event::Exited { .. }
                | Event::GraceExpired
                | Event::GroupEmpty,
            ) => vec![],

            (S::Stopping { .. } | S::Draining { .. }, Event::Start) => {
                self.respawn_after_stop = true;
                vec![]
            }
            (S::Stopping { .. } | S::Draining { .. }, Event::Stop) => {
                self.respawn_after_stop = false;
                vec![]
            }
            (S::Stopping { .. } | S::Draining { .. }, Event::Kill) => {
                self.respawn_after_stop = false;
                vec![A::KillGroup]
            }
            (S::Stopping { .. } | S::Draining { .. }, Event::GraceExpired) => vec![A::KillGroup],
            (
                S::Stopping { pid },
                Event::Exited {
                    pid: dead,
                    group_alive,
                    ..
                },
            ) if pid == dead => {
                if group_alive {
                    self.state = S::Draining { pgid: pid };
                    vec![A::WatchGroup { pgid: pid }]
                } else {
                    self.finish_stop()
                }
            }
            (S::Draining { .. }, Event::GroupEmpty) => self.finish_stop(),
            // Stale: another pid's exit, an old retry timer; a replace is a stop already.
            (
                S::Stopping { .. },
                Event::Exited { .. }
                | Event::Spawned { .. }
                | Event::SpawnFailed
                | Event::RetryDue
                | Event::GroupEmpty
                | Event::Replace,
            ) => vec![],
            (
                S::Draining { .. },
                Event::Exited { .. }
                | Event::Spawned { .. }
                | Event::SpawnFailed
                | Event::RetryDue
                | Event::Replace,
            ) => vec![],
        }
    }

    fn finish_stop(&mut self) -> Vec<Action> {
        if std::mem::take(&mut self.respawn_after_stop) {
            self.state = State::Spawning;
            vec![Action::CancelTimers, Action::Spawn]
        } else {
            self.state = State::Stopped;
            vec![Action::CancelTimers, Action::Stopped]
        }
    }

    fn quick_failure(&mut self, p: &Policy) -> Vec<Action> {
        self.failures = self.failures.saturating_add(1);
        if p.max_retry >= 0 && i64::from(self.failures) >= p.max_retry.max(1) {
            self.state = State::Failed;
            vec![Action::Failed {
                failures: self.failures,
            }]
        } else {
            self.state = State::Backoff;
            vec![Action::Backoff {
                failures: self.failures,
            }]
        }
    }
}

/// Delay before the next spawn after `failures` consecutive quick failures:
/// `initial × multiplier^(failures-1)`, capped, spread by ±jitter (`rand01` ∈ [0,1)).
pub fn backoff_delay(r: &crate::config::RestartPolicy, failures: u32, rand01: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(64) as i32;
    let base = r.initial_delay.as_secs_f64() * r.multiplier.powi(exp);
    let capped = base.min(r.max_delay.as_secs_f64());
    let spread = 1.0 + r.jitter * (2.0 * rand01 - 1.0);
    Duration::from_secs_f64((capped * spread).clamp(0.0, r.max_delay.as_secs_f64() * (1.0 + r.jitter)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            respawn: true,
            min_uptime: Duration::from_secs(1),
            max_retry: 3,
            stop_signal: Signum::TERM,
        }
    }

    fn running(l: &mut Lifecycle, pid: i32) {
        assert_eq!(l.step(Event::Start, &policy()), vec![Action::Spawn]);
        assert_eq!(l.step(Event::Spawned { pid }, &policy()), vec![]);
    }

    #[test]
    fn long_lived_exit_respawns_at_once() {
        let mut l = Lifecycle::default();
        running(&mut l, 10);
        let a = l.step(
            Event::Exited {
                pid: 10,
                uptime: Duration::from_secs(5),
                group_alive: false,
            },
            &policy(),
        );
        assert_eq!(a, vec![Action::KillGroup, Action::CancelTimers, Action::Spawn]);
        assert_eq!(l.state, State::Spawning);
    }

    #[test]
    fn quick_failures_back_off_then_fail() {
        let mut l = Lifecycle::default();
        let p = policy();
        running(&mut l, 10);
        let quick = |pid| Event::Exited {
            pid,
            uptime: Duration::from_millis(10),
            group_alive: false,
        };
        assert!(l.step(quick(10), &p).contains(&Action::Backoff { failures: 1 }));
        assert_eq!(l.step(Event::RetryDue, &p), vec![Action::Spawn]);
        l.step(Event::SpawnFailed, &p);
        assert_eq!(l.state, State::Backoff);
        l.step(Event::RetryDue, &p);
        l.step(Event::Spawned { pid: 12 }, &p);
        assert!(l.step(quick(12), &p).contains(&Action::Failed { failures: 3 }));
        assert_eq!(l.state, State::Failed);
    }

    #[test]
    fn stop_waits_for_group_then_stops() {
        let mut l = Lifecycle::default();
        let p = policy();
        running(&mut l, 10);
        assert_eq!(
            l.step(Event::Stop, &p),
            vec![Action::SignalGroup(Signum::TERM), Action::ArmGraceTimer]
        );
        assert_eq!(l.step(Event::GraceExpired, &p), vec![Action::KillGroup]);
        let a = l.step(
            Event::Exited {
                pid: 10,
                uptime: Duration::ZERO,
                group_alive: true,
            },
            &p,
        );
        assert_eq!(a, vec![Action::WatchGroup { pgid: 10 }]);
        assert_eq!(
            l.step(Event::GroupEmpty, &p),
            vec![Action::CancelTimers, Action::Stopped]
        );
        assert_eq!(l.state, State::Stopped);
    }

    #[test]
    fn max_age_replaces() {
        let mut l = Lifecycle::default();
        let p = policy();
        running(&mut l, 10);
        l.step(Event::Replace, &p);
        let a = l.step(
            Event::Exited {
                pid: 10,
                uptime: Duration::ZERO,
                group_alive: false,
            },
            &p,
        );
        assert_eq!(a, vec![Action::CancelTimers, Action::Spawn]);
    }

    #[test]
    fn no_respawn_stops() {
        let mut l = Lifecycle::default();
        let p = Policy {
            respawn: false,
            ..policy()
        };
        running(&mut l, 10);
        let a = l.step(
            Event::Exited {
                pid: 10,
                uptime: Duration::from_secs(9),
                group_alive: false,
            },
            &p,
        );
        assert!(a.contains(&Action::Stopped));
    }

    #[test]
    fn stale_events_ignored() {
        let mut l = Lifecycle::default();
        let p = policy();
        running(&mut l, 10);
        assert!(l
            .step(
                Event::Exited {
                    pid: 99,
                    uptime: Duration::ZERO,
                    group_alive: false
                },
                &p
            )
            .is_empty());
        assert!(l.step(Event::GraceExpired, &p).is_empty());
        assert!(l.step(Event::RetryDue, &p).is_empty());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let r = crate::config::RestartPolicy {
            jitter: 0.0,
            ..Default::default()
        };
        assert_eq!(backoff_delay(&r, 1, 0.5), Duration::from_millis(100));
        assert_eq!(backoff_delay(&r, 3, 0.5), Duration::from_millis(400));
        assert_eq!(backoff_delay(&r, 40, 0.5), Duration::from_secs(30));
    }
}
