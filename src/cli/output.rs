//! Human output: what a person reads at a glance.

use serde_json::Value;
use std::fmt::Write as _;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn duration(secs: f64) -> String {
    let t = secs.max(0.0) as u64;
    match t {
        0..=59 => format!("{t}s"),
        60..=3599 => format!("{}m{:02}s", t / 60, t % 60),
        3600..=86_399 => format!("{}h{:02}m", t / 3600, (t % 3600) / 60),
        _ => format!("{}d{:02}h", t / 86_400, (t % 86_400) / 3600),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |x| x.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, x)| format!("{x:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn status_table(details: &[Value]) -> String {
    let mut rows = vec![vec![
        "WATCHER".to_string(),
        "STATE".into(),
        "PROCS".into(),
        "READY".into(),
        "PIDS".into(),
        "UPTIME".into(),
        "RESTARTS".into(),
    ]];
    for d in details {
        let procs = d["processes"].as_array().cloned().unwrap_or_default();
        let running: Vec<&Value> = procs.iter().filter(|p| p["pid"].is_i64()).collect();
        let pids: Vec<String> = running.iter().map(|p| p["pid"].to_string()).collect();
        let uptime = running
            .iter()
            .filter_map(|p| p["uptime"].as_f64())
            .fold(None, |m: Option<f64>, u| Some(m.map_or(u, |m| m.min(u))));
        let restarts: u64 = procs.iter().filter_map(|p| p["restarts"].as_u64()).sum();
        rows.push(vec![
            s(&d["name"]),
            s(&d["state"]),
            format!("{}/{}", running.len(), s(&d["numprocesses"])),
            running.iter().filter(|p| p["ready"] == true).count().to_string(),
            if pids.is_empty() {
                "-".into()
            } else {
                pids.join(",")
            },
            uptime.map_or("-".into(), duration),
            restarts.to_string(),
        ]);
    }
    table(&rows)
}

fn kv(map: &Value) -> String {
    let mut out = String::new();
    if let Some(o) = map.as_object() {
        for (k, v) in o {
            let _ = writeln!(out, "{k}: {}", s(v));
        }
    }
    out
}

fn stats_rows(rows: &mut Vec<Vec<String>>, watcher: &str, info: &Value) {
    if let Some(o) = info.as_object() {
        for (pid, i) in o {
            if i.is_object() {
                rows.push(vec![
                    watcher.to_string(),
                    pid.clone(),
                    s(&i["wid"]),
                    s(&i["cpu"]),
                    s(&i["mem"]),
                    s(&i["mem_info1"]),
                    s(&i["mem_info2"]),
                    i["age"].as_f64().map_or("-".into(), duration),
                    s(&i["cmdline"]),
                ]);
            } else {
                rows.push(vec![watcher.to_string(), pid.clone(), s(i)]);
            }
        }
    }
}

fn stats(reply: &Value) -> String {
    let mut rows = vec![[
        "WATCHER", "PID", "WID", "CPU%", "MEM%", "RSS", "VMS", "AGE", "CMD",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect::<Vec<_>>()];
    if let Some(all) = reply["infos"].as_object() {
        for (w, info) in all {
            stats_rows(&mut rows, w, info);
        }
    } else if let Some(pid) = reply.get("process") {
        let mut m = serde_json::Map::new();
        m.insert(s(pid), reply["info"].clone());
        stats_rows(&mut rows, "", &Value::Object(m));
    } else {
        stats_rows(&mut rows, &s(&reply["name"]), &reply["info"]);
    }
    table(&rows)
}

/// Renders a successful reply of `command` for a person.
pub fn human(command: &str, r: &Value) -> String {
    match command {
        "status" => match r.get("details").and_then(Value::as_array) {
            Some(d) if r.get("statuses").is_some() => {
                let daemon = &r["daemon"];
                let foot = if daemon.is_object() {
                    format!(
                        "ringmaster {} (binary {}), pid {}\n",
                        s(&daemon["version"]),
                        s(&daemon["binary_id"]),
                        s(&daemon["pid"])
                    )
                } else {
                    String::new()
                };
                status_table(d) + &foot
            }
            _ => format!("{}\n", s(&r["status"])),
        },
        "list" => match r
            .get("watchers")
            .or_else(|| r.get("pids"))
            .and_then(Value::as_array)
        {
            Some(items) => format!("{}\n", items.iter().map(s).collect::<Vec<_>>().join(",")),
            None => "\n".into(),
        },
        "numprocesses" | "numwatchers" => format!("{}\n", s(&r[command])),
        "incr" | "decr" if r.get("numprocesses").is_some() => format!("{}\n", s(&r["numprocesses"])),
        "get" | "options" | "globaloptions" => kv(&r["options"]),
        "dstats" => kv(&r["info"]),
        "reloadconfig" => format!("{}\n", s(&r["summary"])),
        "upgrade" => format!(
            "upgraded in place: pid {}, {} (binary {}) -> {} (binary {})\n",
            s(&r["pid"]),
            s(&r["from"]["version"]),
            s(&r["from"]["binary_id"]),
            s(&r["to"]["version"]),
            s(&r["to"]["binary_id"])
        ),
        "stats" => stats(r),
        "listsockets" => {
            let mut out = String::new();
            for sock in r["sockets"].as_array().cloned().unwrap_or_default() {
                let addr = match sock.get("path") {
                    Some(p) => s(p),
                    None => format!("{}:{}", s(&sock["host"]), s(&sock["port"])),
                };
                let _ = writeln!(out, "{}: {} {}", s(&sock["fd"]), s(&sock["name"]), addr);
            }
            out
        }
        _ => match r.get("info") {
            Some(info) if info.is_object() => {
                let mut out = String::new();
                for k in ["stopped", "started", "kept"] {
                    if let Some(v) = info.get(k).and_then(Value::as_array) {
                        let _ = writeln!(out, "{k}: {}", v.iter().map(s).collect::<Vec<_>>().join(","));
                    }
                }
                out
            }
            _ => "ok\n".into(),
        },
    }
}
