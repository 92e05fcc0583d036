//! Scenarios of the watcher lifecycle table, one per rule.
use super::*;
use Action as A;
use WatcherState as S;

fn done() -> Outcome {
    Outcome::Done(StartInfo::default())
}

fn running(l: &mut Lifecycle) {
    l.step(Event::Start(1));
    let op = l.op();
    l.step(Event::StartDone {
        op,
        info: StartInfo::default(),
        aborted: false,
    });
    assert_eq!(l.state, S::Active);
}

#[test]
fn start_from_stopped_runs_a_start_and_replies_when_it_is_done() {
    let mut l = Lifecycle::default();
    assert_eq!(l.step(Event::Start(7)), vec![A::RunStart { op: 1 }]);
    assert_eq!(l.state, S::Starting);
    let info = StartInfo {
        started: vec![42],
        ..Default::default()
    };
    let a = l.step(Event::StartDone {
        op: 1,
        info: info.clone(),
        aborted: false,
    });
    assert_eq!(
        a,
        vec![
            A::Reply(vec![7], Outcome::Done(info)),
            A::Publish(Publish::Start),
            A::Scale
        ]
    );
    assert_eq!(l.state, S::Active);
}

#[test]
fn start_during_a_stop_ends_running() {
    let mut l = Lifecycle::default();
    running(&mut l);
    l.step(Event::Stop(2));
    assert_eq!(l.state, S::Stopping { failed: false });
    assert_eq!(l.step(Event::Start(3)), vec![]);
    let op = l.op();
    let a = l.step(Event::StopDone { op, pids: vec![10] });
    assert!(a.contains(&A::RunStart { op: op + 1 }));
    assert!(a
        .iter()
        .any(|x| matches!(x, A::Reply(t, Outcome::Done(_)) if t == &vec![2])));
    assert_eq!(l.state, S::Starting);
    let a = l.step(Event::StartDone {
        op: op + 1,
        info: StartInfo::default(),
        aborted: false,
    });
    assert!(a.contains(&A::Reply(vec![3], done())));
    assert_eq!(l.state, S::Active);
}

#[test]
fn stop_during_a_start_cancels_it_and_ends_stopped() {
    let mut l = Lifecycle::default();
    l.step(Event::Start(1));
    let a = l.step(Event::Stop(2));
    assert_eq!(
        a,
        vec![
            A::Reply(vec![1], Outcome::Canceled(BY_STOP)),
            A::RunStop { op: 2, hooks: true }
        ]
    );
    // The cancelled start's completion is dropped.
    assert_eq!(
        l.step(Event::StartDone {
            op: 1,
            info: StartInfo::default(),
            aborted: false
        }),
        vec![]
    );
    l.step(Event::StopDone { op: 2, pids: vec![] });
    assert_eq!(l.state, S::Stopped);
}

#[test]
fn a_stop_after_a_queued_start_wins() {
    let mut l = Lifecycle::default();
    running(&mut l);
    l.step(Event::Stop(2));
    l.step(Event::Start(3));
    let a = l.step(Event::Stop(4));
    assert_eq!(a, vec![A::Reply(vec![3], Outcome::Canceled(BY_STOP))]);
    let op = l.op();
    let a = l.step(Event::StopDone { op, pids: vec![] });
    assert!(!a.iter().any(|x| matches!(x, A::RunStart { .. })));
    assert!(a.iter().any(|x| matches!(x, A::Reply(t, _) if t == &vec![2, 4])));
    assert_eq!(l.state, S::Stopped);
}

