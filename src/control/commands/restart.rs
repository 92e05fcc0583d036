//! `restart`: one watcher rolled (with `info`), or a pattern or all stopped
//! then started.
use super::util::{act, one};
use super::Reply;
use crate::control::context::Ctx;
use crate::supervisor::api::Op;
use serde_json::Map;

pub type Restart = super::util::Target;

pub async fn execute(ctx: Ctx, r: Restart) -> Reply {
    let waiting = r.waiting;
    let single = r.name.is_some();
    let sel = crate::control::context::selection(r.name, r.match_.as_deref())?;
    match act(&ctx, Op::Restart, sel, waiting).await? {
        Some(info) if single => Ok(one("info", info.json(true))),
        _ => Ok(Map::new()),
    }
}
