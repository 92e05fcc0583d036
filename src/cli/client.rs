use super::output;
use super::{Conn, ControlCommand, Scale, Target};
use crate::config::Signum;
use crate::control::client::{Client, ClientError, Subscriber};
use crate::control::commands::util::Target as Target2;
use crate::control::commands::{
    add, decr::ScaleBy, dstats, get, globaloptions, kill, list, listsockets, logs, numprocesses, numwatchers,
    options, quit, reload, reloadconfig, reopen, rm, set, signal, stats, status, upgrade, Props, Request,
};
use crate::control::transport;
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use std::time::Duration;

/// Circus's exit codes: 3 for an error reply, 1 for a timeout or transport failure.
const EXIT_ERROR_REPLY: u8 = 3;
const EXIT_TRANSPORT: u8 = 1;

pub(super) fn endpoint(conn: &Conn) -> String {
    conn.endpoint
        .clone()
        .or_else(|| {
            std::env::var("RINGMASTER_ENDPOINT")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("CIRCUSCTL_ENDPOINT").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(transport::default_endpoint)
}

fn target(t: &Target) -> Target2 {
    Target2 {
        name: t.name.clone(),
        match_: Some(t.match_.clone()),
        waiting: t.waiting,
    }
}

fn scale(s: &Scale) -> ScaleBy {
    ScaleBy {
        name: s.name.clone(),
        nb: s.nb,
        waiting: s.waiting,
    }
}

fn signum(s: &Option<String>) -> Result<Option<Signum>, String> {
    s.as_deref().map(Signum::parse).transpose()
}

/// `set`'s values arrive as strings; give them JSON types as circusctl does.
fn typed(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        return json!(f);
    }
    match v.to_ascii_lowercase().as_str() {
        "true" => return json!(true),
        "false" => return json!(false),
        _ => {}
    }
    if v.starts_with('{') || v.starts_with('[') {
        if let Ok(j) = serde_json::from_str(v) {
            return j;
        }
    }
    json!(v)
}

/// The typed request a command line asks for (a bad signal name is refused here).
fn request(cmd: &ControlCommand) -> Result<Request, String> {
    use ControlCommand as C;
    use Request as R;
    Ok(match cmd {
        C::Status { name } => R::Status(status::Status {
            name: name.clone(),
            verbose: true,
        }),
        C::List { name } => R::List(list::List { name: name.clone() }),
        C::Start(t) => R::Start(target(t)),
        C::Stop(t) => R::Stop(target(t)),
        C::Restart(t) => R::Restart(target(t)),
        C::Reload {
            name,
            terminate,
            sequential,
            waiting,
        } => R::Reload(reload::Reload {
            name: name.clone(),
            graceful: !terminate,
            sequential: *sequential,
            waiting: *waiting,
        }),
        C::Incr(s) => R::Incr(scale(s)),
        C::Decr(s) => R::Decr(scale(s)),
        C::Numprocesses { name } => R::Numprocesses(numprocesses::Numprocesses { name: name.clone() }),
        C::Numwatchers => R::Numwatchers(numwatchers::Numwatchers),
        C::Signal {
            name,
            signal,
            pid,
            childpid,
            children,
            recursive,
        } => R::Signal(signal::SignalRequest {
            name: name.clone(),
            signum: Signum::parse(signal)?,
            pid: pid.map(|p| p as i32),
            childpid: childpid.map(|p| p as i32),
            children: *children,
            recursive: *recursive,
        }),
        C::Kill {
            name,
            pid,
            signum: sig,
            graceful_timeout,
            waiting,
        } => R::Kill(kill::Kill {
            name: name.clone(),
            pid: pid.map(|p| p as i32),
            signum: signum(sig)?,
            graceful_timeout: *graceful_timeout,
            waiting: *waiting,
        }),
        C::Stats { name, process } => R::Stats(stats::Stats {
            name: name.clone(),
            process: *process,
        }),
        C::Dstats => R::Dstats(dstats::Dstats),
        C::Get { name, keys } => R::Get(get::Get {
            name: name.clone(),
            keys: keys.clone(),
        }),
        C::Set { name, pairs, waiting } => {
            let mut options = Map::new();
            for kv in pairs.chunks(2) {
                if let [k, v] = kv {
                    options.insert(k.clone(), typed(v));
                }
            }
            R::Set(set::Set {
                name: name.clone(),
                options,
                waiting: *waiting,
            })
        }
        C::Options { name } => R::Options(options::Options { name: name.clone() }),
        C::Globaloptions { option } => R::Globaloptions(globaloptions::Globaloptions {
            option: option.clone(),
        }),
        C::Add {
            name,
            cmd,
            start,
            waiting,
        } => R::Add(add::Add {
            name: name.clone(),
            cmd: cmd.join(" "),
            start: *start,
            waiting: *waiting,
            ..Default::default()
        }),
        C::Rm {
            name,
            nostop,
            waiting,
        } => R::Rm(rm::Rm {
            name: name.clone(),
            nostop: *nostop,
            waiting: *waiting,
        }),
        C::Listsockets => R::Listsockets(listsockets::Listsockets),
        C::Listen { .. } => R::Globaloptions(globaloptions::Globaloptions::default()),
        C::Reloadconfig { dry_run, waiting } => R::Reloadconfig(reloadconfig::Reloadconfig {
            dry_run: *dry_run,
            waiting: *waiting,
        }),
        C::Logs {
            name,
            stream,
            lines,
            since,
            follow,
        } => R::Logs(logs::Logs {
            name: name.clone(),
            stream: stream.clone(),
            lines: Some(*lines),
            since: since
                .as_deref()
                .and_then(|s| crate::config::Seconds::parse(s).ok())
                .map(|d| d.get().as_secs_f64()),
            follow: *follow,
        }),
        C::Reopen => R::Reopen(reopen::Reopen),
        C::Quit { waiting } => R::Quit(quit::Quit { waiting: *waiting }),
        C::Upgrade { binary, .. } => R::Upgrade(upgrade::Upgrade {
            // The daemon's working directory is not ours.
            binary: binary.as_ref().map(|b| {
                std::path::absolute(b)
                    .unwrap_or_else(|_| b.clone())
                    .display()
                    .to_string()
            }),
        }),
    })
}

/// Runs one control command against the daemon and prints the result.
pub fn run_client(cmd: ControlCommand, conn: Conn) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the client runtime: {e}");
            return ExitCode::from(EXIT_TRANSPORT);
        }
    };
    rt.block_on(call(cmd, conn))
}

