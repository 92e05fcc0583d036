//! `decr`: remove `nb` (default 1) processes, the highest slots first.
use super::util::{one, spec_of};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_int, prop_required_str, CommandError};
use crate::supervisor::api::Scale;
use crate::watchers::Resize;
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    change(ctx, p, -1).await
}

/// `incr` (sign 1) and `decr` (sign -1): the watcher applies the difference,
/// so concurrent ones add up.
pub async fn change(ctx: Ctx, p: Map<String, Value>, sign: i64) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let nb = prop_int(&p, "nb")?.unwrap_or(1);
    if nb < 0 {
        return Err(CommandError::message("'nb' must not be negative"));
    }
    let waiting = prop_bool(&p, "waiting")?.unwrap_or(false);
    let w = ctx.watcher(&name)?;
    if spec_of(&w.addr).await?.singleton {
        let mut m = one("numprocesses", json!(1));
        m.insert("singleton".into(), json!(true));
        return Ok(m);
    }
    let to = Resize::By(sign.saturating_mul(nb));
    let done = ctx.call(Scale { name, to }).await?;
    if !waiting {
        return Ok(Map::new());
    }
    Ok(one("numprocesses", json!(done.wait().await.unwrap_or(0))))
}
