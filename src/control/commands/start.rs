//! `start`: one watcher (even with autostart = false), a pattern, or all
//! autostart watchers in priority order.
use super::util::{checked, info_json, mailbox, maybe_wait, one};
use super::Reply;
use crate::control::context::{Ctx, Match};
use crate::control::protocol::{prop_bool, prop_str};
use crate::watchers::StartWatcher;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let how = Match::parse(prop_str(&p, "match")?.as_deref())?;
    let targets = match prop_str(&p, "name")? {
        Some(n) => ctx.matching(&n, how)?,
        None => ctx.all(),
    };
    if targets.len() == 1 && prop_str(&p, "name")?.is_some() {
        let addr = targets[0].addr.clone();
        let r = maybe_wait(waiting, async move { addr.send(StartWatcher).await }).await;
        return match r {
            Some(res) => Ok(one("info", info_json(&checked(res.map_err(mailbox)?)?, false))),
            None => Ok(Map::new()),
        };
    }
    let addrs: Vec<_> = targets
        .into_iter()
        .filter(|w| w.autostart)
        .map(|w| w.addr)
        .collect();
    maybe_wait(waiting, async move {
        for a in addrs {
            let _ = a.send(StartWatcher).await;
        }
    })
    .await;
    Ok(Map::new())
}
