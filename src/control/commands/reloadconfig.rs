//! `reloadconfig`: not implemented yet (config reload by diff is a separate piece of work).
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::CommandError;
use serde_json::{Map, Value};

pub async fn execute(_: Ctx, _: Map<String, Value>) -> Reply {
    Err(CommandError::command(
        "reloadconfig is not implemented yet: restart the daemon to apply a changed config, \
         or use add/rm/set/incr/decr",
    ))
}
