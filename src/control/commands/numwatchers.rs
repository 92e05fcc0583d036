//! `numwatchers`.
use super::util::one;
use super::Reply;
use crate::control::context::Ctx;
use serde_json::json;

/// No properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Numwatchers;

super::no_properties!(Numwatchers);

pub async fn execute(ctx: Ctx, _: Numwatchers) -> Reply {
    let n = ctx.registry.len();
    Ok(one("numwatchers", json!(n)))
}
