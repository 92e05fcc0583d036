//! `logs`: the output lines a watcher's processes wrote recently (kept in
//! memory, `history_lines` per watcher). Live lines are published on the
//! pubsub socket under `logs.<watcher>.<stream>`; `ringmaster logs -f` uses both.
use super::util::one;
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_f64, prop_int, prop_required_str, prop_str, CommandError};
use crate::streams::{LogRecord, StreamKind};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn record_json(r: &LogRecord) -> Value {
    let t = r.time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    json!({"time": t, "pid": r.pid, "wid": r.wid, "stream": r.stream.as_str(), "line": String::from_utf8_lossy(&r.line)})
}

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let stream = match prop_str(&p, "stream")?.as_deref() {
        None | Some("all") | Some("both") => None,
        Some("stdout") => Some(StreamKind::Stdout),
        Some("stderr") => Some(StreamKind::Stderr),
        Some(other) => {
            return Err(CommandError::message(format!(
                "unknown stream {other:?}: use stdout or stderr"
            )))
        }
    };
    let n = prop_int(&p, "lines")?.unwrap_or(100).clamp(0, 1_000_000) as usize;
    // `since`: seconds before now (e.g. 600 for the last 10 minutes).
    let since = match prop_f64(&p, "since")? {
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
    if prop_bool(&p, "follow")?.unwrap_or(false) {
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
