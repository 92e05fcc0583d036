//! Scenarios of the model: what a status, a sample, an event, a log line or a
//! key does to what `top` shows and asks for.

use super::*;
use serde_json::json;

/// A watcher of a test status: (name, state, numprocesses, [(wid, pid, restarts)]).
pub(crate) type TestWatcher<'a> = (&'a str, &'a str, u64, &'a [(u64, i64, u64)]);

/// A verbose `status` reply.
pub(crate) fn status(watchers: &[TestWatcher]) -> Update {
    let details: Vec<Value> = watchers
        .iter()
        .map(|(name, state, n, procs)| {
            let procs: Vec<Value> = procs
                .iter()
                .map(|(wid, pid, restarts)| {
                    json!({"wid": wid, "pid": pid, "state": "running", "restarts": restarts,
                           "ready": true, "status_text": null, "uptime": 30.0 + *wid as f64})
                })
                .collect();
            json!({"name": name, "state": state, "numprocesses": n, "processes": procs})
        })
        .collect();
    Update::Status(json!({"status": "ok", "statuses": {}, "details": details}))
}

/// A `stats` reply for one watcher: (pid, ctime, mem_info1).
pub(crate) fn stats(watcher: &str, procs: &[(i64, &str, &str)]) -> Update {
    let mut info = serde_json::Map::new();
    for (pid, ctime, rss) in procs {
        info.insert(
            pid.to_string(),
            json!({"pid": pid, "cpu": 0.0, "mem_info1": rss, "ctime": ctime, "wid": 1}),
        );
    }
    Update::Stats {
        watcher: watcher.into(),
        reply: json!({"status": "ok", "name": watcher, "info": info}),
    }
}

fn two_watchers() -> Model {
    let mut m = Model::new("ipc:///x", None);
    let effects = m.apply(
        status(&[
            ("web", "active", 2, &[(1, 101, 0), (2, 102, 3)]),
            ("jobs", "stopped", 1, &[]),
        ]),
        1000.0,
    );
    assert_eq!(
        effects,
        vec![Effect::Follow("jobs".into())],
        "the first by name is followed"
    );
    m
}

#[test]
fn first_status_selects_and_follows_the_first_watcher_by_name() {
    let m = two_watchers();
    assert_eq!(m.selected(), Some("jobs"));
    let names: Vec<&str> = m.watchers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["jobs", "web"]);
}

#[test]
fn the_preferred_watcher_is_selected_first_whatever_its_case() {
    let mut m = Model::new("e", Some("WEB".into()));
    let effects = m.apply(
        status(&[("web", "active", 1, &[(1, 5, 0)]), ("a", "active", 0, &[])]),
        1.0,
    );
    assert_eq!(effects, vec![Effect::Follow("web".into())]);
}

#[test]
fn watcher_rows_count_running_desired_ready_restarts_and_youngest_uptime() {
    let m = two_watchers();
    let web = m.watchers.iter().find(|w| w.name == "web").unwrap();
    assert_eq!((web.running, web.desired, web.ready, web.restarts), (2, 2, 2, 3));
    assert_eq!(web.uptime, Some(31.0));
    let jobs = &m.watchers[0];
    assert_eq!(
        (jobs.state.as_str(), jobs.running, jobs.uptime),
        ("stopped", 0, None)
    );
}

#[test]
fn moving_the_selection_follows_the_new_watcher_and_clamps_at_the_ends() {
    let mut m = two_watchers();
    assert_eq!(m.handle(Action::Up), vec![], "already at the top");
    assert_eq!(m.handle(Action::Down), vec![Effect::Follow("web".into())]);
    assert_eq!(m.selected(), Some("web"));
    assert_eq!(m.handle(Action::Down), vec![], "already at the bottom");
    assert_eq!(m.handle(Action::First), vec![Effect::Follow("jobs".into())]);
    assert_eq!(m.processes().len(), 0);
}

#[test]
fn a_removed_selected_watcher_moves_the_selection_to_the_first() {
    let mut m = two_watchers();
    m.handle(Action::Down);
    let effects = m.apply(status(&[("jobs", "stopped", 1, &[])]), 1001.0);
    assert_eq!(effects, vec![Effect::Follow("jobs".into())]);
    let effects = m.apply(status(&[]), 1002.0);
    assert_eq!((effects, m.selected()), (vec![], None));
}

