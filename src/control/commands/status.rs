//! `status`: every watcher's state, or one watcher's state in the reply's own
//! `status` key (a Circus quirk clients rely on).
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
            Ok(one("status", json!(st.state.as_str())))
        }
        None => {
            let all = ctx.all();
            let states = futures::future::join_all(all.iter().map(|w| status_of(&w.addr))).await;
            let mut m = Map::new();
            let mut names: Vec<(String, String)> = Vec::new();
            for (w, st) in all.iter().zip(states) {
                names.push((w.name.clone(), st?.state.as_str().to_string()));
            }
            names.sort();
            for (n, s) in names {
                m.insert(n, json!(s));
            }
            Ok(one("statuses", Value::Object(m)))
        }
    }
}
