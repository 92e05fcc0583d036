//! `logs`: the output lines a watcher's processes wrote recently (kept in
//! memory, `history_lines` per watcher). Live lines are published on the
//! pubsub socket under `logs.<watcher>.<stream>`; `ringmaster logs -f` uses both.
use super::util::one;
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_f64, prop_int, prop_required_str, prop_str, CommandError};
use crate::streams::{LogRecord, StreamKind};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn record_json(r: &LogRecord) -> Value {
    let t = r.time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    json!({"time": t, "pid": r.pid, "wid": r.wid, "stream": r.stream.as_str(), "line": String::from_utf8_lossy(&r.line)})
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Logs {
    pub name: String,
    /// None: both streams.
    pub stream: Option<String>,
    pub lines: Option<i64>,
    /// Seconds before now.
    pub since: Option<f64>,
    pub follow: bool,
}

impl Props for Logs {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Logs {
            name: prop_required_str(p, "name")?,
            stream: prop_str(p, "stream")?,
            lines: prop_int(p, "lines")?,
            since: prop_f64(p, "since")?,
            follow: prop_bool(p, "follow")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[
            ("name", json!(self.name)),
            ("stream", json!(self.stream)),
            ("lines", json!(self.lines)),
            ("since", json!(self.since)),
            ("follow", json!(self.follow)),
        ])
    }
}

pub async fn execute(ctx: Ctx, r: Logs) -> Reply {
    let name = r.name;
    let stream = match r.stream.as_deref() {
        None | Some("all") | Some("both") => None,
        Some("stdout") => Some(StreamKind::Stdout),
        Some("stderr") => Some(StreamKind::Stderr),
        Some(other) => {
            return Err(CommandError::message(format!(
                "unknown stream {other:?}: use stdout or stderr"
            )))
        }
    };
    let n = r.lines.unwrap_or(100).clamp(0, 1_000_000) as usize;
    // `since`: seconds before now (e.g. 600 for the last 10 minutes).
    let since = match r.since {
        // Further back than a Duration can say means "from the start".
        Some(s) if s >= 0.0 && s.is_finite() => Duration::try_from_secs_f64(s)
            .ok()
            .and_then(|d| SystemTime::now().checked_sub(d)),
        Some(_) => {
            return Err(CommandError::message(
                "'since' must be a non-negative number of seconds",
            ))
        }
        None => None,
    };
    let w = ctx.watcher(&name)?;
    // `follow`: publish this watcher's lines on the pubsub socket for a while.
    if r.follow {
        ctx.follows.follow(&w.name, crate::control::follows::LEASE);
    }
    let lines: Vec<Value> = w
        .logs
        .history(stream, n, since)
        .iter()
        .map(|r| record_json(r))
        .collect();
    Ok(one("lines", json!(lines)))
}
