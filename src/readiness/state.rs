//! The readiness of the process in one slot, as one table of phases × events.
//!
//! A process is *waiting* from its spawn until its readiness check passes
//! (ready) or fails (failed: it is killed and counts as a quick failure).
//! With `ready.watchdog_timeout`, a ready process must keep pinging
//! (`WATCHDOG=1`) or it is replaced. Every event names the pid it is about;
//! an event for a pid that is not the slot's current process is stale (a
//! late probe result, a timer of the previous process) and is dropped before
//! the table is read. Nothing here touches the OS.
//!
//! | phase \ event | Spawned | Passed | Failed | Reloading | Ping | WatchdogExpired | Exited |
//! |---|---|---|---|---|---|---|---|
//! | Idle | begin → Waiting | – | – | – | – | – | – |
//! | Waiting | cancel, begin → Waiting | cancel, confirm, arm¹ → Ready | cancel, fail → Failed | – | – | – | cancel, not ready² → Idle |
//! | Ready | cancel, begin → Waiting | arm¹ | – | → Reloading | arm¹ | replace | cancel → Idle |
//! | Reloading | cancel, begin → Waiting | confirm, arm¹ → Ready | – | – | arm¹ | replace | cancel → Idle |
//! | Failed | cancel, begin → Waiting | – | – | – | – | – | → Idle |
//!
//! ¹ arm: (re)start the watchdog timer, when a watchdog is configured.
//! ² whoever waits for this process's readiness learns it exited first.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    Waiting {
        pid: i32,
    },
    Ready {
        pid: i32,
    },
    /// Said `RELOADING=1`: not ready until it says `READY=1` again.
    Reloading {
        pid: i32,
    },
    Failed {
        pid: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Spawned {
        pid: i32,
    },
    /// The check passed: probe answered, line matched, `READY=1`, delay elapsed.
    Passed {
        pid: i32,
    },
    Failed {
        pid: i32,
        reason: String,
    },
    Reloading {
        pid: i32,
    },
    /// `WATCHDOG=1`.
    Ping {
        pid: i32,
    },
    WatchdogExpired {
        pid: i32,
    },
    Exited {
        pid: i32,
    },
}

