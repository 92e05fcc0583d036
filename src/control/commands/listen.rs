//! `listen` is for the pubsub socket; on the control socket it is an error (as Circus).
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::CommandError;

/// No properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listen;

super::no_properties!(Listen);

pub async fn execute(_: Ctx, _: Listen) -> Reply {
    Err(CommandError::message("invalid message. use a pub/sub socket"))
}
