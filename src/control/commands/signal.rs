//! `signal`: send a signal to a watcher's processes (one `pid` or all), to
//! their `children`, to one `childpid`, or `recursive`ly to every descendant.
use super::kill::signum;
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_int, prop_required_str, CommandError};
use crate::supervisor::api::Signal;
use crate::watchers::SignalWatcher;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let signal = signum(&p, "signum")?.ok_or_else(|| CommandError::missing_property("signum"))?;
    let pid = prop_int(&p, "pid")?.map(|n| n as i32);
    // Circus reads `childpid`; its docs (and resource_watcher) say `child_pid`.
    let childpid = match prop_int(&p, "childpid")? {
        Some(c) => Some(c as i32),
        None => prop_int(&p, "child_pid")?.map(|c| c as i32),
    };
    let signal = SignalWatcher {
        signal,
        pid,
        childpid,
        children: prop_bool(&p, "children")?.unwrap_or(false),
        recursive: prop_bool(&p, "recursive")?.unwrap_or(false),
    };
    let done = ctx.call(Signal { name, signal }).await?;
    match done.wait().await {
        Some(Err(e)) => Err(CommandError::message(e)),
        _ => Ok(Map::new()),
    }
}
