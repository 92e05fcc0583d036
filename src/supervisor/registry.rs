//! The watcher and socket registries. Anyone may read them (control
//! commands look watchers up without a round trip through the root actor);
//! only the supervisor module writes them, so every change has one owner.

use crate::sockets::{SocketActor, SocketInfo};
use crate::streams::WatcherLogs;
use crate::watchers::WatcherActor;
use actix::Addr;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
pub struct WatcherEntry {
    pub name: String,
    pub priority: i64,
    pub autostart: bool,
    /// At most one process, whatever incr asks (fixed for the watcher's life).
    pub singleton: bool,
    pub addr: Addr<WatcherActor>,
    pub logs: WatcherLogs,
}

/// How a name selects watchers (Circus's `match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Glob,
    Regex,
    Simple,
}

/// Which watchers a request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    Named { pattern: String, how: Match },
}

impl Selection {
    /// Exactly the watcher called `name`.
    pub fn one(name: &str) -> Selection {
        Selection::Named {
            pattern: name.to_string(),
            how: Match::Simple,
        }
    }
}

/// Watchers by lowercase name.
#[derive(Clone, Default)]
pub struct Registry(Rc<RefCell<BTreeMap<String, WatcherEntry>>>);

impl Registry {
    /// The watcher called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<WatcherEntry> {
        self.0.borrow().get(&name.to_lowercase()).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.borrow().contains_key(&name.to_lowercase())
    }

    pub fn names(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// Every watcher, highest priority first (then by name).
    pub fn by_priority(&self) -> Vec<WatcherEntry> {
        let mut v: Vec<WatcherEntry> = self.0.borrow().values().cloned().collect();
        v.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        v
    }

    /// The selected watchers, highest priority first; an unknown name or a
    /// pattern matching nothing is an error naming it.
    pub fn select(&self, sel: &Selection) -> Result<Vec<WatcherEntry>, String> {
        let Selection::Named { pattern, how } = sel else {
            return Ok(self.by_priority());
        };
        let p = pattern.to_lowercase();
        if *how == Match::Simple {
            return self
                .get(&p)
                .map(|w| vec![w])
                .ok_or_else(|| format!("program {pattern} not found"));
        }
        let re = match how {
            Match::Regex => Some(
                regex::Regex::new(&format!("^(?:{p})"))
                    .map_err(|e| format!("invalid regex {pattern:?}: {e}"))?,
            ),
            _ => None,
        };
        let glob = (*how == Match::Glob).then(|| crate::fnmatch::Glob::new(&p));
        let found: Vec<WatcherEntry> = self
            .by_priority()
            .into_iter()
            .filter(|w| match (&glob, &re) {
                (Some(g), _) => g.matches(&w.name),
                (_, Some(r)) => r.is_match(&w.name),
                _ => false,
            })
            .collect();
        if found.is_empty() {
            return Err(format!("program {pattern} not found"));
        }
        Ok(found)
    }

    pub(super) fn insert(&self, e: WatcherEntry) {
        self.0.borrow_mut().insert(e.name.clone(), e);
    }

    pub(super) fn remove(&self, name: &str) -> Option<WatcherEntry> {
        self.0.borrow_mut().remove(&name.to_lowercase())
    }

    pub(super) fn set_priority(&self, name: &str, priority: i64) {
        if let Some(e) = self.0.borrow_mut().get_mut(&name.to_lowercase()) {
            e.priority = priority;
        }
    }

    /// Swaps a watcher's log destinations; returns the old ones.
    pub(super) fn replace_logs(&self, name: &str, logs: WatcherLogs) -> Option<WatcherLogs> {
        self.0
            .borrow_mut()
            .get_mut(&name.to_lowercase())
            .map(|e| std::mem::replace(&mut e.logs, logs))
    }
}

type Sockets = BTreeMap<String, (Addr<SocketActor>, SocketInfo)>;

/// Sockets by name.
#[derive(Clone, Default)]
pub struct SocketRegistry(Rc<RefCell<Sockets>>);

impl SocketRegistry {
    pub fn infos(&self) -> Vec<SocketInfo> {
        self.0.borrow().values().map(|(_, i)| i.clone()).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<SocketInfo> {
        self.0.borrow().get(name).map(|(_, i)| i.clone())
    }

    pub(super) fn insert(&self, info: SocketInfo, addr: Addr<SocketActor>) -> Option<Addr<SocketActor>> {
        self.0
            .borrow_mut()
            .insert(info.name.clone(), (addr, info))
            .map(|(a, _)| a)
    }

    pub(super) fn remove(&self, name: &str) -> Option<Addr<SocketActor>> {
        self.0.borrow_mut().remove(name).map(|(a, _)| a)
    }

    pub(super) fn drain(&self) -> Vec<Addr<SocketActor>> {
        std::mem::take(&mut *self.0.borrow_mut())
            .into_values()
            .map(|(a, _)| a)
            .collect()
    }
}
