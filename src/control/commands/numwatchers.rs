//! `numwatchers`.
use super::util::one;
use super::Reply;
use crate::control::context::Ctx;
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, _: Map<String, Value>) -> Reply {
    let n = ctx.registry.len();
    Ok(one("numwatchers", json!(n)))
}
