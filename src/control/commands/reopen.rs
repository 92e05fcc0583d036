//! `reopen`: reopen every log file (after logrotate moved them), like SIGUSR1.
use super::Reply;
use crate::control::context::Ctx;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, _: Map<String, Value>) -> Reply {
    super::reopen_logs(&ctx);
    Ok(Map::new())
}
