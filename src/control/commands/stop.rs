//! `stop`: one watcher, a pattern, or all (the daemon keeps running).
use super::util::{act, one};
use super::Reply;
use crate::control::context::Ctx;
use crate::supervisor::api::Op;
use serde_json::{Map, Value};

pub type Stop = super::util::Target;

pub async fn execute(ctx: Ctx, r: Stop) -> Reply {
    let waiting = r.waiting;
    let single = r.name.is_some();
    let sel = crate::control::context::selection(r.name, r.match_.as_deref())?;
    match act(&ctx, Op::Stop, sel, waiting).await? {
        Some(_) if single => Ok(one("info", Value::Null)),
        _ => Ok(Map::new()),
    }
}
