//! What every command can reach: read handles on the registries (commands
//! look watchers up directly, no global lock), the global options, and the
//! supervisor, through which every change goes.

use crate::config::Config;
use crate::control::protocol::CommandError;
use crate::events::Events;
use crate::supervisor::{
    ApiError, Done, Match, Registry, Selection, SocketRegistry, Supervisor, WatcherEntry,
};
use actix::{Addr, Handler, Message};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

#[derive(Clone, Debug, Default)]
pub struct Globals {
    pub endpoint: String,
    pub pubsub_endpoint: String,
    pub stats_endpoint: Option<String>,
    pub check_delay: Option<f64>,
}

pub struct Inner {
    pub root: Addr<Supervisor>,
    pub registry: Registry,
    pub sockets: SocketRegistry,
    pub globals: Globals,
    pub events: Events,
    pub started: SystemTime,
    pub hub: crate::streams::LogHub,
    pub follows: std::sync::Arc<crate::control::follows::LogFollows>,
    /// The running config (the supervisor replaces it on reload).
    pub config: Rc<RefCell<Config>>,
}

#[derive(Clone)]
pub struct Ctx(pub Rc<Inner>);

impl std::ops::Deref for Ctx {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl From<ApiError> for CommandError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(m) | ApiError::Invalid(m) => CommandError::message(m),
            ApiError::AlreadyExists(m) => CommandError::command(m),
            ApiError::Os(m) => CommandError::os(m),
            ApiError::ShuttingDown => CommandError::command("the daemon is shutting down"),
        }
    }
}

/// Circus's `match` property.
pub fn parse_match(s: Option<&str>) -> Result<Match, CommandError> {
    match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("glob") => Ok(Match::Glob),
        Some("regex") => Ok(Match::Regex),
        Some("simple") => Ok(Match::Simple),
        Some(other) => Err(CommandError::message(format!("unknown match method {other}"))),
    }
}

/// The selection named by the `name` and `match` properties (all without a name).
pub fn selection(name: Option<String>, how: Option<&str>) -> Result<Selection, CommandError> {
    let how = parse_match(how)?;
    Ok(match name {
        None => Selection::All,
        Some(pattern) => Selection::Named { pattern, how },
    })
}

impl Ctx {
    /// The watcher called `name` (case-insensitive), or Circus's "program X not found".
    pub fn watcher(&self, name: &str) -> Result<WatcherEntry, CommandError> {
        self.registry
            .get(name)
            .ok_or_else(|| CommandError::message(format!("program {name} not found")))
    }

    /// Every watcher, highest priority first.
    pub fn all(&self) -> Vec<WatcherEntry> {
        self.registry.by_priority()
    }

    /// Sends a request to the supervisor; a refusal is the command's error.
    pub async fn call<M, T>(&self, m: M) -> Result<Done<T>, CommandError>
    where
        M: Message<Result = Result<Done<T>, ApiError>> + Send + 'static,
        Supervisor: Handler<M>,
        T: 'static,
        M::Result: Send,
    {
        let done = self
            .root
            .send(m)
            .await
            .map_err(|e| CommandError::command(format!("supervisor unavailable: {e}")))?
            .map_err(CommandError::from)?;
        // Accepted: an upgrade from now on must not run it again.
        crate::control::carry::mark(crate::control::carry::Awaiting::Interrupted);
        Ok(done)
    }
}
