//! `add`: create a watcher from `name`, `cmd`, `args` and `options` (the same
//! keys and validation as the config file), optionally starting it.
use super::util::{checked, info_json, mailbox, maybe_wait, one};
use super::Reply;
use crate::arbiter::new_watcher;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_required_str, CommandError};
use crate::watchers::StartWatcher;
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let cmd = prop_required_str(&p, "cmd")?;
    let start = prop_bool(&p, "start")?.unwrap_or(false);
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let key = name.to_lowercase();
    if ctx.registry.borrow().contains_key(&key) {
        return Err(CommandError::command(format!("'{name}' already exist")));
    }
    let mut table = match p.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(CommandError::message("'options' property should be an object")),
    };
    table.insert("cmd".into(), json!(cmd));
    match p.get("args") {
        None | Some(Value::Null) => {}
        Some(a @ (Value::String(_) | Value::Array(_))) => {
            table.insert("args".into(), a.clone());
        }
        Some(_) => return Err(CommandError::message("'args' should be a string or a list")),
    }
    let spec = {
        let cfg = ctx.config.borrow();
        let socket_names: Vec<String> = ctx.sockets.borrow().keys().cloned().collect();
        crate::config::watcher_from_json(&key, table, &cfg.global_env, &socket_names)
            .map_err(CommandError::message)?
    };
    let socks = crate::arbiter::socket_infos(&ctx.sockets);
    let entry = new_watcher(spec, &socks, &ctx.events, &ctx.hub)
        .map_err(|e| CommandError::message(format!("{e:#}")))?;
    ctx.registry.borrow_mut().insert(key.clone(), entry.clone());
    ctx.events
        .watcher(&key, "add", json!({"time": crate::watchers::now_f64()}));
    if start {
        let addr = entry.addr.clone();
        if let Some(r) = maybe_wait(waiting, async move { addr.send(StartWatcher).await }).await {
            return Ok(one("info", info_json(&checked(r.map_err(mailbox)?)?, false)));
        }
    }
    Ok(Map::new())
}
