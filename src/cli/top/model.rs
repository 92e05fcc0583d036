//! What `ringmaster top` knows, as plain data: the watchers and processes of
//! the last `status`, the CPU and memory samples of the selected watcher's
//! processes (with a short history for the sparklines), the followed log, the
//! selection and a pending confirmation. It is changed only by `apply` (what
//! the daemon said) and `handle` (what the user asked), both pure: whatever
//! must reach the daemon comes back as an `Effect` for the caller to carry.

use super::input::Action;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// Samples kept per process and per watcher: a minute at one a second.
pub(crate) const HISTORY: usize = 60;
/// Lines kept in the log pane.
pub(crate) const LOG_LINES: usize = 500;

/// One watcher, from `status` (verbose).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WatcherRow {
    pub name: String,
    pub state: String,
    /// Processes with a pid.
    pub running: usize,
    /// `numprocesses`: how many the watcher wants.
    pub desired: u64,
    pub ready: usize,
    pub restarts: u64,
    /// Of its youngest running process.
    pub uptime: Option<f64>,
}

/// One process slot of a watcher, from `status` (verbose).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProcessRow {
    pub wid: u64,
    pub pid: Option<i64>,
    pub state: String,
    pub ready: bool,
    pub restarts: u64,
    pub uptime: Option<f64>,
}

/// The last measured use of one process, from `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    /// Percent of one CPU over the last sampling period.
    pub cpu: Option<f64>,
    /// Resident memory in bytes.
    pub rss: Option<u64>,
}

/// Recent samples, oldest first: CPU in tenths of a percent, RSS in bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct History {
    pub cpu: VecDeque<u64>,
    pub rss: VecDeque<u64>,
}

impl History {
    fn push(&mut self, u: Usage) {
        push_capped(
            &mut self.cpu,
            u.cpu.map_or(0, |c| (c * 10.0).round().max(0.0) as u64),
        );
        push_capped(&mut self.rss, u.rss.unwrap_or(0));
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == HISTORY {
        q.pop_front();
    }
    q.push_back(v);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogKind {
    Stdout,
    Stderr,
    /// A pubsub event of the watcher (spawn, reap, …), shown among its lines.
    Event,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LogLine {
    /// Unix seconds.
    pub time: f64,
    pub pid: Option<i64>,
    pub kind: LogKind,
    pub text: String,
}

/// Which lines the log pane shows (events always).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LogFilter {
    #[default]
    All,
    Stdout,
    Stderr,
}

impl LogFilter {
    pub(crate) fn label(self) -> &'static str {
        match self {
            LogFilter::All => "stdout+stderr",
            LogFilter::Stdout => "stdout",
            LogFilter::Stderr => "stderr",
        }
    }

    fn next(self) -> LogFilter {
        match self {
            LogFilter::All => LogFilter::Stdout,
            LogFilter::Stdout => LogFilter::Stderr,
            LogFilter::Stderr => LogFilter::All,
        }
    }

    pub(crate) fn shows(self, kind: LogKind) -> bool {
        matches!(
            (self, kind),
            (LogFilter::All, _)
                | (_, LogKind::Event)
                | (LogFilter::Stdout, LogKind::Stdout)
                | (LogFilter::Stderr, LogKind::Stderr)
        )
    }
}

/// What a key can ask the daemon to do to the selected watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Start,
    Stop,
    Restart,
    Incr,
    Decr,
}

impl Verb {
    /// The control command's name.
    pub(crate) fn command(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Incr => "incr",
            Verb::Decr => "decr",
        }
    }

    /// Stop and restart end running processes: they are asked for twice.
    pub(crate) fn needs_confirmation(self) -> bool {
        matches!(self, Verb::Stop | Verb::Restart)
    }
}

/// A command for the daemon about one watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Command {
    pub verb: Verb,
    pub watcher: String,
}

/// What the daemon said, as the feed delivers it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Update {
    /// A `status` reply with `details`.
    Status(Value),
    /// A `stats` reply for one watcher.
    Stats { watcher: String, reply: Value },
    /// A `watcher.<name>.<event>` pubsub event.
    Event { topic: String, payload: Value },
    /// The recent lines of a watcher (`logs`), sent when its follow starts.
    LogHistory { watcher: String, lines: Vec<Value> },
    /// One live `logs.<name>.<stream>` line.
    Log { topic: String, payload: Value },
    /// The reply to a command the user asked for (an error reply is `Err`).
    Reply {
        command: Command,
        result: Result<(), String>,
    },
    /// A call failed (timeout, transport, error reply); the feed goes on
    /// trying, and the next good `status` clears it.
    Problem(String),
}

