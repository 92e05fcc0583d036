//! `get`: the values of some options of a watcher.
use super::util::{one, options_of, spec_of, status_of};
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_required_str, prop_str_list, CommandError};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Get {
    pub name: String,
    pub keys: Vec<String>,
}

impl Props for Get {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Get {
            name: prop_required_str(p, "name")?,
            keys: prop_str_list(p, "keys")?.ok_or_else(|| CommandError::missing_property("keys"))?,
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("name", json!(self.name)), ("keys", json!(self.keys))])
    }
}

pub async fn execute(ctx: Ctx, Get { name, keys }: Get) -> Reply {
    let w = ctx.watcher(&name)?;
    let spec = spec_of(&w.addr).await?;
    let n = status_of(&w.addr).await?.numprocesses;
    let all = options_of(&spec, n);
    let mut out = Map::new();
    for k in keys {
        let v = all
            .get(&k)
            .ok_or_else(|| CommandError::message(format!("'{k}' option not found")))?;
        out.insert(k, v.clone());
    }
    Ok(one("options", Value::Object(out)))
}