#[test]
fn remove_during_a_rollout_cancels_it_and_ends_with_no_process() {
    let mut l = Lifecycle::default();
    running(&mut l);
    let a = l.step(Event::Restart(2, RestartHow::Rolling));
    assert!(matches!(
        a[..],
        [A::RunRollout {
            sequential: false,
            ..
        }]
    ));
    assert_eq!(l.state, S::Reloading);
    let a = l.step(Event::Remove(3, true));
    assert_eq!(a[0], A::Reply(vec![2], Outcome::Canceled(BY_REMOVE)));
    assert!(matches!(a[1], A::RunStop { .. }));
    let op = l.op();
    // The rollout's late completion changes nothing.
    assert_eq!(
        l.step(Event::RolloutDone {
            op: op - 1,
            info: StartInfo::default()
        }),
        vec![]
    );
    let a = l.step(Event::StopDone { op, pids: vec![] });
    assert!(a.contains(&A::Forget));
    assert!(a.contains(&A::Reply(vec![3], done())));
    assert_eq!(l.state, S::Removed);
    assert_eq!(
        l.step(Event::Start(9)),
        vec![A::Reply(vec![9], Outcome::Canceled(REMOVED))]
    );
}

#[test]
fn rm_nostop_forgets_at_once_from_any_running_state() {
    for setup in [0, 1, 2] {
        let mut l = Lifecycle::default();
        match setup {
            0 => {
                l.step(Event::Start(1));
            }
            1 => running(&mut l),
            _ => {
                running(&mut l);
                l.step(Event::Restart(1, RestartHow::Rolling));
            }
        }
        let a = l.step(Event::Remove(5, false));
        assert!(a.contains(&A::Forget), "setup {setup}: {a:?}");
        assert_eq!(l.state, S::Removed);
    }
}

#[test]
fn a_failed_rollout_reverts_the_spec_and_stays_active() {
    let mut l = Lifecycle::default();
    running(&mut l);
    l.step(Event::Restart(2, RestartHow::Rolling));
    let info = StartInfo {
        errors: vec!["not ready".into()],
        ..Default::default()
    };
    let op = l.op();
    let a = l.step(Event::RolloutDone {
        op,
        info: info.clone(),
    });
    assert_eq!(
        a,
        vec![
            A::RevertSpec,
            A::Publish(Publish::RolloutFailed),
            A::Reply(vec![2], Outcome::Done(info)),
            A::Scale
        ]
    );
    assert_eq!(l.state, S::Active);
}

#[test]
fn restarts_during_a_rollout_roll_once_more_afterwards() {
    let mut l = Lifecycle::default();
    running(&mut l);
    l.step(Event::Restart(2, RestartHow::Rolling));
    assert_eq!(l.step(Event::Restart(3, RestartHow::Rolling)), vec![]);
    assert_eq!(l.step(Event::Restart(4, RestartHow::Rolling)), vec![]);
    let op = l.op();
    let a = l.step(Event::RolloutDone {
        op,
        info: StartInfo::default(),
    });
    assert!(a.contains(&A::RunRollout {
        op: op + 1,
        sequential: false
    }));
    let a = l.step(Event::RolloutDone {
        op: op + 1,
        info: StartInfo::default(),
    });
    assert!(a.contains(&A::Reply(vec![3, 4], done())));
}

#[test]
fn a_slot_giving_up_stops_the_watcher_as_failed() {
    let mut l = Lifecycle::default();
    l.step(Event::Start(1));
    let a = l.step(Event::SlotFailed);
    assert_eq!(
        a,
        vec![
            A::Reply(vec![1], Outcome::Canceled(BY_FAILURE)),
            A::Publish(Publish::Failed),
            A::RunStop { op: 2, hooks: false }
        ]
    );
    assert_eq!(l.state.as_str(), "failed");
    l.step(Event::StopDone { op: 2, pids: vec![] });
    assert_eq!(l.state, S::Failed);
    // Start leaves failed.
    assert_eq!(l.step(Event::Start(3)), vec![A::RunStart { op: 3 }]);
}

#[test]
fn a_stop_during_a_failure_stop_acknowledges_it() {
    let mut l = Lifecycle::default();
    running(&mut l);
    l.step(Event::SlotFailed);
    l.step(Event::Stop(5));
    let op = l.op();
    l.step(Event::StopDone { op, pids: vec![] });
    assert_eq!(l.state, S::Stopped);
}