#[test]
fn cpu_is_the_cpu_time_delta_over_the_sampling_period() {
    let mut m = two_watchers();
    m.handle(Action::Down);
    m.apply(
        stats("web", &[(101, "0:01.00", "10.00M"), (102, "0:00.00", "512B")]),
        1000.0,
    );
    m.apply(
        stats("web", &[(101, "0:01.50", "10.50M"), (102, "0:00.00", "512B")]),
        1001.0,
    );
    let u = m.usage(101);
    assert!((u.cpu.unwrap() - 50.0).abs() < 1e-6, "{u:?}");
    assert_eq!(u.rss, Some(11_010_048));
    assert_eq!(m.usage(102).rss, Some(512));
    let h = m.history(101).unwrap();
    assert_eq!(h.cpu.iter().copied().collect::<Vec<_>>(), [0, 500]);
    let t = m.totals().unwrap();
    assert_eq!(t.rss.back(), Some(&(11_010_048 + 512)));
}

#[test]
fn history_keeps_the_last_minute_and_forgets_processes_that_are_gone() {
    let mut m = two_watchers();
    m.handle(Action::Down);
    for i in 0..(HISTORY as u32 + 10) {
        m.apply(stats("web", &[(101, "0:00.00", "1.00K")]), 1000.0 + f64::from(i));
    }
    assert_eq!(m.history(101).unwrap().rss.len(), HISTORY);
    m.apply(status(&[("web", "active", 1, &[(2, 102, 0)])]), 2000.0);
    assert!(m.history(101).is_none(), "pid 101 is gone");
    assert_eq!(m.usage(101), Usage::default());
}

#[test]
fn stop_and_restart_wait_for_a_yes() {
    let mut m = two_watchers();
    assert_eq!(m.handle(Action::Do(Verb::Restart)), vec![]);
    assert_eq!(
        m.confirm,
        Some(Command {
            verb: Verb::Restart,
            watcher: "jobs".into()
        })
    );
    assert_eq!(
        m.handle(Action::Confirm),
        vec![Effect::Send(Command {
            verb: Verb::Restart,
            watcher: "jobs".into()
        })]
    );
    assert_eq!(m.confirm, None);
}

#[test]
fn any_other_key_than_yes_cancels_a_stop() {
    let mut m = two_watchers();
    m.handle(Action::Do(Verb::Stop));
    assert_eq!(m.handle(Action::Down), vec![], "the key only cancels");
    assert_eq!(m.confirm, None);
    assert_eq!(m.selected(), Some("jobs"));
    assert!(m.note.as_ref().unwrap().text.contains("cancelled"));
}

#[test]
fn start_incr_and_decr_go_at_once() {
    let mut m = two_watchers();
    for verb in [Verb::Start, Verb::Incr, Verb::Decr] {
        assert_eq!(
            m.handle(Action::Do(verb)),
            vec![Effect::Send(Command {
                verb,
                watcher: "jobs".into()
            })]
        );
    }
}

#[test]
fn a_reply_is_noted_and_an_error_reply_is_marked() {
    let mut m = two_watchers();
    let command = Command {
        verb: Verb::Decr,
        watcher: "jobs".into(),
    };
    m.apply(
        Update::Reply {
            command,
            result: Err("no processes".into()),
        },
        1.0,
    );
    let note = m.note.clone().unwrap();
    assert!(
        note.error && note.text.contains("decr jobs: no processes"),
        "{note:?}"
    );
}

#[test]
fn quit_quits_even_with_a_question_pending() {
    let mut m = two_watchers();
    assert_eq!(m.handle(Action::Quit), vec![Effect::Quit]);
    m.handle(Action::Do(Verb::Stop));
    assert_eq!(m.handle(Action::Quit), vec![Effect::Quit]);
}

fn line(time: f64, stream: &str, text: &str) -> Value {
    json!({"time": time, "pid": 101, "wid": 1, "stream": stream, "line": text, "seq": 1})
}

fn texts(m: &Model) -> Vec<String> {
    m.log_lines().map(|l| l.text.clone()).collect()
}

