//! `rm`: remove a watcher, stopping its processes unless `nostop`.
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_required_str};
use crate::supervisor::api::RemoveWatcher;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let stop = !prop_bool(&p, "nostop")?.unwrap_or(false);
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let done = ctx.call(RemoveWatcher { name, stop }).await?;
    if waiting {
        done.wait().await;
    }
    Ok(Map::new())
}
