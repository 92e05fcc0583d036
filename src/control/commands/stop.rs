//! `stop`: one watcher, a pattern, or all (the daemon keeps running).
use super::util::{maybe_wait, one};
use super::Reply;
use crate::control::context::{Ctx, Match};
use crate::control::protocol::{prop_bool, prop_str};
use crate::watchers::StopWatcher;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let how = Match::parse(prop_str(&p, "match")?.as_deref())?;
    let single = prop_str(&p, "name")?.is_some();
    let targets = match prop_str(&p, "name")? {
        Some(n) => ctx.matching(&n, how)?,
        None => ctx.all(),
    };
    let mut addrs: Vec<_> = targets.into_iter().map(|w| (w.priority, w.addr)).collect();
    addrs.sort_by_key(|(p, _)| *p);
    let n = addrs.len();
    let done = maybe_wait(waiting, async move {
        futures::future::join_all(addrs.iter().map(|(_, a)| a.send(StopWatcher))).await;
    })
    .await;
    if done.is_some() && single && n == 1 {
        return Ok(one("info", Value::Null));
    }
    Ok(Map::new())
}