#[test]
fn respawn_false_processes_all_ending_stop_the_watcher() {
    let mut l = Lifecycle::default();
    running(&mut l);
    assert_eq!(l.step(Event::AllEnded), vec![A::Publish(Publish::Stop)]);
    assert_eq!(l.state, S::Stopped);

    // Ending before the start finished: Stopped at StartDone.
    let mut l = Lifecycle::default();
    l.step(Event::Start(1));
    assert_eq!(l.step(Event::AllEnded), vec![]);
    let a = l.step(Event::StartDone {
        op: 1,
        info: StartInfo::default(),
        aborted: false,
    });
    assert_eq!(a, vec![A::Reply(vec![1], done()), A::Publish(Publish::Stop)]);
    assert_eq!(l.state, S::Stopped);
}

#[test]
fn restart_variants_of_an_active_watcher() {
    let mut l = Lifecycle::default();
    running(&mut l);
    let a = l.step(Event::Restart(2, RestartHow::Hup));
    assert_eq!(a, vec![A::Hup, A::Publish(Publish::Reload), A::ReplyRunning(2)]);
    assert_eq!(l.state, S::Active);
    let a = l.step(Event::Restart(3, RestartHow::StopStart));
    assert!(matches!(a[..], [A::RunStop { hooks: true, .. }]));
    let op = l.op();
    let a = l.step(Event::StopDone { op, pids: vec![1] });
    assert!(a.contains(&A::RunStart { op: op + 1 }));
    let a = l.step(Event::StartDone {
        op: op + 1,
        info: StartInfo::default(),
        aborted: false,
    });
    assert!(a.contains(&A::Reply(vec![3], done())));
    let a = l.step(Event::Restart(4, RestartHow::Sequential));
    assert!(matches!(a[..], [A::RunRollout { sequential: true, .. }]));
}

#[test]
fn a_restart_of_a_stopped_watcher_starts_it() {
    let mut l = Lifecycle::default();
    assert_eq!(
        l.step(Event::Restart(1, RestartHow::Rolling)),
        vec![A::RunStart { op: 1 }]
    );
}

#[test]
fn scaling_acts_only_while_processes_are_wanted() {
    let mut l = Lifecycle::default();
    assert_eq!(l.step(Event::Scale), vec![A::Trim]);
    l.step(Event::Start(1));
    // The start sizes the slots itself, then scales when it ends.
    assert_eq!(l.step(Event::Scale), vec![]);
    let a = l.step(Event::StartDone {
        op: 1,
        info: StartInfo::default(),
        aborted: false,
    });
    assert!(a.contains(&A::Scale));
    assert_eq!(l.step(Event::Scale), vec![A::Scale]);
    // A rollout's extra processes are not scaled away.
    l.step(Event::Restart(2, RestartHow::Rolling));
    assert_eq!(l.step(Event::Scale), vec![A::ScaleUp]);
    l.step(Event::Stop(3));
    assert_eq!(l.step(Event::Scale), vec![]);
}

#[test]
fn rm_of_a_stopping_watcher_removes_it_after_the_stop() {
    let mut l = Lifecycle::default();
    running(&mut l);
    l.step(Event::Stop(2));
    l.step(Event::Remove(3, true));
    // A start cannot revive a removed watcher.
    assert_eq!(
        l.step(Event::Start(4)),
        vec![A::Reply(vec![4], Outcome::Canceled(REMOVED))]
    );
    let op = l.op();
    let a = l.step(Event::StopDone { op, pids: vec![] });
    assert!(a.contains(&A::Forget));
    assert_eq!(l.state, S::Removed);
}

#[test]
fn kill_never_changes_the_state() {
    let mut l = Lifecycle::default();
    running(&mut l);
    l.step(Event::Stop(2));
    assert_eq!(l.step(Event::Kill), vec![A::KillAll]);
    assert_eq!(l.state, S::Stopping { failed: false });
}
