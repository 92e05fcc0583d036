//! `reload`: replace a watcher's processes one by one (or SIGHUP them with
//! `send_hup`); `graceful = false` restarts. Without a name: every watcher.
use super::util::{checked, info_json, mailbox, maybe_wait, one};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_str};
use crate::watchers::ReloadWatcher;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let graceful = prop_bool(&p, "graceful")?.unwrap_or(true);
    let sequential = prop_bool(&p, "sequential")?.unwrap_or(false);
    match prop_str(&p, "name")? {
        Some(name) => {
            let addr = ctx.watcher(&name)?.addr;
            let r = maybe_wait(waiting, async move {
                addr.send(ReloadWatcher { graceful, sequential }).await
            })
            .await;
            match r {
                Some(res) => Ok(one("info", info_json(&checked(res.map_err(mailbox)?)?, true))),
                None => Ok(Map::new()),
            }
        }
        None => {
            let all = ctx.all();
            maybe_wait(waiting, async move {
                for w in all {
                    let _ = w.addr.send(ReloadWatcher { graceful, sequential }).await;
                }
            })
            .await;
            Ok(Map::new())
        }
    }
}