impl Event {
    fn pid(&self) -> i32 {
        match self {
            Event::Spawned { pid }
            | Event::Passed { pid }
            | Event::Failed { pid, .. }
            | Event::Reloading { pid }
            | Event::Ping { pid }
            | Event::WatchdogExpired { pid }
            | Event::Exited { pid } => *pid,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start the configured check for `pid` (probe loop, timers, matcher).
    Begin {
        pid: i32,
    },
    /// Cancel the check and the timers of the previous process.
    Cancel,
    /// Tell the waiters and the watcher that `pid` is ready.
    Confirm {
        pid: i32,
    },
    /// Kill `pid` and tell the waiters why it will never be ready.
    Fail {
        pid: i32,
        reason: String,
    },
    /// The process exited before its check passed.
    NotReady {
        pid: i32,
    },
    ArmWatchdog {
        pid: i32,
    },
    /// The watchdog expired: replace the process.
    Replace {
        pid: i32,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Readiness {
    pub(crate) phase: Phase,
    watchdog: bool,
}

impl Readiness {
    pub(crate) fn new(watchdog: bool) -> Readiness {
        Readiness {
            phase: Phase::Idle,
            watchdog,
        }
    }

    /// A changed spec turns the watchdog on or off for the next pings.
    pub(crate) fn set_watchdog(&mut self, on: bool) {
        self.watchdog = on;
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready { .. })
    }

    fn current(&self) -> Option<i32> {
        match self.phase {
            Phase::Idle => None,
            Phase::Waiting { pid }
            | Phase::Ready { pid }
            | Phase::Reloading { pid }
            | Phase::Failed { pid } => Some(pid),
        }
    }

    fn arm(&self, pid: i32, out: &mut Vec<Action>) {
        if self.watchdog {
            out.push(Action::ArmWatchdog { pid });
        }
    }

    pub(crate) fn step(&mut self, ev: Event) -> Vec<Action> {
        use Action as A;
        use Event as E;
        use Phase as P;
        let mut out = Vec::new();
        if !matches!(ev, E::Spawned { .. }) && self.current() != Some(ev.pid()) {
            return out;
        }
        match (self.phase, ev) {
            (P::Idle, E::Spawned { pid }) => {
                out.push(A::Begin { pid });
                self.phase = P::Waiting { pid };
            }
            (
                P::Waiting { .. } | P::Ready { .. } | P::Reloading { .. } | P::Failed { .. },
                E::Spawned { pid },
            ) => {
                out.push(A::Cancel);
                out.push(A::Begin { pid });
                self.phase = P::Waiting { pid };
            }
            // Stale events are dropped above; an Idle slot has no current pid.
            (
                P::Idle,
                E::Passed { .. }
                | E::Failed { .. }
                | E::Reloading { .. }
                | E::Ping { .. }
                | E::WatchdogExpired { .. }
                | E::Exited { .. },
            ) => {}

            (P::Waiting { pid }, E::Passed { .. }) => {
                out.push(A::Cancel);
                out.push(A::Confirm { pid });
                self.arm(pid, &mut out);
                self.phase = P::Ready { pid };
            }
            (P::Waiting { pid }, E::Failed { reason, .. }) => {
                out.push(A::Cancel);
                out.push(A::Fail { pid, reason });
                self.phase = P::Failed { pid };
            }
            (P::Waiting { .. }, E::Reloading { .. } | E::Ping { .. } | E::WatchdogExpired { .. }) => {}
            (P::Waiting { pid }, E::Exited { .. }) => {
                out.push(A::Cancel);
                out.push(A::NotReady { pid });
                self.phase = P::Idle;
            }

            (P::Ready { pid }, E::Passed { .. } | E::Ping { .. }) => self.arm(pid, &mut out),
            (P::Ready { .. }, E::Failed { .. }) => {}
            (P::Ready { pid }, E::Reloading { .. }) => self.phase = P::Reloading { pid },
            (P::Ready { pid } | P::Reloading { pid }, E::WatchdogExpired { .. }) => {
                out.push(A::Replace { pid })
            }
            (P::Ready { .. } | P::Reloading { .. }, E::Exited { .. }) => {
                out.push(A::Cancel);
                self.phase = P::Idle;
            }

            (P::Reloading { pid }, E::Passed { .. }) => {
                out.push(A::Confirm { pid });
                self.arm(pid, &mut out);
                self.phase = P::Ready { pid };
            }
            (P::Reloading { .. }, E::Failed { .. } | E::Reloading { .. }) => {}
            (P::Reloading { pid }, E::Ping { .. }) => self.arm(pid, &mut out),

            (
                P::Failed { .. },
                E::Passed { .. }
                | E::Failed { .. }
                | E::Reloading { .. }
                | E::Ping { .. }
                | E::WatchdogExpired { .. },
            ) => {}
            (P::Failed { .. }, E::Exited { .. }) => self.phase = P::Idle,
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;

    #[test]
    fn a_process_that_passes_its_check_is_ready_and_its_watchdog_armed() {
        let mut r = Readiness::new(true);
        assert_eq!(r.step(Event::Spawned { pid: 5 }), vec![A::Begin { pid: 5 }]);
        assert_eq!(
            r.step(Event::Passed { pid: 5 }),
            vec![A::Cancel, A::Confirm { pid: 5 }, A::ArmWatchdog { pid: 5 }]
        );
        assert!(r.is_ready());
        assert_eq!(r.step(Event::Ping { pid: 5 }), vec![A::ArmWatchdog { pid: 5 }]);
        assert_eq!(
            r.step(Event::WatchdogExpired { pid: 5 }),
            vec![A::Replace { pid: 5 }]
        );
    }

    #[test]
    fn a_failed_check_kills_the_process_once() {
        let mut r = Readiness::new(false);
        r.step(Event::Spawned { pid: 5 });
        let why = "no READY=1".to_string();
        assert_eq!(
            r.step(Event::Failed {
                pid: 5,
                reason: why.clone()
            }),
            vec![A::Cancel, A::Fail { pid: 5, reason: why }]
        );
        // A late pass of the same process changes nothing.
        assert_eq!(r.step(Event::Passed { pid: 5 }), vec![]);
        assert_eq!(r.step(Event::Exited { pid: 5 }), vec![]);
        assert_eq!(r.phase, Phase::Idle);
    }

    #[test]
    fn events_of_a_previous_process_are_dropped() {
        let mut r = Readiness::new(true);
        r.step(Event::Spawned { pid: 5 });
        r.step(Event::Exited { pid: 5 });
        r.step(Event::Spawned { pid: 6 });
        assert_eq!(r.step(Event::Passed { pid: 5 }), vec![]);
        assert_eq!(r.step(Event::WatchdogExpired { pid: 5 }), vec![]);
        assert_eq!(r.phase, Phase::Waiting { pid: 6 });
    }

    #[test]
    fn exiting_before_ready_tells_the_waiters() {
        let mut r = Readiness::new(false);
        r.step(Event::Spawned { pid: 7 });
        assert_eq!(
            r.step(Event::Exited { pid: 7 }),
            vec![A::Cancel, A::NotReady { pid: 7 }]
        );
    }

    #[test]
    fn reloading_is_not_ready_until_ready_again() {
        let mut r = Readiness::new(false);
        r.step(Event::Spawned { pid: 5 });
        r.step(Event::Passed { pid: 5 });
        assert_eq!(r.step(Event::Reloading { pid: 5 }), vec![]);
        assert!(!r.is_ready());
        assert_eq!(r.step(Event::Passed { pid: 5 }), vec![A::Confirm { pid: 5 }]);
        assert!(r.is_ready());
    }

    #[test]
    fn without_a_watchdog_nothing_is_armed() {
        let mut r = Readiness::new(false);
        r.step(Event::Spawned { pid: 5 });
        r.step(Event::Passed { pid: 5 });
        assert_eq!(r.step(Event::Ping { pid: 5 }), vec![]);
    }
}
