//! `globaloptions`: the daemon's endpoints and check_delay (one `option`, or all).
use super::util::one;
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::{prop_str, CommandError};
use serde_json::{json, Map, Value};

pub async fn execute(ctx: Ctx, p: Map<String, Value>) -> Reply {
    let g = &ctx.globals;
    let mut all = Map::new();
    all.insert("endpoint".into(), json!(g.endpoint));
    all.insert("stats_endpoint".into(), json!(g.stats_endpoint));
    all.insert("pubsub_endpoint".into(), json!(g.pubsub_endpoint));
    all.insert("check_delay".into(), json!(g.check_delay));
    all.insert("multicast_endpoint".into(), Value::Null);
    match prop_str(&p, "option")? {
        None => Ok(one("options", Value::Object(all))),
        Some(k) => match all.get(&k) {
            Some(v) => Ok(one("options", json!({ k: v }))),
            None => Err(CommandError::message(format!("'{k}' not an existing option"))),
        },
    }
}