/// What the caller must do after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Follow this watcher's log and sample its processes.
    Follow(String),
    Send(Command),
    Quit,
}

/// A one-line message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Note {
    pub text: String,
    pub error: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub endpoint: String,
    pub watchers: Vec<WatcherRow>,
    processes: HashMap<String, Vec<ProcessRow>>,
    usage: HashMap<i64, Usage>,
    /// Per pid.
    history: HashMap<i64, History>,
    /// Per watcher: the sums over its processes.
    totals: HashMap<String, History>,
    /// pid → (CPU seconds, when), to turn two `stats` into a CPU percentage.
    cpu_seen: HashMap<i64, (f64, f64)>,
    selected: Option<String>,
    logs: VecDeque<LogLine>,
    /// Live lines at or before this time were in the history already.
    logs_after: f64,
    pub filter: LogFilter,
    pub confirm: Option<Command>,
    pub note: Option<Note>,
    /// What went wrong talking to the daemon, until a `status` succeeds again.
    pub problem: Option<String>,
    /// Unix time of the last `status` reply.
    pub updated: Option<f64>,
    /// The watcher to select first (`ringmaster top NAME`).
    preferred: Option<String>,
}

impl Model {
    pub(crate) fn new(endpoint: &str, preferred: Option<String>) -> Model {
        Model {
            endpoint: endpoint.to_string(),
            preferred,
            ..Default::default()
        }
    }

    pub(crate) fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    pub(crate) fn selected_index(&self) -> Option<usize> {
        let s = self.selected.as_deref()?;
        self.watchers.iter().position(|w| w.name == s)
    }

    /// The processes of the selected watcher, by wid.
    pub(crate) fn processes(&self) -> &[ProcessRow] {
        self.selected
            .as_ref()
            .and_then(|s| self.processes.get(s))
            .map_or(&[], Vec::as_slice)
    }

    pub(crate) fn usage(&self, pid: i64) -> Usage {
        self.usage.get(&pid).copied().unwrap_or_default()
    }

    pub(crate) fn history(&self, pid: i64) -> Option<&History> {
        self.history.get(&pid)
    }

    /// The selected watcher's summed samples.
    pub(crate) fn totals(&self) -> Option<&History> {
        self.totals.get(self.selected.as_deref()?)
    }

    /// The followed lines that the filter shows, oldest first.
    pub(crate) fn log_lines(&self) -> impl DoubleEndedIterator<Item = &LogLine> {
        self.logs.iter().filter(|l| self.filter.shows(l.kind))
    }

    /// Applies what the daemon said; `now` is the Unix time.
    pub(crate) fn apply(&mut self, update: Update, now: f64) -> Vec<Effect> {
        match update {
            Update::Status(reply) => return self.apply_status(&reply, now),
            Update::Stats { watcher, reply } => self.apply_stats(&watcher, &reply, now),
            Update::Event { topic, payload } => self.apply_event(&topic, &payload, now),
            Update::LogHistory { watcher, lines } => self.apply_log_history(&watcher, &lines),
            Update::Log { topic, payload } => self.apply_log(&topic, &payload),
            Update::Reply { command, result } => {
                let what = format!("{} {}", command.verb.command(), command.watcher);
                self.note = Some(match result {
                    Ok(()) => Note {
                        text: format!("{what}: ok"),
                        error: false,
                    },
                    Err(reason) => Note {
                        text: format!("{what}: {reason}"),
                        error: true,
                    },
                });
            }
            Update::Problem(text) => self.problem = Some(text),
        }
        Vec::new()
    }

