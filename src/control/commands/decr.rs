//! `decr`: remove `nb` (default 1) processes, the highest slots first.
use super::util::one;
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_int, prop_required_str, CommandError};
use crate::supervisor::api::Scale;
use crate::watchers::Resize;
use serde_json::{json, Map, Value};

/// `incr` and `decr`: `nb` processes more or fewer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleBy {
    pub name: String,
    pub nb: i64,
    pub waiting: bool,
}

impl Props for ScaleBy {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        let nb = prop_int(p, "nb")?.unwrap_or(1);
        if nb < 0 {
            return Err(CommandError::message("'nb' must not be negative"));
        }
        Ok(ScaleBy {
            name: prop_required_str(p, "name")?,
            nb,
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[
            ("name", json!(self.name)),
            ("nb", json!(self.nb)),
            ("waiting", json!(self.waiting)),
        ])
    }
}

pub type Decr = ScaleBy;

pub async fn execute(ctx: Ctx, r: Decr) -> Reply {
    change(ctx, r, -1).await
}

/// `incr` (sign 1) and `decr` (sign -1): the watcher applies the difference,
/// so concurrent ones add up.
pub async fn change(ctx: Ctx, ScaleBy { name, nb, waiting }: ScaleBy, sign: i64) -> Reply {
    // From the registry: waiting for the watcher here would let a later
    // command on it overtake this one.
    if ctx.watcher(&name)?.singleton {
        let mut m = one("numprocesses", json!(1));
        m.insert("singleton".into(), json!(true));
        return Ok(m);
    }
    let to = Resize::By(sign.saturating_mul(nb));
    let done = ctx.call(Scale { name, to }).await?;
    if !waiting {
        return Ok(Map::new());
    }
    Ok(one(
        "numprocesses",
        json!(done.wait().await.map_or(0, |(n, _)| n)),
    ))
}
