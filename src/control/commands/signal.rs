//! `signal`: send a signal to a watcher's processes (one `pid` or all), to
//! their `children`, to one `childpid`, or `recursive`ly to every descendant.
use super::kill::signum;
use super::Reply;
use super::{props, Props};
use crate::config::Signum;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_int, prop_required_str, CommandError};
use crate::supervisor::api::Signal;
use crate::watchers::SignalWatcher;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct SignalRequest {
    pub name: String,
    pub signum: Signum,
    pub pid: Option<i32>,
    pub childpid: Option<i32>,
    pub children: bool,
    pub recursive: bool,
}

impl Props for SignalRequest {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        // Circus reads `childpid`; its docs (and resource_watcher) say `child_pid`.
        let childpid = match prop_int(p, "childpid")? {
            Some(c) => Some(c as i32),
            None => prop_int(p, "child_pid")?.map(|c| c as i32),
        };
        Ok(SignalRequest {
            name: prop_required_str(p, "name")?,
            signum: signum(p, "signum")?.ok_or_else(|| CommandError::missing_property("signum"))?,
            pid: prop_int(p, "pid")?.map(|n| n as i32),
            childpid,
            children: prop_bool(p, "children")?.unwrap_or(false),
            recursive: prop_bool(p, "recursive")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[
            ("name", json!(self.name)),
            ("signum", json!(self.signum.0)),
            ("pid", json!(self.pid)),
            ("childpid", json!(self.childpid)),
            ("children", json!(self.children)),
            ("recursive", json!(self.recursive)),
        ])
    }
}

pub async fn execute(ctx: Ctx, r: SignalRequest) -> Reply {
    let name = r.name;
    let signal = SignalWatcher {
        signal: r.signum,
        pid: r.pid,
        childpid: r.childpid,
        children: r.children,
        recursive: r.recursive,
    };
    let done = ctx.call(Signal { name, signal }).await?;
    match done.wait().await {
        Some(Err(e)) => Err(CommandError::message(e)),
        _ => Ok(Map::new()),
    }
}
