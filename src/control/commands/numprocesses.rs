//! `numprocesses`: running processes of one watcher (with `watcher_name`), or of all.
use super::util::{one, status_of};
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::prop_str;
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    match prop_str(&p, "name")? {
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
