//! What every command can reach: the watcher registry (shared with the root
//! actor, so commands go straight to the watcher they name — no global lock),
//! the sockets, the global options and the root actor.

use crate::arbiter::{ArbiterActor, Registry, SocketRegistry, WatcherEntry};
use crate::config::Config;
use crate::control::protocol::CommandError;
use crate::events::Events;
use actix::Addr;
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
    pub root: Addr<ArbiterActor>,
    pub registry: Registry,
    pub sockets: SocketRegistry,
    pub globals: Globals,
    pub events: Events,
    pub started: SystemTime,
    pub hub: crate::streams::LogHub,
    pub follows: std::sync::Arc<crate::control::follows::LogFollows>,
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

/// How `name` is matched against watcher names (Circus's `match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Glob,
    Regex,
    Simple,
}

impl Match {
    pub fn parse(s: Option<&str>) -> Result<Match, CommandError> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None | Some("glob") => Ok(Match::Glob),
            Some("regex") => Ok(Match::Regex),
            Some("simple") => Ok(Match::Simple),
            Some(other) => Err(CommandError::message(format!("unknown match method {other}"))),
        }
    }
}

impl Ctx {
    /// The watcher called `name` (case-insensitive), or Circus's "program X not found".
    pub fn watcher(&self, name: &str) -> Result<WatcherEntry, CommandError> {
        let key = name.to_lowercase();
        self.registry
            .borrow()
            .get(&key)
            .cloned()
            .ok_or_else(|| CommandError::message(format!("program {name} not found")))
    }

    /// Every watcher, highest priority first.
    pub fn all(&self) -> Vec<WatcherEntry> {
        let mut v: Vec<WatcherEntry> = self.registry.borrow().values().cloned().collect();
        v.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        v
    }

    /// Watchers whose name matches `pattern`, highest priority first; none is an error.
    pub fn matching(&self, pattern: &str, how: Match) -> Result<Vec<WatcherEntry>, CommandError> {
        let p = pattern.to_lowercase();
        let re = match how {
            Match::Regex => Some(
                regex::Regex::new(&format!("^(?:{p})"))
                    .map_err(|e| CommandError::message(format!("invalid regex {pattern:?}: {e}")))?,
            ),
            _ => None,
        };
        let glob = match how {
            Match::Glob => Some(crate::fnmatch::Glob::new(&p)),
            _ => None,
        };
        let found: Vec<WatcherEntry> = self
            .all()
            .into_iter()
            .filter(|w| match how {
                Match::Simple => w.name == p,
                Match::Glob => glob.as_ref().is_some_and(|g| g.matches(&w.name)),
                Match::Regex => re.as_ref().is_some_and(|r| r.is_match(&w.name)),
            })
            .collect();
        if found.is_empty() {
            return Err(CommandError::message(format!("program {pattern} not found")));
        }
        Ok(found)
    }
}