async fn call(cmd: ControlCommand, conn: Conn) -> ExitCode {
    let req = match request(&cmd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR_REPLY);
        }
    };
    let (name, properties) = (req.command(), req.props());
    let ep = endpoint(&conn);
    let timeout = Duration::from_secs_f64(conn.timeout.clamp(0.001, 86_400.0));
    let json_out = conn.json;
    let mut client = match Client::connect(&ep, timeout).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot reach the ringmaster daemon at {ep}: {e:#}");
            return ExitCode::from(EXIT_TRANSPORT);
        }
    };
    // Follow: subscribe before reading history, so no line falls in between.
    let mut live = None;
    if let ControlCommand::Logs {
        name: w,
        stream,
        follow: true,
        ..
    } = &cmd
    {
        match subscribe_logs(&mut client, w, stream.as_deref()).await {
            Ok(s) => live = Some(s),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(EXIT_TRANSPORT);
            }
        }
    }
    if let ControlCommand::Upgrade { wait, .. } = &cmd {
        // The new image replies, once it has restored.
        client.set_timeout(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0)));
    }
    let reply = match client.call(name, properties).await {
        Ok(r) => r,
        Err(ClientError::Timeout(t)) => {
            eprintln!("error: no reply from {ep} within {t:?} (is the daemon running? see --endpoint)");
            return ExitCode::from(EXIT_TRANSPORT);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_TRANSPORT);
        }
    };
    let is_error = reply.get("status").and_then(Value::as_str) == Some("error");
    if let ControlCommand::Logs {
        name,
        stream,
        since,
        follow,
        ..
    } = &cmd
    {
        if let Some(s) = since {
            if crate::config::Seconds::parse(s).is_err() {
                eprintln!("error: invalid --since {s:?} (expected e.g. 10m, 30s)");
                return ExitCode::from(2);
            }
        }
        if is_error || json_out {
            return print_reply("logs", &reply, json_out, is_error);
        }
        let last = print_log_lines(name, reply["lines"].as_array().map(Vec::as_slice).unwrap_or(&[]));
        if let (true, Some(sub)) = (*follow, live) {
            let _ = stream;
            return follow_logs(sub, client, name, last).await;
        }
        return ExitCode::SUCCESS;
    }
    if let ControlCommand::Listen { topics, count, .. } = &cmd {
        if is_error {
            return print_reply(name, &reply, json_out, true);
        }
        return listen(&reply, topics, *count).await;
    }
    if let (ControlCommand::Upgrade { .. }, false) = (&cmd, is_error) {
        if reply["fallback"] == true {
            eprintln!(
                "error: the new binary could not restore; the daemon (pid {}) runs the previous binary {} again",
                reply["pid"], reply["to"]["binary_id"]
            );
            return ExitCode::from(EXIT_ERROR_REPLY);
        }
    }
    print_reply(name, &reply, json_out, is_error)
}

