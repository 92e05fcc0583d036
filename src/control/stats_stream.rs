//! `stats_endpoint`: Circus's circusd-stats stream (`stat.<watcher>.<pid>`,
//! `stat.<watcher>`, `stat.circus`), published every second from inside the
//! daemon — only when configured. CPU % is the delta between two ticks.

use super::commands::stats::info;
use super::context::Ctx;
use super::pubsub::Publisher;
use crate::watchers::GetStatus;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_secs(1);

fn ticks(pid: i32) -> Option<u64> {
    let st = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    Some(st.utime + st.stime)
}

pub fn spawn(ctx: Ctx, publisher: Publisher) {
    actix::spawn(async move {
        let mut last: HashMap<i32, (u64, Instant)> = HashMap::new();
        let tps = procfs::ticks_per_second() as f64;
        let mut interval = actix::clock::interval(PERIOD);
        loop {
            interval.tick().await;
            let mut cpu = |pid: i32| -> Option<f64> {
                let now = (ticks(pid)?, Instant::now());
                let pct = last.get(&pid).map(|(t, at)| {
                    let dt = now.1.duration_since(*at).as_secs_f64().max(1e-3);
                    (now.0.saturating_sub(*t) as f64 / tps) / dt * 100.0
                });
                last.insert(pid, now);
                pct
            };
            let mut seen = Vec::new();
            for w in ctx.all() {
                let Ok(st) = w.addr.send(GetStatus).await else {
                    continue;
                };
                let (mut pids, mut cpus, mut mem, mut age) = (Vec::new(), Vec::new(), 0.0, 0.0f64);
                for p in st.processes.iter().filter_map(|p| p.pid) {
                    seen.push(p);
                    let c = cpu(p);
                    if let Some(mut m) = info(p, c) {
                        mem += m.get("mem").and_then(Value::as_f64).unwrap_or(0.0);
                        age = age.max(m.get("age").and_then(Value::as_f64).unwrap_or(0.0));
                        if let Some(c) = c {
                            cpus.push(c);
                        }
                        m.insert("subtopic".into(), json!(p));
                        m.insert("name".into(), Value::Null);
                        publisher.publish(format!("stat.{}.{p}", w.name), &Value::Object(m));
                        pids.push(p);
                    }
                }
                let avg = if cpus.is_empty() {
                    json!("N/A")
                } else {
                    json!(cpus.iter().sum::<f64>() / cpus.len() as f64)
                };
                publisher.publish(
                    format!("stat.{}", w.name),
                    &json!({"pid": pids, "cpu": avg, "mem": mem, "age": age}),
                );
            }
            let me = std::process::id() as i32;
            seen.push(me);
            let c = cpu(me);
            if let Some(mut m) = info(me, c) {
                m.insert("subtopic".into(), json!(me));
                m.insert("name".into(), json!("circusd"));
                publisher.publish(format!("stat.circus.{me}"), &Value::Object(m.clone()));
                publisher.publish(
                    "stat.circus",
                    &json!({"pid": [me], "cpu": m["cpu"], "mem": m["mem"], "age": m["age"]}),
                );
            }
            last.retain(|p, _| seen.contains(p));
        }
    });
}
