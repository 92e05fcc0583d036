//! `globaloptions`: the daemon's endpoints and check_delay (one `option`, or all).
use super::util::one;
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_str, CommandError};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Globaloptions {
    pub option: Option<String>,
}

impl Props for Globaloptions {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Globaloptions {
            option: prop_str(p, "option")?,
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("option", json!(self.option))])
    }
}

pub async fn execute(ctx: Ctx, r: Globaloptions) -> Reply {
    let g = &ctx.globals;
    let mut all = Map::new();
    all.insert("endpoint".into(), json!(g.endpoint));
    all.insert("stats_endpoint".into(), json!(g.stats_endpoint));
    all.insert("pubsub_endpoint".into(), json!(g.pubsub_endpoint));
    all.insert("check_delay".into(), json!(g.check_delay));
    all.insert("multicast_endpoint".into(), Value::Null);
    // Not Circus's: which binary answers (it changes with `upgrade`).
    all.insert("version".into(), json!(crate::upgrade::VERSION));
    all.insert("binary_id".into(), json!(crate::upgrade::binary_id()));
    all.insert("pid".into(), json!(std::process::id()));
    match r.option {
        None => Ok(one("options", Value::Object(all))),
        Some(k) => match all.get(&k) {
            Some(v) => Ok(one("options", json!({ k: v }))),
            None => Err(CommandError::message(format!("'{k}' not an existing option"))),
        },
    }
}
