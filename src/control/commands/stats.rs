//! `stats`: CPU, memory, age and children of every process, read from /proc
//! on demand (no stats process, no polling when nobody asks), in Circus's
//! field names and formats.
use super::util::{one, status_of};
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_int, prop_str, CommandError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;

/// CPU is measured over this window, as psutil's `cpu_percent(interval)` does.
const CPU_WINDOW: Duration = Duration::from_millis(20);

/// Circus's bytes2human: "31.32M".
pub fn human(n: u64) -> String {
    const UNITS: [&str; 8] = ["K", "M", "G", "T", "P", "E", "Z", "Y"];
    for (i, u) in UNITS.iter().enumerate().rev() {
        let p = 1u128 << (10 * (i + 1));
        if u128::from(n) >= p {
            return format!("{:.2}{u}", n as f64 / p as f64);
        }
    }
    format!("{n}B")
}

fn cpu_ticks(pid: i32) -> Option<u64> {
    let st = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    Some(st.utime + st.stime)
}

/// Samples CPU ticks of `pids` across the window; returns pid → cpu %.
pub async fn cpu_percent(pids: &[i32]) -> HashMap<i32, f64> {
    let before: HashMap<i32, u64> = pids
        .iter()
        .filter_map(|p| cpu_ticks(*p).map(|t| (*p, t)))
        .collect();
    actix::clock::sleep(CPU_WINDOW).await;
    let tps = procfs::ticks_per_second() as f64;
    pids.iter()
        .filter_map(|p| {
            let a = before.get(p)?;
            let b = cpu_ticks(*p)?;
            Some((
                *p,
                (b.saturating_sub(*a) as f64 / tps) / CPU_WINDOW.as_secs_f64() * 100.0,
            ))
        })
        .collect()
}

/// Circus's `get_info` dict for one pid (without children).
pub fn info(pid: i32, cpu: Option<f64>) -> Option<Map<String, Value>> {
    let proc_ = procfs::process::Process::new(pid).ok()?;
    let st = proc_.stat().ok()?;
    let page = procfs::page_size();
    let rss = st.rss * page;
    let total = procfs::Current::current()
        .map(|m: procfs::Meminfo| m.mem_total)
        .unwrap_or(0);
    let tps = procfs::ticks_per_second();
    let boot = procfs::boot_time_secs().unwrap_or(0) as f64;
    let create = boot + st.starttime as f64 / tps as f64;
    let now = crate::watchers::now_f64();
    let cpu_secs = (st.utime + st.stime) as f64 / tps as f64;
    let username = proc_
        .uid()
        .ok()
        .and_then(|u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
                .ok()
                .flatten()
        })
        .map(|u| u.name)
        .unwrap_or_else(|| "N/A".into());
    let cmdline = proc_
        .cmdline()
        .ok()
        .and_then(|c| c.first().cloned())
        .map(|a| a.rsplit('/').next().unwrap_or(&a).to_string())
        .unwrap_or_else(|| st.comm.clone());
    let mut m = Map::new();
    m.insert("pid".into(), json!(pid));
    m.insert("username".into(), json!(username));
    m.insert("nice".into(), json!(st.nice));
    m.insert("mem_info1".into(), json!(human(rss)));
    m.insert("mem_info2".into(), json!(human(st.vsize)));
    m.insert(
        "cpu".into(),
        cpu.map_or(json!("N/A"), |c| json!((c * 10.0).round() / 10.0)),
    );
    m.insert(
        "mem".into(),
        json!(if total > 0 {
            ((rss as f64 / total as f64) * 1000.0).round() / 10.0
        } else {
            0.0
        }),
    );
    m.insert(
        "ctime".into(),
        json!(format!(
            "{}:{:02}.{:02}",
            (cpu_secs as u64) / 60,
            (cpu_secs as u64) % 60,
            ((cpu_secs.fract()) * 100.0) as u64
        )),
    );
    m.insert("create_time".into(), json!(create));
    m.insert("age".into(), json!((now - create).max(0.0)));
    m.insert("cmdline".into(), json!(cmdline));
    Some(m)
}

/// Info for a process, its `children` (each without children), `started` and `wid`.
async fn process_infos(procs: &[(i32, u32, Option<f64>)]) -> Map<String, Value> {
    let mut all: Vec<i32> = procs.iter().map(|p| p.0).collect();
    let kids: HashMap<i32, Vec<i32>> = procs
        .iter()
        .map(|(pid, _, _)| (*pid, crate::watchers::children(*pid)))
        .collect();
    all.extend(kids.values().flatten());
    let cpu = cpu_percent(&all).await;
    let mut out = Map::new();
    for (pid, wid, started) in procs {
        let v = match info(*pid, cpu.get(pid).copied()) {
            Some(mut m) => {
                let children: Vec<Value> = kids[pid]
                    .iter()
                    .filter_map(|c| info(*c, cpu.get(c).copied()).map(Value::Object))
                    .collect();
                m.insert("children".into(), json!(children));
                m.insert("started".into(), json!(started));
                m.insert("wid".into(), json!(wid));
                Value::Object(m)
            }
            None => json!("No such process (stopped?)"),
        };
        out.insert(pid.to_string(), v);
    }
    out
}

async fn watcher_procs(
    addr: &actix::Addr<crate::watchers::WatcherActor>,
) -> Result<Vec<(i32, u32, Option<f64>)>, CommandError> {
    let st = status_of(addr).await?;
    Ok(st
        .processes
        .iter()
        .filter_map(|p| {
            let started = p
                .started
                .and_then(|s| s.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64());
            p.pid.map(|pid| (pid, p.wid, started))
        })
        .collect())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub name: Option<String>,
    pub process: Option<i64>,
}

impl Props for Stats {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Stats {
            name: prop_str(p, "name")?,
            process: prop_int(p, "process")?,
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("name", json!(self.name)), ("process", json!(self.process))])
    }
}

pub async fn execute(ctx: Ctx, r: Stats) -> Reply {
    match r.name {
        Some(name) => {
            let w = ctx.watcher(&name)?;
            let procs = watcher_procs(&w.addr).await?;
            if let Some(pid) = r.process {
                let pid = pid as i32;
                let Some(one_proc) = procs.iter().find(|p| p.0 == pid) else {
                    return Err(CommandError::message(format!(
                        "process {pid} not found in '{name}'"
                    )));
                };
                let infos = process_infos(std::slice::from_ref(one_proc)).await;
                let mut m = one("process", json!(pid));
                m.insert(
                    "info".into(),
                    infos.get(&pid.to_string()).cloned().unwrap_or(Value::Null),
                );
                return Ok(m);
            }
            let mut m = one("name", json!(name));
            m.insert("info".into(), Value::Object(process_infos(&procs).await));
            Ok(m)
        }
        None => {
            let mut infos = Map::new();
            for w in ctx.all() {
                let procs = watcher_procs(&w.addr).await?;
                infos.insert(w.name.clone(), Value::Object(process_infos(&procs).await));
            }
            Ok(one("infos", Value::Object(infos)))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(512), "512B");
        assert_eq!(super::human(32_841_000), "31.32M");
    }
}
