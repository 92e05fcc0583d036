//! Events published on the pubsub socket (`watcher.<name>.<event>`), as
//! Circus does. Until a publisher is attached, events only reach the log.

use serde_json::Value;
use std::sync::{Arc, RwLock};

type Sink = Arc<dyn Fn(String, Value) + Send + Sync>;

#[derive(Clone, Default)]
pub struct Events {
    sink: Arc<RwLock<Option<Sink>>>,
}

impl Events {
    pub fn set_sink(&self, sink: Sink) {
        if let Ok(mut s) = self.sink.write() {
            *s = Some(sink);
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
    pub fn watcher(&self, name: &str, event: &str, payload: Value) {
        let name = name.to_lowercase().replace(' ', "_");
        self.publish(format!("watcher.{name}.{event}"), payload);
    }
}