    fn apply_status(&mut self, reply: &Value, now: f64) -> Vec<Effect> {
        let Some(details) = reply.get("details").and_then(Value::as_array) else {
            self.problem = Some("the daemon's status reply has no details".into());
            return Vec::new();
        };
        self.problem = None;
        let mut watchers = Vec::with_capacity(details.len());
        let mut processes = HashMap::with_capacity(details.len());
        for d in details {
            let name = d["name"].as_str().unwrap_or_default().to_string();
            let mut rows: Vec<ProcessRow> = d["processes"]
                .as_array()
                .map(|ps| ps.iter().map(process_row).collect())
                .unwrap_or_default();
            rows.sort_by_key(|p| p.wid);
            let running: Vec<&ProcessRow> = rows.iter().filter(|p| p.pid.is_some()).collect();
            watchers.push(WatcherRow {
                name: name.clone(),
                state: d["state"].as_str().unwrap_or("?").to_string(),
                running: running.len(),
                desired: d["numprocesses"].as_u64().unwrap_or(0),
                ready: running.iter().filter(|p| p.ready).count(),
                restarts: rows.iter().map(|p| p.restarts).sum(),
                uptime: running
                    .iter()
                    .filter_map(|p| p.uptime)
                    .fold(None, |m: Option<f64>, u| Some(m.map_or(u, |m| m.min(u)))),
            });
            processes.insert(name, rows);
        }
        watchers.sort_by(|a, b| a.name.cmp(&b.name));
        self.watchers = watchers;
        self.processes = processes;
        self.updated = Some(now);
        // Samples of processes that are gone are dropped with them.
        let live: std::collections::HashSet<i64> =
            self.processes.values().flatten().filter_map(|p| p.pid).collect();
        self.usage.retain(|pid, _| live.contains(pid));
        self.history.retain(|pid, _| live.contains(pid));
        self.cpu_seen.retain(|pid, _| live.contains(pid));
        self.totals.retain(|w, _| self.processes.contains_key(w));
        if self.selected_index().is_some() {
            return Vec::new();
        }
        // First status, or the selected watcher was removed.
        let pick = self
            .preferred
            .take()
            .and_then(|p| self.watchers.iter().find(|w| w.name.eq_ignore_ascii_case(&p)))
            .or_else(|| self.watchers.first())
            .map(|w| w.name.clone());
        match pick {
            Some(name) => self.select(name),
            None => {
                self.selected = None;
                self.logs.clear();
                Vec::new()
            }
        }
    }

    fn apply_stats(&mut self, watcher: &str, reply: &Value, now: f64) {
        let Some(info) = reply.get("info").and_then(Value::as_object) else {
            return;
        };
        let mut total = Usage {
            cpu: Some(0.0),
            rss: Some(0),
        };
        for (pid, i) in info {
            let (Ok(pid), Some(i)) = (pid.parse::<i64>(), i.as_object()) else {
                continue;
            };
            // CPU over the whole period since the last sample, from the
            // cumulative CPU time; the reply's own `cpu` is a 20 ms glimpse.
            let cpu_secs = i.get("ctime").and_then(Value::as_str).and_then(parse_ctime);
            let cpu = match (cpu_secs, self.cpu_seen.get(&pid)) {
                (Some(c), Some(&(c0, t0))) if now > t0 => Some(((c - c0) / (now - t0) * 100.0).max(0.0)),
                _ => i.get("cpu").and_then(Value::as_f64),
            };
            if let Some(c) = cpu_secs {
                self.cpu_seen.insert(pid, (c, now));
            }
            let rss = i.get("mem_info1").and_then(Value::as_str).and_then(parse_size);
            let u = Usage { cpu, rss };
            total.cpu = total.cpu.map(|t| t + cpu.unwrap_or(0.0));
            total.rss = total.rss.map(|t| t + rss.unwrap_or(0));
            self.usage.insert(pid, u);
            self.history.entry(pid).or_default().push(u);
        }
        self.totals.entry(watcher.to_string()).or_default().push(total);
    }

    fn is_selected(&self, topic_name: &str) -> bool {
        // Topics carry the name lower-cased (spaces as `_`), as Circus's do.
        self.selected
            .as_deref()
            .is_some_and(|s| s.to_lowercase().replace(' ', "_") == topic_name)
    }

