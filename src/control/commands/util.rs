//! Helpers shared by commands: talking to watcher actors, `waiting`, and
//! turning a watcher's spec into Circus's option names.

use crate::config::model::{Args, Ident};
use crate::config::WatcherSpec;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_str, CommandError};
use crate::supervisor::api::{Act, Op};
use crate::supervisor::Selection;
use crate::watchers::{GetSpec, GetStatus, StartInfo, WatcherStatus};
use actix::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Start, stop and restart: a watcher name or pattern (all without one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub name: Option<String>,
    /// `glob` (default), `regex` or `simple`.
    pub match_: Option<String>,
    pub waiting: bool,
}

impl super::Props for Target {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Target {
            name: prop_str(p, "name")?,
            match_: prop_str(p, "match")?,
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        super::props(&[
            ("name", json!(self.name)),
            ("match", json!(self.match_)),
            ("waiting", json!(self.waiting)),
        ])
    }
}

pub fn mailbox(e: MailboxError) -> CommandError {
    CommandError::command(format!("watcher unavailable: {e}"))
}

pub async fn status_of(addr: &Addr<crate::watchers::WatcherActor>) -> Result<WatcherStatus, CommandError> {
    addr.send(GetStatus).await.map_err(mailbox)
}

pub async fn spec_of(addr: &Addr<crate::watchers::WatcherActor>) -> Result<Arc<WatcherSpec>, CommandError> {
    addr.send(GetSpec).await.map_err(mailbox)
}

/// Applies `op` to the selection. With `waiting`, returns the merged
/// outcome once it took effect (an error reply if it stopped short or a
/// later command cancelled it); otherwise `None` once it is queued.
pub async fn act(ctx: &Ctx, op: Op, on: Selection, waiting: bool) -> Result<Option<StartInfo>, CommandError> {
    let rolls =
        matches!(op, Op::Reload { .. }) || matches!((&op, &on), (Op::Restart, Selection::Named { .. }));
    let name = match &on {
        Selection::Named { pattern, .. } => Some(pattern.clone()),
        Selection::All => None,
    };
    let done = ctx.call(Act { op, on }).await?;
    if !waiting {
        return Ok(None);
    }
    if rolls {
        // An upgrade meanwhile resumes the rollouts; the next image answers.
        crate::control::carry::mark(crate::control::carry::Awaiting::Rollout { name });
    }
    let mut all = StartInfo::default();
    for (_, o) in done.wait().await.unwrap_or_default() {
        let i = o.into_info();
        all.started.extend(i.started);
        all.kept.extend(i.kept);
        all.stopped.extend(i.stopped);
        all.errors.extend(i.errors);
    }
    checked(all).map(Some)
}

/// A start/restart/reload that stopped short is an error reply (errno 6, as a
/// failed `waiting` command in Circus), carrying the reason.
pub fn checked(i: StartInfo) -> Result<StartInfo, CommandError> {
    if i.errors.is_empty() {
        Ok(i)
    } else {
        Err(CommandError::bad_msg_data(i.errors.join("; ")))
    }
}

impl StartInfo {
    /// Circus's `info` dict.
    pub fn json(&self, with_stopped: bool) -> Value {
        let mut m = Map::new();
        if with_stopped {
            m.insert("stopped".into(), json!(self.stopped));
        }
        m.insert("started".into(), json!(self.started));
        m.insert("kept".into(), json!(self.kept));
        Value::Object(m)
    }
}

pub fn one(k: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(k.to_string(), v);
    m
}

fn ident(i: &Option<Ident>) -> Value {
    match i {
        None => Value::Null,
        Some(Ident::Id(n)) => json!(n),
        Some(Ident::Name(s)) => json!(s),
    }
}

/// A watcher's options under Circus's names (`options` / `get`), sorted.
pub fn options_of(spec: &WatcherSpec, numprocesses: u32) -> Map<String, Value> {
    let args = match &spec.args {
        None => Value::Null,
        Some(Args::Line(l)) => json!(l),
        Some(Args::List(l)) => json!(l),
    };
    let mut rlimits = Map::new();
    for l in &spec.rlimits {
        rlimits.insert(l.name.to_string(), l.value.map_or(Value::Null, |v| json!(v)));
    }
    let r = &spec.restart;
    let mut all: Vec<(&str, Value)> = vec![
        ("args", args),
        ("autostart", json!(spec.autostart)),
        ("close_child_stderr", json!(spec.close_child_stderr)),
        ("close_child_stdin", json!(spec.close_child_stdin)),
        ("close_child_stdout", json!(spec.close_child_stdout)),
        ("cmd", json!(spec.cmd)),
        ("copy_env", json!(spec.copy_env)),
        ("copy_path", json!(spec.copy_path)),
        ("env", json!(spec.env)),
        ("executable", json!(spec.executable)),
        ("gid", ident(&spec.gid)),
        ("graceful_timeout", json!(spec.graceful_timeout.as_secs_f64())),
        ("max_age", json!(spec.max_age.as_secs_f64())),
        ("max_age_variance", json!(spec.max_age_variance.as_secs_f64())),
        ("max_retry", json!(r.max_retry)),
        ("numprocesses", json!(numprocesses)),
        ("on_demand", json!(false)),
        ("priority", json!(spec.priority)),
        ("respawn", json!(spec.respawn)),
        (
            "restart",
            json!({
                "min_uptime": r.min_uptime.as_secs_f64(), "initial_delay": r.initial_delay.as_secs_f64(),
                "max_delay": r.max_delay.as_secs_f64(), "multiplier": r.multiplier, "jitter": r.jitter,
                "max_retry": r.max_retry,
            }),
        ),
        ("rlimits", Value::Object(rlimits)),
        ("send_hup", json!(spec.send_hup)),
        ("shell", json!(spec.shell)),
        ("shell_args", json!(spec.shell_args)),
        ("singleton", json!(spec.singleton)),
        ("sockets", json!(spec.sockets)),
        ("stderr_stream_conf", json!(spec.stderr_stream)),
        ("stdout_stream_conf", json!(spec.stdout_stream)),
        ("stop_children", json!(true)),
        ("stop_signal", json!(spec.stop_signal.0)),
        ("uid", ident(&spec.uid)),
        (
            "umask",
            spec.umask.map_or(Value::Null, |u| json!(format!("{u:03o}"))),
        ),
        ("use_sockets", json!(spec.use_sockets)),
        ("warmup_delay", json!(spec.warmup_delay.as_secs_f64())),
        (
            "working_dir",
            json!(spec.working_dir.as_ref().map(|p| p.display().to_string())),
        ),
    ];
    all.sort_by(|a, b| a.0.cmp(b.0));
    all.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
