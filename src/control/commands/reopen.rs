//! `reopen`: reopen every log file (after logrotate moved them), like SIGUSR1.
use super::Reply;
use crate::control::context::Ctx;
use serde_json::Map;

/// No properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reopen;

super::no_properties!(Reopen);

pub async fn execute(ctx: Ctx, _: Reopen) -> Reply {
    super::reopen_logs(&ctx);
    Ok(Map::new())
}
