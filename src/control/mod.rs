//! The control channel: Circus's protocol over ZeroMQ, so `circusctl` and
//! Circus's client libraries drive Ringmaster unchanged.
//!
//! - [`transport`]: the ROUTER server (DEALER and REQ clients, tcp:// and ipc://);
//! - [`protocol`]: request parsing, replies and errno values;
//! - [`pubsub`]: the PUB socket for events;
//! - [`client`]: the client used by the `ringmaster` CLI and the tests;
//! - [`commands`]: one module per command.

pub mod client;
pub mod commands;
pub mod context;
pub mod follows;
pub mod protocol;
pub mod pubsub;
pub mod stats_stream;
pub mod transport;

use context::Ctx;
use futures::future::LocalBoxFuture;
use protocol::{CommandError, Request};
use serde_json::{Map, Value};

/// Routes each request to its command module.
#[derive(Clone)]
pub struct CommandDispatcher(pub Ctx);

impl transport::Dispatcher for CommandDispatcher {
    fn dispatch(&self, req: Request) -> LocalBoxFuture<'static, Result<Map<String, Value>, CommandError>> {
        commands::dispatch(self.0.clone(), req)
    }
}
