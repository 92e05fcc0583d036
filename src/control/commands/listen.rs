//! `listen` is for the pubsub socket; on the control socket it is an error (as Circus).
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::CommandError;
use serde_json::{Map, Value};

pub async fn execute(_: Ctx, _: Map<String, Value>) -> Reply {
    Err(CommandError::message("invalid message. use a pub/sub socket"))
}
