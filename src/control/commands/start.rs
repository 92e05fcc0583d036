//! `start`: one watcher (even with autostart = false), a pattern, or all
//! autostart watchers in priority order.
use super::util::{act, one};
use super::Reply;
use crate::control::context::Ctx;
use crate::supervisor::api::Op;
use serde_json::Map;

pub type Start = super::util::Target;

pub async fn execute(ctx: Ctx, r: Start) -> Reply {
    let waiting = r.waiting;
    let single = r.name.is_some();
    let sel = crate::control::context::selection(r.name, r.match_.as_deref())?;
    match act(&ctx, Op::Start, sel, waiting).await? {
        Some(info) if single => Ok(one("info", info.json(false))),
        _ => Ok(Map::new()),
    }
}
