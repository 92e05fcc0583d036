//! `incr`: add `nb` (default 1) processes.
use super::Reply;
use crate::control::context::Ctx;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    super::decr::change(ctx, p, 1).await
}
