//! `rm`: remove a watcher, stopping its processes unless `nostop`.
use super::util::maybe_wait;
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_required_str};
use crate::watchers::{Forget, StopWatcher};
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let nostop = prop_bool(&p, "nostop")?.unwrap_or(false);
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let w = ctx.watcher(&name)?;
    ctx.registry.borrow_mut().remove(&w.name);
    ctx.events
        .watcher(&w.name, "remove", json!({"time": crate::watchers::now_f64()}));
    let (addr, logs) = (w.addr, w.logs);
    maybe_wait(waiting, async move {
        if nostop {
            let _ = addr.send(Forget).await;
        } else {
            let _ = addr.send(StopWatcher).await;
        }
        logs.close().await;
    })
    .await;
    Ok(Map::new())
}
