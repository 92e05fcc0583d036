//! The control channel: Circus's protocol over ZeroMQ, so `circusctl` and
//! Circus's client libraries drive Ringmaster unchanged.
//!
//! - [`transport`]: the ROUTER server (DEALER and REQ clients, tcp:// and ipc://);
//! - [`protocol`]: request parsing, replies and errno values;
//! - [`pubsub`]: the PUB socket for events;
//! - [`client`]: the client used by the `ringmaster` CLI and the tests;
//! - [`commands`]: one module per command.

pub mod carry;
pub mod client;
pub mod commands;
pub mod context;
pub mod endpoints;
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

    fn resume(
        &self,
        _req: Request,
        awaiting: carry::Awaiting,
    ) -> LocalBoxFuture<'static, Result<Map<String, Value>, CommandError>> {
        let ctx = self.0.clone();
        Box::pin(async move {
            match awaiting {
                carry::Awaiting::Upgrade { from } => Ok(commands::upgrade::resumed(from)),
                carry::Awaiting::Rollout { name } => join_rollouts(&ctx, name).await,
                carry::Awaiting::NotRun | carry::Awaiting::Interrupted => Err(CommandError::command(
                    "the daemon was upgraded in place while this command ran; its outcome is \
                     unknown (see status)",
                )),
            }
        })
    }
}

/// The reply of a `restart`/`reload` whose rollout an upgrade interrupted:
/// once the rollouts the new image resumed (of `name`, or of every watcher)
/// end. `info` covers the part of the rollout done by this image.
async fn join_rollouts(ctx: &Ctx, name: Option<String>) -> Result<Map<String, Value>, CommandError> {
    let watchers = match &name {
        Some(n) => vec![ctx.watcher(n)?],
        None => ctx.all(),
    };
    let mut all = crate::watchers::StartInfo::default();
    for w in watchers {
        let joined = w
            .addr
            .send(crate::watchers::JoinResumed)
            .await
            .map_err(commands::util::mailbox)?;
        if let Some(outcome) = joined {
            let i = outcome
                .await
                .unwrap_or(crate::watchers::Outcome::Canceled("the watcher went away"))
                .into_info();
            all.started.extend(i.started);
            all.kept.extend(i.kept);
            all.stopped.extend(i.stopped);
            all.errors.extend(i.errors);
        }
    }
    let info = commands::util::checked(all)?;
    match name {
        Some(_) => Ok(commands::util::one("info", info.json(true))),
        None => Ok(Map::new()),
    }
}
