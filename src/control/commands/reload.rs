//! `reload`: replace a watcher's processes one by one (or SIGHUP them with
//! `send_hup`); `graceful = false` restarts. Without a name: every watcher.
use super::util::{act, one};
use super::Reply;
use super::{props, Props};
use crate::control::context::{selection, Ctx};
use crate::control::protocol::{prop_bool, prop_str, CommandError};
use crate::supervisor::api::Op;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    pub name: Option<String>,
    pub graceful: bool,
    pub sequential: bool,
    pub waiting: bool,
}

impl Props for Reload {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Reload {
            name: prop_str(p, "name")?,
            graceful: prop_bool(p, "graceful")?.unwrap_or(true),
            sequential: prop_bool(p, "sequential")?.unwrap_or(false),
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[
            ("name", json!(self.name)),
            ("graceful", json!(self.graceful)),
            ("sequential", json!(self.sequential)),
            ("waiting", json!(self.waiting)),
        ])
    }
}

pub async fn execute(ctx: Ctx, r: Reload) -> Reply {
    let Reload {
        name,
        graceful,
        sequential,
        waiting,
    } = r;
    let single = name.is_some();
    // A name is exact here (Circus's reload takes no `match`).
    let sel = selection(name, Some("simple"))?;
    match act(&ctx, Op::Reload { graceful, sequential }, sel, waiting).await? {
        Some(info) if single => Ok(one("info", info.json(true))),
        _ => Ok(Map::new()),
    }
}
