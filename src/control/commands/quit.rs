//! `quit`: stop every watcher and exit. The reply goes out first (or, with
//! `waiting`, the daemon flushes it while closing the control socket).
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, CommandError};
use crate::supervisor::Shutdown;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quit {
    pub waiting: bool,
}

impl Props for Quit {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Quit {
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("waiting", json!(self.waiting))])
    }
}

pub async fn execute(ctx: Ctx, _: Quit) -> Reply {
    ctx.root.do_send(Shutdown { immediate: false });
    Ok(Map::new())
}
