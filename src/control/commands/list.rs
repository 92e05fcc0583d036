//! `list`: watcher names, or the pids of one watcher.
use super::util::{one, status_of};
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_str, CommandError};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct List {
    pub name: Option<String>,
}

impl Props for List {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(List {
            name: prop_str(p, "name")?,
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("name", json!(self.name))])
    }
}

pub async fn execute(ctx: Ctx, r: List) -> Reply {
    match r.name {
        None => {
            let names = ctx.registry.names();
            Ok(one("watchers", json!(names)))
        }
        Some(name) => {
            let w = ctx.watcher(&name)?;
            let st = status_of(&w.addr).await?;
            let pids: Vec<i32> = st.processes.iter().filter_map(|p| p.pid).collect();
            Ok(one("pids", json!(pids)))
        }
    }
}
