//! `options`: every option of a watcher, sorted by name.
use super::util::{one, options_of, spec_of, status_of};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::prop_required_str;
use serde_json::{Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let name = prop_required_str(&p, "name")?;
    let w = ctx.watcher(&name)?;
    let spec = spec_of(&w.addr).await?;
    let n = status_of(&w.addr).await?.numprocesses;
    Ok(one("options", Value::Object(options_of(&spec, n))))
}
