//! `quit`: stop every watcher and exit. The reply goes out first (or, with
//! `waiting`, the daemon flushes it while closing the control socket).
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::prop_bool;
use crate::supervisor::Shutdown;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let _waiting = prop_bool(&p, "waiting")?;
    ctx.root.do_send(Shutdown { immediate: false });
    Ok(Map::new())
}
