//! `decr`: remove `nb` (default 1) processes, the highest slots first.
use super::util::{mailbox, maybe_wait, one, spec_of, status_of};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_int, prop_required_str, CommandError};
use crate::watchers::{SetNumProcesses, MAX_PROCESSES};
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    change(ctx, p, -1).await
}

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
    let current = i64::from(status_of(&w.addr).await?.numprocesses);
    let target = current
        .saturating_add(sign.saturating_mul(nb))
        .clamp(0, MAX_PROCESSES.into()) as u32;
    let addr = w.addr.clone();
    match maybe_wait(waiting, async move { addr.send(SetNumProcesses(target)).await }).await {
        Some(r) => Ok(one("numprocesses", json!(r.map_err(mailbox)?))),
        None => Ok(Map::new()),
    }
}