#[test]
fn the_log_shows_history_then_live_lines_of_the_selected_watcher_only() {
    let mut m = two_watchers();
    m.handle(Action::Down);
    m.apply(
        Update::LogHistory {
            watcher: "web".into(),
            lines: vec![line(10.0, "stdout", "a"), line(11.0, "stderr", "b")],
        },
        12.0,
    );
    let live = |t: f64, topic: &str, text: &str| Update::Log {
        topic: topic.into(),
        payload: line(t, "stdout", text),
    };
    m.apply(live(11.0, "logs.web.stdout", "b-again"), 12.0);
    m.apply(live(12.0, "logs.web.stdout", "c"), 12.0);
    m.apply(live(13.0, "logs.jobs.stdout", "other"), 13.0);
    assert_eq!(
        texts(&m),
        ["a", "b", "c"],
        "overlap dropped, other watcher ignored"
    );
    m.handle(Action::CycleFilter);
    assert_eq!(texts(&m), ["a", "c"], "stdout only");
    m.handle(Action::CycleFilter);
    assert_eq!(texts(&m), ["b"], "stderr only");
    m.handle(Action::Up);
    assert!(texts(&m).is_empty(), "a new selection starts an empty log");
}

#[test]
fn events_of_the_selected_watcher_appear_in_its_log() {
    let mut m = two_watchers();
    m.handle(Action::Down);
    m.apply(
        Update::Event {
            topic: "watcher.web.reap".into(),
            payload: json!({"process_pid": 101, "wid": 1, "exit_code": 0, "time": 5.0}),
        },
        6.0,
    );
    m.apply(
        Update::Event {
            topic: "watcher.jobs.spawn".into(),
            payload: json!({"process_pid": 7}),
        },
        6.0,
    );
    let all: Vec<&LogLine> = m.log_lines().collect();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].kind, all[0].pid, all[0].text.as_str()),
        (LogKind::Event, Some(101), "reap wid=1 exit_code=0")
    );
    m.handle(Action::CycleFilter);
    assert_eq!(m.log_lines().count(), 1, "events show under every filter");
}

#[test]
fn the_log_pane_keeps_a_bounded_number_of_lines() {
    let mut m = two_watchers();
    for i in 0..(LOG_LINES + 50) {
        m.apply(
            Update::Log {
                topic: "logs.jobs.stdout".into(),
                payload: line(i as f64 + 1.0, "stdout", &i.to_string()),
            },
            0.0,
        );
    }
    assert_eq!(m.log_lines().count(), LOG_LINES);
    assert_eq!(m.log_lines().next().unwrap().text, "50");
}

#[test]
fn stats_sizes_and_cpu_times_parse() {
    assert_eq!(parse_size("512B"), Some(512));
    assert_eq!(parse_size("1.00K"), Some(1024));
    assert_eq!(parse_size("31.32M"), Some(32_841_400));
    assert_eq!(parse_size("x"), None);
    assert_eq!(parse_ctime("0:01.50"), Some(1.5));
    assert_eq!(parse_ctime("75:00.00"), Some(4500.0));
    assert_eq!(parse_ctime("bad"), None);
}

#[test]
fn a_problem_shows_until_the_next_good_status() {
    let mut m = two_watchers();
    m.apply(Update::Problem("status: no reply within 5s".into()), 1.0);
    assert_eq!(m.problem.as_deref(), Some("status: no reply within 5s"));
    m.apply(status(&[("web", "active", 0, &[])]), 2.0);
    assert_eq!(m.problem, None);
}

#[test]
fn topics_name_a_watcher_spelled_with_capitals_in_lower_case() {
    let mut m = Model::new("e", None);
    m.apply(status(&[("Web", "active", 1, &[(1, 9, 0)])]), 1.0);
    m.apply(
        Update::Log {
            topic: "logs.web.stdout".into(),
            payload: line(2.0, "stdout", "hi"),
        },
        2.0,
    );
    m.apply(
        Update::Event {
            topic: "watcher.web.spawn".into(),
            payload: json!({"process_pid": 9, "time": 3.0}),
        },
        3.0,
    );
    assert_eq!(texts(&m), ["hi", "spawn"]);
}
