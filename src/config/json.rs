//! Watchers added at run time (the `add` command): JSON options checked as
//! a `[watchers.NAME]` table of a config file.

use super::{load_toml_str, WatcherSpec};
use std::collections::BTreeMap;
use std::path::Path;

/// Builds a watcher from JSON options (the `add` command), with the same
/// keys, types and checks as a `[watchers.NAME]` table. Errors are one line.
pub fn watcher_from_json(
    name: &str,
    mut options: serde_json::Map<String, serde_json::Value>,
    global_env: &BTreeMap<String, String>,
    socket_names: &[String],
) -> Result<WatcherSpec, String> {
    options.retain(|_, v| !v.is_null());
    // Circus spells rlimits as rlimit_<name> keys; fold the ones without a field.
    let keys: Vec<String> = options
        .keys()
        .filter(|k| k.starts_with("rlimit_"))
        .cloned()
        .collect();
    for k in keys {
        let short = &k["rlimit_".len()..];
        if !matches!(
            short,
            "nofile" | "nproc" | "core" | "as" | "cpu" | "data" | "fsize" | "memlock" | "stack"
        ) {
            if let Some(v) = options.remove(&k) {
                let rl = options.entry("rlimits").or_insert_with(|| serde_json::json!({}));
                if let Some(o) = rl.as_object_mut() {
                    o.insert(short.to_string(), v);
                }
            }
        }
    }
    let watcher = toml::Value::try_from(serde_json::Value::Object(options)).map_err(|e| e.to_string())?;
    let mut doc = toml::Table::new();
    let mut socks = toml::Table::new();
    for s in socket_names {
        let mut t = toml::Table::new();
        t.insert("port".into(), toml::Value::Integer(0));
        socks.insert(s.clone(), toml::Value::Table(t));
    }
    doc.insert("sockets".into(), toml::Value::Table(socks));
    let mut ws = toml::Table::new();
    ws.insert(name.to_string(), watcher);
    doc.insert("watchers".into(), toml::Value::Table(ws));
    let env: toml::Table = global_env
        .iter()
        .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
        .collect();
    doc.insert("env".into(), toml::Value::Table(env));
    let src = toml::to_string(&doc).map_err(|e| e.to_string())?;
    let cfg = load_toml_str(Path::new("<add>"), &src).map_err(|e| {
        e.one_line_each()
            .into_iter()
            .map(|l| l.split_once(": ").map_or(l.clone(), |(_, m)| m.to_string()))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    cfg.watchers
        .into_iter()
        .next()
        .ok_or_else(|| "no watcher built".to_string())
}
