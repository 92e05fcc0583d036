//! `kill`: stop one process (or all) of a watcher with an optional signal and
//! graceful_timeout; the watcher replaces it.
use super::Reply;
use super::{props, Props};
use crate::config::{Seconds, Signum};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_f64, prop_int, prop_required_str, CommandError};
use crate::supervisor::api;
use serde_json::{json, Map, Value};

pub fn signum(p: &Map<String, Value>, key: &str) -> Result<Option<Signum>, CommandError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| CommandError::message("signal invalid"))
            .and_then(|n| Signum::from_number(n).map_err(|_| CommandError::message("signal invalid")))
            .map(Some),
        Some(Value::String(s)) => Signum::parse(s)
            .map(Some)
            .map_err(|_| CommandError::message("signal invalid")),
        Some(_) => Err(CommandError::message("signal invalid")),
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kill {
    pub name: String,
    pub pid: Option<i32>,
    pub signum: Option<Signum>,
    /// Seconds.
    pub graceful_timeout: Option<f64>,
    pub waiting: bool,
}

impl Props for Kill {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Kill {
            name: prop_required_str(p, "name")?,
            pid: prop_int(p, "pid")?.map(|n| n as i32),
            signum: signum(p, "signum")?,
            graceful_timeout: prop_f64(p, "graceful_timeout")?,
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[
            ("name", json!(self.name)),
            ("pid", json!(self.pid)),
            ("signum", json!(self.signum.map(|s| s.0))),
            ("graceful_timeout", json!(self.graceful_timeout)),
            ("waiting", json!(self.waiting)),
        ])
    }
}

pub async fn execute(ctx: Ctx, r: Kill) -> Reply {
    let Kill {
        name,
        pid,
        signum: signal,
        graceful_timeout,
        waiting,
    } = r;
    let timeout = match graceful_timeout {
        Some(t) => Some(Seconds::from_f64(t).map_err(CommandError::message)?.get()),
        None => None,
    };
    let done = ctx
        .call(api::Kill {
            name,
            pid,
            signal,
            timeout,
        })
        .await?;
    // The watcher answers at once which processes it replaces, or why none.
    match done.wait().await {
        Some(Ok((_, replaced))) if waiting => {
            replaced.wait().await;
        }
        Some(Err(e)) => return Err(CommandError::message(e)),
        _ => {}
    }
    Ok(Map::new())
}
