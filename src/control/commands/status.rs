//! `status`: every watcher's state, or one watcher's state in the reply's own
//! `status` key (a Circus quirk clients rely on). Ringmaster's extension:
//! `verbose: true` adds `details` (processes, pids, uptime, restarts) for the
//! `ringmaster status` table.
use super::util::{one, status_of};
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_str, CommandError};
use crate::watchers::{GetState, WatcherStatus};
use serde_json::{json, Map, Value};

fn details(st: &WatcherStatus) -> Value {
    let now = std::time::SystemTime::now();
    let procs: Vec<Value> = st
        .processes
        .iter()
        .map(|p| {
            json!({
                "wid": p.wid, "pid": p.pid, "state": p.state, "restarts": p.restarts,
                "ready": p.ready, "status_text": p.status_text,
                "uptime": p.started.and_then(|s| now.duration_since(s).ok()).map(|d| d.as_secs_f64()),
            })
        })
        .collect();
    json!({"name": st.name, "state": st.state.as_str(), "numprocesses": st.numprocesses, "processes": procs})
}

/// Which daemon answers (not Circus's): it changes with `upgrade`.
fn daemon() -> Value {
    json!({"version": crate::upgrade::VERSION, "binary_id": crate::upgrade::binary_id(), "pid": std::process::id()})
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub name: Option<String>,
    pub verbose: bool,
}

impl Props for Status {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Status {
            name: prop_str(p, "name")?,
            verbose: prop_bool(p, "verbose")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("name", json!(self.name)), ("verbose", json!(self.verbose))])
    }
}

pub async fn execute(ctx: Ctx, Status { name, verbose }: Status) -> Reply {
    match name {
        Some(name) => {
            let w = ctx.watcher(&name)?;
            if !verbose {
                let state = w.addr.send(GetState).await.map_err(super::util::mailbox)?;
                return Ok(one("status", json!(state.as_str())));
            }
            let st = status_of(&w.addr).await?;
            let mut m = one("status", json!(st.state.as_str()));
            m.insert("details".into(), json!([details(&st)]));
            Ok(m)
        }
        None => {
            let all = ctx.all();
            if !verbose {
                let states = futures::future::join_all(all.iter().map(|w| w.addr.send(GetState))).await;
                let mut m = Map::new();
                for (w, st) in all.iter().zip(states) {
                    m.insert(w.name.clone(), json!(st.map_err(super::util::mailbox)?.as_str()));
                }
                m.sort_keys();
                return Ok(one("statuses", Value::Object(m)));
            }
            let states = futures::future::join_all(all.iter().map(|w| status_of(&w.addr))).await;
            let mut m = Map::new();
            let mut names: Vec<(String, String)> = Vec::new();
            let mut det = Vec::new();
            for (w, st) in all.iter().zip(states) {
                let st = st?;
                names.push((w.name.clone(), st.state.as_str().to_string()));
                det.push((w.name.clone(), details(&st)));
            }
            names.sort();
            for (n, s) in names {
                m.insert(n, json!(s));
            }
            let mut out = one("statuses", Value::Object(m));
            out.insert("daemon".into(), daemon());
            if verbose {
                det.sort_by(|a, b| a.0.cmp(&b.0));
                out.insert(
                    "details".into(),
                    json!(det.into_iter().map(|d| d.1).collect::<Vec<_>>()),
                );
            }
            Ok(out)
        }
    }
}
