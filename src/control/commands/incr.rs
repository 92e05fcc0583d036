//! `incr`: add `nb` (default 1) processes.
use super::Reply;
use crate::control::context::Ctx;

pub type Incr = super::decr::ScaleBy;

pub async fn execute(ctx: Ctx, r: Incr) -> Reply {
    super::decr::change(ctx, r, 1).await
}