/// Prints `watcher[pid] | line` (stderr lines marked); returns the newest time.
fn print_log_lines(watcher: &str, lines: &[Value]) -> f64 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut last = 0.0;
    for l in lines {
        let mark = if l["stream"] == "stderr" { "!" } else { "|" };
        let _ = writeln!(
            out,
            "{watcher}[{}] {mark} {}",
            l["pid"],
            l["line"].as_str().unwrap_or_default()
        );
        last = l["time"].as_f64().unwrap_or(last);
    }
    let _ = out.flush();
    last
}

async fn subscribe_logs(
    client: &mut Client,
    watcher: &str,
    stream: Option<&str>,
) -> anyhow::Result<Subscriber> {
    let globals = client
        .call("globaloptions", Map::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pubsub = globals
        .pointer("/options/pubsub_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the daemon did not say where its pubsub endpoint is"))?;
    let topic = match stream {
        Some(s) => format!("logs.{}.{s}", watcher.to_lowercase()),
        None => format!("logs.{}.", watcher.to_lowercase()),
    };
    Subscriber::connect(pubsub, std::slice::from_ref(&topic))
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {pubsub}: {e:#}"))
}

async fn follow_logs(mut sub: Subscriber, mut client: Client, watcher: &str, after: f64) -> ExitCode {
    // The daemon publishes a watcher's lines only while someone holds a lease.
    let renew_every = crate::control::follows::LEASE / 2;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    let mut seqs: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    loop {
        let next = tokio::select! {
            n = sub.next() => n,
            _ = renew.tick() => {
                let renew = logs::Logs {
                    name: watcher.to_string(),
                    lines: Some(0),
                    follow: true,
                    ..Default::default()
                };
                if let Err(e) = client.call("logs", renew.props()).await {
                    eprintln!("error: cannot renew the follow lease: {e}");
                    return ExitCode::from(EXIT_TRANSPORT);
                }
                continue;
            }
        };
        match next {
            Ok((topic, v)) => {
                if v["time"].as_f64().unwrap_or(0.0) <= after {
                    continue;
                }
                if let Some(seq) = v["seq"].as_u64() {
                    let prev = seqs.insert(topic.clone(), seq);
                    if let Some(p) = prev.filter(|p| seq > p + 1) {
                        eprintln!(
                            "[ringmaster: {} lines of {topic} missed: this follower was too slow]",
                            seq - p - 1
                        );
                    }
                }
                print_log_lines(watcher, std::slice::from_ref(&v));
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(EXIT_TRANSPORT);
            }
        }
    }
}

fn print_reply(name: &str, reply: &Value, json_out: bool, is_error: bool) -> ExitCode {
    if json_out {
        println!("{reply}");
    } else if is_error {
        let reason = reply
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        eprintln!("error: {reason}");
    } else {
        print!("{}", output::human(name, reply));
    }
    if is_error {
        ExitCode::from(EXIT_ERROR_REPLY)
    } else {
        ExitCode::SUCCESS
    }
}

async fn listen(globals: &Value, topics: &[String], count: Option<u64>) -> ExitCode {
    let Some(pubsub) = globals
        .pointer("/options/pubsub_endpoint")
        .and_then(Value::as_str)
    else {
        eprintln!("error: the daemon did not say where its pubsub endpoint is");
        return ExitCode::from(EXIT_TRANSPORT);
    };
    let mut sub = match Subscriber::connect(pubsub, topics).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot subscribe to {pubsub}: {e:#}");
            return ExitCode::from(EXIT_TRANSPORT);
        }
    };
    let mut n = 0;
    while count.is_none_or(|c| n < c) {
        match sub.next().await {
            Ok((topic, payload)) => {
                println!("{topic}: {payload}");
                n += 1;
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(EXIT_TRANSPORT);
            }
        }
    }
    ExitCode::SUCCESS
}
