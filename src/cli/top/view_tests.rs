//! Scenarios of the view, drawn on ratatui's TestBackend and read back as text.

use super::super::input::Action;
use super::super::model::tests::{stats, status};
use super::super::model::{Model, Update, Verb};
use super::*;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;

fn screen(m: &Model, width: u16, height: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    t.draw(|f| draw(f, m)).unwrap();
    let buf = t.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect()
}

fn row<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", lines.join("\n")))
}

fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect()
}

fn sample() -> Model {
    let mut m = Model::new("ipc:///run/rm.sock", Some("web".into()));
    m.apply(
        status(&[
            ("web", "active", 2, &[(1, 101, 0), (2, 102, 4)]),
            ("jobs", "stopped", 1, &[]),
        ]),
        1000.0,
    );
    m
}

#[test]
fn watcher_table_shows_state_processes_restarts_and_uptime() {
    let s = screen(&sample(), 120, 40);
    assert!(
        s[0].contains("ringmaster top") && s[0].contains("ipc:///run/rm.sock"),
        "{}",
        s[0]
    );
    assert!(s[0].contains("2 watchers"));
    let header = words(row(&s, "WATCHER"));
    assert_eq!(
        header,
        ["WATCHER", "STATE", "PROCS", "READY", "RESTARTS", "UPTIME"]
    );
    // The selected watcher is marked.
    assert_eq!(
        words(row(&s, "▶ web")),
        ["▶", "web", "active", "2/2", "2", "4", "31s"]
    );
    assert_eq!(words(row(&s, "jobs ")), ["jobs", "stopped", "0/1", "0", "0", "-"]);
}

#[test]
fn processes_of_the_selected_watcher_show_cpu_rss_and_sparklines() {
    let mut m = sample();
    m.apply(
        stats("web", &[(101, "0:00.00", "10.00M"), (102, "0:00.00", "2.00M")]),
        1000.0,
    );
    m.apply(
        stats("web", &[(101, "0:00.50", "20.00M"), (102, "0:00.00", "2.00M")]),
        1001.0,
    );
    let s = screen(&m, 140, 40);
    assert!(row(&s, "processes of web").contains("processes of web"));
    let cols = words(row(&s, "WID"));
    assert_eq!(
        cols,
        ["WID", "PID", "STATE", "READY", "CPU%", "RSS", "UPTIME", "RESTARTS", "CPU", "RSS"]
    );
    let p1 = words(row(&s, " 101 "));
    assert_eq!(
        &p1[..8],
        ["1", "101", "running", "yes", "50.0", "20.00M", "31s", "0"]
    );
    // CPU 0% then 50% (of a 100% scale), RSS 10M then 20M (of its max).
    assert_eq!(&p1[8..10], ["▁▅", "▅█"]);
    let p2 = words(row(&s, " 102 "));
    assert_eq!(&p2[4..6], ["0.0", "2.00M"]);
    // The watcher's totals: 50% CPU and 22M.
    assert!(s.iter().any(|l| l.contains("RSS 22.00M")), "{}", s.join("\n"));
}

#[test]
fn sparklines_scale_to_their_floor_or_their_maximum() {
    let q = |v: &[u64]| v.iter().copied().collect::<std::collections::VecDeque<u64>>();
    assert_eq!(spark(&q(&[0, 500, 1000]), 10, 1000), "▁▅█");
    assert_eq!(
        spark(&q(&[0, 1000, 2000]), 10, 1000),
        "▁▅█",
        "above the floor, the max scales"
    );
    assert_eq!(
        spark(&q(&[1, 2, 3, 4]), 2, 1),
        "▆█",
        "only the last `width` samples"
    );
    assert_eq!(spark(&q(&[]), 5, 1), "");
}

#[test]
fn log_pane_follows_the_selected_watcher_and_marks_stderr_and_events() {
    let mut m = sample();
    let line =
        |t: f64, stream: &str, text: &str| json!({"time": t, "pid": 101, "stream": stream, "line": text});
    m.apply(
        Update::LogHistory {
            watcher: "web".into(),
            lines: vec![line(1.0, "stdout", "hello out"), line(2.0, "stderr", "hello err")],
        },
        3.0,
    );
    m.apply(
        Update::Event {
            topic: "watcher.web.spawn".into(),
            payload: json!({"process_pid": 103, "wid": 3, "time": 4.0}),
        },
        4.0,
    );
    let s = screen(&m, 120, 40);
    assert!(row(&s, "log of web").contains("(stdout+stderr)"));
    assert!(row(&s, "hello out").contains("101 | hello out"));
    assert!(row(&s, "hello err").contains("101 ! hello err"));
    assert!(row(&s, "spawn").contains("103 * spawn wid=3"));
    m.handle(Action::CycleFilter);
    let s = screen(&m, 120, 40);
    assert!(row(&s, "log of web").contains("(stdout)"));
    assert!(!s.iter().any(|l| l.contains("hello err")));
}

#[test]
fn the_newest_log_lines_fill_a_short_pane() {
    let mut m = sample();
    let lines = (0..100)
        .map(|i| json!({"time": f64::from(i), "pid": 1, "stream": "stdout", "line": format!("line {i}")}))
        .collect();
    m.apply(
        Update::LogHistory {
            watcher: "web".into(),
            lines,
        },
        0.0,
    );
    let s = screen(&m, 100, 30);
    assert!(s.iter().any(|l| l.contains("line 99")));
    assert!(!s.iter().any(|l| l.contains("line 0 ")));
}

#[test]
fn a_confirmation_replaces_the_status_line_and_the_help_line_stays() {
    let mut m = sample();
    m.handle(Action::Do(Verb::Restart));
    let s = screen(&m, 120, 40);
    assert!(s[38].contains("restart web? y: yes"), "{}", s[38]);
    for key in [
        "↑↓/jk select",
        "s start",
        "x stop",
        "r restart",
        "+/- incr/decr",
        "q quit",
    ] {
        assert!(s[39].contains(key), "{key:?} in {}", s[39]);
    }
    m.handle(Action::Cancel);
    let s = screen(&m, 120, 40);
    assert!(s[38].contains("restart web: cancelled"), "{}", s[38]);
}

#[test]
fn before_the_first_status_it_says_it_is_waiting() {
    let m = Model::new("tcp://127.0.0.1:5555", None);
    let s = screen(&m, 100, 30);
    assert!(s[0].contains("waiting for the daemon"));
    assert!(row(&s, "watchers").contains("watchers"));
}

#[test]
fn a_daemon_without_watchers_says_so() {
    let mut m = Model::new("e", None);
    m.apply(status(&[]), 1.0);
    let s = screen(&m, 100, 30);
    assert!(s.iter().any(|l| l.contains("no watchers")));
    assert!(s.iter().any(|l| l.contains("no processes")));
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut m = sample();
    m.apply(stats("web", &[(101, "0:00.00", "1.00M")]), 1000.0);
    for (w, h) in [(1, 1), (10, 3), (40, 8), (80, 12)] {
        screen(&m, w, h);
    }
}

#[test]
fn a_problem_talking_to_the_daemon_takes_the_status_line() {
    let mut m = sample();
    m.apply(
        Update::Problem("status: no reply within 5s (is the daemon running?)".into()),
        1.0,
    );
    let s = screen(&m, 120, 40);
    assert!(s[38].contains("status: no reply within 5s"), "{}", s[38]);
}
