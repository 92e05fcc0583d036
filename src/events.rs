//! Events published on the pubsub socket (`watcher.<name>.<event>`), as
//! Circus does. Until a publisher is attached, events only reach the log.

use serde_json::Value;
use std::sync::{Arc, RwLock};

type Sink = Arc<dyn Fn(String, Value) + Send + Sync>;
/// Told (watcher, why) when a `critical = true` watcher ended.
type CriticalHook = Arc<dyn Fn(String, String) + Send + Sync>;

/// What happened to a watcher or one of its processes: the topic's last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherEvent {
    Add,
    Remove,
    Updated,
    Start,
    Stop,
    Reload,
    RolloutFailed,
    Failed,
    Spawn,
    SpawnFailed,
    Ready,
    ReadyFailed,
    Reap,
    Kill,
    Backoff,
    Watchdog,
    HookSuccess,
    HookFailure,
}

impl WatcherEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WatcherEvent::Add => "add",
            WatcherEvent::Remove => "remove",
            WatcherEvent::Updated => "updated",
            WatcherEvent::Start => "start",
            WatcherEvent::Stop => "stop",
            WatcherEvent::Reload => "reload",
            WatcherEvent::RolloutFailed => "rollout_failed",
            WatcherEvent::Failed => "failed",
            WatcherEvent::Spawn => "spawn",
            WatcherEvent::SpawnFailed => "spawn_failed",
            WatcherEvent::Ready => "ready",
            WatcherEvent::ReadyFailed => "ready_failed",
            WatcherEvent::Reap => "reap",
            WatcherEvent::Kill => "kill",
            WatcherEvent::Backoff => "backoff",
            WatcherEvent::Watchdog => "watchdog",
            WatcherEvent::HookSuccess => "hook_success",
            WatcherEvent::HookFailure => "hook_failure",
        }
    }
}

#[derive(Clone, Default)]
pub struct Events {
    sink: Arc<RwLock<Option<Sink>>>,
    critical: Arc<RwLock<Option<CriticalHook>>>,
}

impl Events {
    pub fn set_critical_hook(&self, hook: CriticalHook) {
        if let Ok(mut h) = self.critical.write() {
            *h = Some(hook);
        }
    }

    /// A `critical = true` watcher ended: the daemon stops and exits non-zero.
    pub fn critical_ended(&self, watcher: &str, why: String) {
        let hook = self.critical.read().ok().and_then(|h| h.clone());
        match hook {
            Some(h) => h(watcher.to_string(), why),
            None => tracing::error!(%watcher, "critical watcher ended ({why}), but nothing stops the daemon"),
        }
    }

    pub fn set_sink(&self, sink: Sink) {
        if let Ok(mut s) = self.sink.write() {
            *s = Some(sink);
        }
    }

    /// Adds `tap` after the sink: every event goes to both.
    pub(crate) fn add_tap(&self, tap: Sink) {
        if let Ok(mut s) = self.sink.write() {
            *s = Some(match s.take() {
                None => tap,
                Some(first) => Arc::new(move |topic: String, payload: Value| {
                    first(topic.clone(), payload.clone());
                    tap(topic, payload);
                }),
            });
        }
    }

    pub fn publish(&self, topic: String, payload: Value) {
        tracing::debug!(%topic, %payload, "event");
        let sink = self.sink.read().ok().and_then(|s| s.clone());
        if let Some(sink) = sink {
            sink(topic, payload);
        }
    }

    /// `watcher.<name>.<event>`: name lowercased, spaces become `_` (as Circus).
    pub fn watcher(&self, name: &str, event: WatcherEvent, payload: Value) {
        let name = name.to_lowercase().replace(' ', "_");
        self.publish(format!("watcher.{name}.{}", event.as_str()), payload);
    }
}
