//! `restart`: stop then start one watcher (with `info`), a pattern, or all.
use super::util::{checked, info_json, mailbox, maybe_wait, one};
use super::Reply;
use crate::control::context::{Ctx, Match};
use crate::control::protocol::{prop_bool, prop_str};
use crate::watchers::{RestartWatcher, StartWatcher, StopWatcher};
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let how = Match::parse(prop_str(&p, "match")?.as_deref())?;
    let named = prop_str(&p, "name")?;
    let targets = match &named {
        Some(n) => ctx.matching(n, how)?,
        None => ctx.all(),
    };
    if named.is_some() && targets.len() == 1 {
        let addr = targets[0].addr.clone();
        let r = maybe_wait(waiting, async move { addr.send(RestartWatcher).await }).await;
        return match r {
            Some(res) => Ok(one("info", info_json(&checked(res.map_err(mailbox)?)?, true))),
            None => Ok(Map::new()),
        };
    }
    // Several: stop all (lowest priority first), then start the autostart ones (highest first).
    maybe_wait(waiting, async move {
        for w in targets.iter().rev() {
            let _ = w.addr.send(StopWatcher).await;
        }
        for w in targets.iter().filter(|w| w.autostart) {
            let _ = w.addr.send(StartWatcher).await;
        }
    })
    .await;
    Ok(Map::new())
}
