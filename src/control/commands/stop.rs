//! `stop`: one watcher, a pattern, or all (the daemon keeps running).
use super::util::{act, one};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_str};
use crate::supervisor::api::Op;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let name = prop_str(&p, "name")?;
    let single = name.is_some();
    let sel = crate::control::context::selection(name, prop_str(&p, "match")?.as_deref())?;
    match act(&ctx, Op::Stop, sel, waiting).await? {
        Some(_) if single => Ok(one("info", Value::Null)),
        _ => Ok(Map::new()),
    }
}
