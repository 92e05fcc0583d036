//! `options`: every option of a watcher, sorted by name.
use super::util::{one, options_of, spec_of, status_of};
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_required_str, CommandError};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub name: String,
}

impl Props for Options {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Options {
            name: prop_required_str(p, "name")?,
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("name", json!(self.name))])
    }
}

pub async fn execute(ctx: Ctx, Options { name }: Options) -> Reply {
    let w = ctx.watcher(&name)?;
    let spec = spec_of(&w.addr).await?;
    let n = status_of(&w.addr).await?.numprocesses;
    Ok(one("options", Value::Object(options_of(&spec, n))))
}
