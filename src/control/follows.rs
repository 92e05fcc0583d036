//! Who follows which watcher's output. Publishing every line on the pubsub
//! socket costs JSON and a queue hop per line, so lines of a watcher are
//! published only while a follower holds a lease on it (`logs` with
//! `follow: true`, renewed by `ringmaster logs -f`), or always with
//! `[ringmaster] publish_logs = true`. With no follower, the check is one
//! atomic load per line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a follow lease lasts unless renewed.
pub const LEASE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct LogFollows {
    always: bool,
    any: AtomicBool,
    leases: RwLock<HashMap<String, Instant>>,
}

impl LogFollows {
    pub fn new(always: bool) -> Self {
        LogFollows {
            always,
            ..Default::default()
        }
    }

    /// Publish `watcher`'s lines until `now + lease`.
    pub fn follow(&self, watcher: &str, lease: Duration) {
        if let Ok(mut m) = self.leases.write() {
            let now = Instant::now();
            m.retain(|_, until| *until > now);
            m.insert(watcher.to_lowercase(), now + lease);
            self.any.store(true, Ordering::Release);
        }
    }

    pub fn wanted(&self, watcher: &str) -> bool {
        if self.always {
            return true;
        }
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let Ok(m) = self.leases.read() else { return false };
        // Leases are keyed by the lower-cased name; most names already are.
        let until = if watcher.bytes().any(|b| b.is_ascii_uppercase()) {
            m.get(&watcher.to_lowercase())
        } else {
            m.get(watcher)
        };
        until.is_some_and(|until| *until > Instant::now())
    }
}