    fn apply_event(&mut self, topic: &str, payload: &Value, now: f64) {
        let mut parts = topic.splitn(3, '.');
        let (Some("watcher"), Some(name), Some(event)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        if !self.is_selected(name) {
            return;
        }
        let pid = payload.get("process_pid").and_then(Value::as_i64);
        let mut text = event.to_string();
        for key in ["wid", "exit_code", "signal", "reason", "failures", "delay"] {
            if let Some(v) = payload.get(key).filter(|v| !v.is_null()) {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                text.push_str(&format!(" {key}={v}"));
            }
        }
        let time = payload.get("time").and_then(Value::as_f64).unwrap_or(now);
        self.push_log(LogLine {
            time,
            pid,
            kind: LogKind::Event,
            text,
        });
    }

    fn apply_log_history(&mut self, watcher: &str, lines: &[Value]) {
        if self.selected.as_deref() != Some(watcher) {
            return;
        }
        // Events that arrived before the history stay after it.
        let events: Vec<LogLine> = self.logs.drain(..).filter(|l| l.kind == LogKind::Event).collect();
        for l in lines.iter().filter_map(log_line) {
            self.logs_after = self.logs_after.max(l.time);
            self.push_log(l);
        }
        for e in events {
            self.push_log(e);
        }
    }

    fn apply_log(&mut self, topic: &str, payload: &Value) {
        let mut parts = topic.splitn(3, '.');
        let (Some("logs"), Some(name)) = (parts.next(), parts.next()) else {
            return;
        };
        if !self.is_selected(name) {
            return;
        }
        if let Some(l) = log_line(payload).filter(|l| l.time > self.logs_after) {
            self.push_log(l);
        }
    }

    fn push_log(&mut self, l: LogLine) {
        push_capped_n(&mut self.logs, l, LOG_LINES);
    }

    /// Selects `name`: its log starts over and the feed must follow it.
    fn select(&mut self, name: String) -> Vec<Effect> {
        if self.selected.as_deref() == Some(name.as_str()) {
            return Vec::new();
        }
        self.selected = Some(name.clone());
        self.logs.clear();
        self.logs_after = 0.0;
        self.confirm = None;
        vec![Effect::Follow(name)]
    }

    fn move_selection(&mut self, to: impl FnOnce(usize, usize) -> usize) -> Vec<Effect> {
        let n = self.watchers.len();
        if n == 0 {
            return Vec::new();
        }
        let i = to(self.selected_index().unwrap_or(0), n).min(n - 1);
        let name = self.watchers[i].name.clone();
        self.select(name)
    }

    /// Applies what the user asked.
    pub(crate) fn handle(&mut self, action: Action) -> Vec<Effect> {
        // A pending confirmation takes the next key: yes, or anything else is no.
        if let Some(cmd) = self.confirm.take() {
            return match action {
                Action::Confirm => {
                    self.note = Some(Note {
                        text: format!("{} {}…", cmd.verb.command(), cmd.watcher),
                        error: false,
                    });
                    vec![Effect::Send(cmd)]
                }
                Action::Quit => vec![Effect::Quit],
                _ => {
                    self.note = Some(Note {
                        text: format!("{} {}: cancelled", cmd.verb.command(), cmd.watcher),
                        error: false,
                    });
                    Vec::new()
                }
            };
        }
        match action {
            Action::Quit => vec![Effect::Quit],
            Action::Up => self.move_selection(|i, _| i.saturating_sub(1)),
            Action::Down => self.move_selection(|i, _| i + 1),
            Action::First => self.move_selection(|_, _| 0),
            Action::Last => self.move_selection(|_, n| n.saturating_sub(1)),
            Action::CycleFilter => {
                self.filter = self.filter.next();
                Vec::new()
            }
            Action::Do(verb) => {
                let Some(watcher) = self.selected.clone() else {
                    return Vec::new();
                };
                let cmd = Command { verb, watcher };
                if verb.needs_confirmation() {
                    self.confirm = Some(cmd);
                    return Vec::new();
                }
                self.note = Some(Note {
                    text: format!("{} {}…", verb.command(), cmd.watcher),
                    error: false,
                });
                vec![Effect::Send(cmd)]
            }
            Action::Confirm | Action::Cancel => Vec::new(),
        }
    }
}

fn push_capped_n<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    while q.len() >= cap {
        q.pop_front();
    }
    q.push_back(v);
}

fn process_row(p: &Value) -> ProcessRow {
    ProcessRow {
        wid: p["wid"].as_u64().unwrap_or(0),
        pid: p["pid"].as_i64(),
        state: p["state"].as_str().unwrap_or("?").to_string(),
        ready: p["ready"] == true,
        restarts: p["restarts"].as_u64().unwrap_or(0),
        uptime: p["uptime"].as_f64(),
    }
}

fn log_line(v: &Value) -> Option<LogLine> {
    let kind = match v.get("stream").and_then(Value::as_str)? {
        "stdout" => LogKind::Stdout,
        "stderr" => LogKind::Stderr,
        _ => return None,
    };
    Some(LogLine {
        time: v.get("time").and_then(Value::as_f64).unwrap_or(0.0),
        pid: v.get("pid").and_then(Value::as_i64),
        kind,
        text: v
            .get("line")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

/// `stats`' `ctime` ("M:SS.cc", minutes unbounded) in seconds.
pub(crate) fn parse_ctime(s: &str) -> Option<f64> {
    let (m, rest) = s.split_once(':')?;
    let (secs, cents) = rest.split_once('.')?;
    Some(m.parse::<f64>().ok()? * 60.0 + secs.parse::<f64>().ok()? + cents.parse::<f64>().ok()? / 100.0)
}

/// `stats`' human sizes ("512B", "31.32M") in bytes (to 3-4 digits).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    const UNITS: [char; 8] = ['K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'];
    if let Some(n) = s.strip_suffix('B') {
        return n.parse().ok();
    }
    let unit = s.chars().last()?;
    let power = UNITS.iter().position(|u| *u == unit)? as i32 + 1;
    let n: f64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    Some((n * 1024f64.powi(power)).round() as u64)
}

#[cfg(test)]
#[path = "model_tests.rs"]
pub(crate) mod tests;
