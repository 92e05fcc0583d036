//! `list`: watcher names, or the pids of one watcher.
use super::util::{one, status_of};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::prop_str;
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    match prop_str(&p, "name")? {
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
