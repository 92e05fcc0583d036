//! `reload`: replace a watcher's processes one by one (or SIGHUP them with
//! `send_hup`); `graceful = false` restarts. Without a name: every watcher.
use super::util::{act, one};
use super::Reply;
use crate::control::context::{selection, Ctx};
use crate::control::protocol::{prop_bool, prop_str};
use crate::supervisor::api::Op;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let graceful = prop_bool(&p, "graceful")?.unwrap_or(true);
    let sequential = prop_bool(&p, "sequential")?.unwrap_or(false);
    let name = prop_str(&p, "name")?;
    let single = name.is_some();
    // A name is exact here (Circus's reload takes no `match`).
    let sel = selection(name, Some("simple"))?;
    match act(&ctx, Op::Reload { graceful, sequential }, sel, waiting).await? {
        Some(info) if single => Ok(one("info", info.json(true))),
        _ => Ok(Map::new()),
    }
}
