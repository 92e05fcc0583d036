//! `rm`: remove a watcher, stopping its processes unless `nostop`.
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_required_str, CommandError};
use crate::supervisor::api::RemoveWatcher;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rm {
    pub name: String,
    pub nostop: bool,
    pub waiting: bool,
}

impl Props for Rm {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Rm {
            name: prop_required_str(p, "name")?,
            nostop: prop_bool(p, "nostop")?.unwrap_or(false),
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[
            ("name", json!(self.name)),
            ("nostop", json!(self.nostop)),
            ("waiting", json!(self.waiting)),
        ])
    }
}

pub async fn execute(
    ctx: Ctx,
    Rm {
        name,
        nostop,
        waiting,
    }: Rm,
) -> Reply {
    let stop = !nostop;
    let done = ctx.call(RemoveWatcher { name, stop }).await?;
    if waiting {
        done.wait().await;
    }
    Ok(Map::new())
}
