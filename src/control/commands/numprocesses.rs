//! `numprocesses`: running processes of one watcher (with `watcher_name`), or of all.
use super::util::{one, status_of};
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_str, CommandError};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Numprocesses {
    pub name: Option<String>,
}

impl Props for Numprocesses {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Numprocesses {
            name: prop_str(p, "name")?,
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("name", json!(self.name))])
    }
}

pub async fn execute(ctx: Ctx, r: Numprocesses) -> Reply {
    match r.name {
        Some(name) => {
            let w = ctx.watcher(&name)?;
            let st = status_of(&w.addr).await?;
            let mut m = one(
                "numprocesses",
                json!(st.processes.iter().filter(|p| p.pid.is_some()).count()),
            );
            m.insert("watcher_name".into(), json!(name));
            Ok(m)
        }
        None => {
            let mut total = 0;
            for w in ctx.all() {
                total += status_of(&w.addr)
                    .await?
                    .processes
                    .iter()
                    .filter(|p| p.pid.is_some())
                    .count();
            }
            Ok(one("numprocesses", json!(total)))
        }
    }
}
