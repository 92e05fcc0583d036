//! `add`: create a watcher from `name`, `cmd`, `args` and `options` (the same
//! keys and validation as the config file), optionally starting it.
use super::util::{checked, one};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_required_str, CommandError};
use crate::supervisor::api::AddWatcher;
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let cmd = prop_required_str(&p, "cmd")?;
    let start = prop_bool(&p, "start")?.unwrap_or(false);
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let mut options = match p.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(CommandError::message("'options' property should be an object")),
    };
    options.insert("cmd".into(), json!(cmd));
    match p.get("args") {
        None | Some(Value::Null) => {}
        Some(a @ (Value::String(_) | Value::Array(_))) => {
            options.insert("args".into(), a.clone());
        }
        Some(_) => return Err(CommandError::message("'args' should be a string or a list")),
    }
    let done = ctx.call(AddWatcher { name, options, start }).await?;
    if !(start && waiting) {
        return Ok(Map::new());
    }
    match done.wait().await.flatten() {
        Some(o) => Ok(one("info", checked(o.into_info())?.json(false))),
        None => Ok(Map::new()),
    }
}
