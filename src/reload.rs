//! Config reload by diff: re-read the file, compare it with what runs, and
//! touch only what changed. New sockets are bound before anything else, so
//! an invalid config or an address in use changes nothing.
//!
//! - watchers added → created and started; removed → stopped, then dropped;
//! - only `numprocesses` changed → scaled in place;
//! - anything else changed (or one of its sockets changed) → rolled onto the
//!   new spec and fds (start new, wait ready, stop old);
//! - sockets added → bound; changed → bound anew, watchers rolled onto the new
//!   fd, then the old one closed; removed → closed after their watchers stopped.

use crate::config::{Config, SocketAddrSpec, SocketSpec, WatcherSpec};
use std::fmt;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub sockets_added: Vec<String>,
    pub sockets_removed: Vec<String>,
    pub sockets_changed: Vec<String>,
    pub watchers_added: Vec<String>,
    pub watchers_removed: Vec<String>,
    /// Rolled onto the new spec.
    pub watchers_changed: Vec<String>,
    /// (name, from, to)
    pub watchers_scaled: Vec<(String, u32, u32)>,
    pub watchers_unchanged: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.sockets_added.is_empty()
            && self.sockets_removed.is_empty()
            && self.sockets_changed.is_empty()
            && self.watchers_added.is_empty()
            && self.watchers_removed.is_empty()
            && self.watchers_changed.is_empty()
            && self.watchers_scaled.is_empty()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sockets": {"added": self.sockets_added, "removed": self.sockets_removed, "changed": self.sockets_changed},
            "watchers": {
                "added": self.watchers_added, "removed": self.watchers_removed, "changed": self.watchers_changed,
                "scaled": self.watchers_scaled.iter().map(|(n, a, b)| serde_json::json!({"name": n, "from": a, "to": b})).collect::<Vec<_>>(),
                "unchanged": self.watchers_unchanged,
            },
        })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let scaled: Vec<String> = self
            .watchers_scaled
            .iter()
            .map(|(n, a, b)| format!("{n} {a}→{b}"))
            .collect();
        let lists: [(&str, &[String]); 8] = [
            ("sockets added", &self.sockets_added),
            ("sockets removed", &self.sockets_removed),
            ("sockets rebound", &self.sockets_changed),
            ("watchers added", &self.watchers_added),
            ("watchers removed", &self.watchers_removed),
            ("watchers rolled", &self.watchers_changed),
            ("watchers scaled", &scaled),
            ("unchanged", &self.watchers_unchanged),
        ];
        let parts: Vec<String> = lists
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}: {}", v.join(", ")))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

fn same_but_count(a: &WatcherSpec, b: &WatcherSpec) -> bool {
    let mut b2 = b.clone();
    b2.numprocesses = a.numprocesses;
    *a == b2
}

/// The address part of a socket: a change there needs a new bind.
pub fn same_address(a: &SocketSpec, b: &SocketSpec) -> bool {
    match (&a.addr, &b.addr) {
        (
            SocketAddrSpec::Inet {
                host: h1,
                port: p1,
                v6: v1,
            },
            SocketAddrSpec::Inet {
                host: h2,
                port: p2,
                v6: v2,
            },
        ) => h1 == h2 && p1 == p2 && v1 == v2 && *p1 != 0,
        (SocketAddrSpec::Unix { path: p1, .. }, SocketAddrSpec::Unix { path: p2, .. }) => p1 == p2,
        _ => false,
    }
}

pub fn plan(old: &Config, new: &Config) -> Plan {
    let mut p = Plan::default();
    for s in &new.sockets {
        match old.sockets.iter().find(|o| o.name == s.name) {
            None => p.sockets_added.push(s.name.clone()),
            Some(o) if o != s => p.sockets_changed.push(s.name.clone()),
            Some(_) => {}
        }
    }
    for o in &old.sockets {
        if !new.sockets.iter().any(|s| s.name == o.name) {
            p.sockets_removed.push(o.name.clone());
        }
    }
    for w in &new.watchers {
        match old.watchers.iter().find(|o| o.name == w.name) {
            None => p.watchers_added.push(w.name.clone()),
            Some(o) => {
                let socket_moved = w.sockets.iter().any(|s| p.sockets_changed.contains(s));
                if o == w && !socket_moved {
                    p.watchers_unchanged.push(w.name.clone());
                } else if same_but_count(o, w) && !socket_moved {
                    p.watchers_scaled
                        .push((w.name.clone(), o.numprocesses, w.numprocesses));
                } else {
                    p.watchers_changed.push(w.name.clone());
                }
            }
        }
    }
    for o in &old.watchers {
        if !new.watchers.iter().any(|w| w.name == o.name) {
            p.watchers_removed.push(o.name.clone());
        }
    }
    p
}
