//! `dstats`: the daemon's own CPU, memory and age (Circus's `info` dict).
use super::stats::{cpu_percent, info};
use super::util::one;
use super::Reply;
use crate::control::context::Ctx;
use crate::control::protocol::CommandError;
use serde_json::{json, Value};

/// No properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dstats;

super::no_properties!(Dstats);

pub async fn execute(_: Ctx, _: Dstats) -> Reply {
    let pid = std::process::id() as i32;
    let cpu = cpu_percent(&[pid]).await;
    let mut m =
        info(pid, cpu.get(&pid).copied()).ok_or_else(|| CommandError::os("cannot read /proc/self"))?;
    m.insert("children".into(), json!([]));
    // How a stop finds every descendant: "cgroup" or "tree".
    m.insert("kill_mode".into(), json!(crate::containment::mode().as_str()));
    Ok(one("info", Value::Object(m)))
}
