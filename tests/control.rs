//! The control channel, driven over ZeroMQ like circusctl does, against the
//! real daemon: every command, every error path, concurrency and events.

mod common;
use common::*;
use ringmaster::control::client::{Client, Subscriber};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn call(c: &mut Client, cmd: &str, p: Value) -> Value {
    c.call(cmd, props(p))
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

const CONFIG: &str = r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
numprocesses = 2
priority = 5
[watchers.sleeper]
cmd = "sleep 1000"
graceful_timeout = 2
[watchers.manual]
cmd = "sleep 1000"
autostart = false
"#;

fn start() -> Daemon {
    let mut d = Daemon::start(&CONFIG.replace("{w}", &worker_script()));
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("web", 2, secs(10));
    d.wait_spawned("sleeper", 1, secs(10));
    d
}

#[test]
fn read_only_commands() {
    let d = start();
    rt().block_on(async {
        let mut c = Client::connect(&endpoint(&d), secs(5)).await.unwrap();
        let r = call(&mut c, "list", json!({})).await;
        assert_eq!(r["watchers"], json!(["manual", "sleeper", "web"]));
        assert_eq!(r["status"], "ok");
        let r = call(&mut c, "list", json!({"name": "web"})).await;
        assert_eq!(r["pids"].as_array().unwrap().len(), 2);
        let r = call(&mut c, "status", json!({})).await;
        assert_eq!(
            r["statuses"],
            json!({"manual": "stopped", "sleeper": "active", "web": "active"})
        );
        // Circus's quirk: the state replaces "ok" in `status`.
        let r = call(&mut c, "status", json!({"name": "WEB"})).await;
        assert_eq!(r["status"], "active");
        assert_eq!(call(&mut c, "numwatchers", json!({})).await["numwatchers"], 3);
        assert_eq!(call(&mut c, "numprocesses", json!({})).await["numprocesses"], 3);
        let r = call(&mut c, "numprocesses", json!({"name": "web"})).await;
        assert_eq!(
            (r["numprocesses"].clone(), r["watcher_name"].clone()),
            (json!(2), json!("web"))
        );
        let r = call(&mut c, "listsockets", json!({})).await;
        let s = &r["sockets"][0];
        assert_eq!(
            (s["name"].clone(), s["host"].clone(), s["backlog"].clone()),
            (json!("web"), json!("127.0.0.1"), json!(2048))
        );
        assert!(s["port"].as_u64().unwrap() > 0 && s["fd"].is_i64());
        let r = call(&mut c, "options", json!({"name": "sleeper"})).await;
        let keys: Vec<&String> = r["options"].as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "options sorted by key");
        assert_eq!(r["options"]["cmd"], "sleep 1000");
        assert_eq!(r["options"]["stop_signal"], 15);
        let r = call(
            &mut c,
            "get",
            json!({"name": "sleeper", "keys": ["numprocesses", "graceful_timeout"]}),
        )
        .await;
        assert_eq!(r["options"], json!({"numprocesses": 1, "graceful_timeout": 2.0}));
        let r = call(&mut c, "globaloptions", json!({})).await;
        assert_eq!(r["options"]["endpoint"], json!(endpoint(&d)));
        assert_eq!(r["options"]["pubsub_endpoint"], json!(pubsub(&d)));
        let r = call(&mut c, "globaloptions", json!({"option": "endpoint"})).await;
        assert_eq!(r["options"].as_object().unwrap().len(), 1);
        let r = call(&mut c, "stats", json!({"name": "web"})).await;
        let info = r["info"].as_object().unwrap();
        assert_eq!(info.len(), 2);
        for (pid, i) in info {
            assert_eq!(i["pid"].to_string(), *pid);
            assert!(i["mem_info1"].as_str().unwrap().ends_with('M'), "{i}");
            assert!(i["cpu"].is_number() && i["mem"].is_number() && i["age"].is_number());
            assert!(i["children"].is_array() && i["wid"].is_u64() && i["started"].is_number());
        }
        let r = call(&mut c, "stats", json!({})).await;
        let sleeper = r["infos"]["sleeper"].as_object().unwrap();
        assert_eq!(sleeper.len(), 1);
        assert_eq!(sleeper.values().next().unwrap()["cmdline"], "sleep");
        let r = call(&mut c, "dstats", json!({})).await;
        assert_eq!(r["info"]["pid"], json!(d.pid()));
        assert_eq!(r["info"]["cmdline"], "ringmaster");
    });
}

#[test]
fn mutating_commands() {
    let mut d = start();
    let ep = endpoint(&d);
    let r = rt();
    let mut c = r.block_on(Client::connect(&ep, secs(10))).unwrap();
    // incr/decr with waiting reply the new count.
    let v = r.block_on(call(
        &mut c,
        "incr",
        json!({"name": "sleeper", "nb": 2, "waiting": true}),
    ));
    assert_eq!(v["numprocesses"], 3);
    d.wait_spawned("sleeper", 2, secs(5));
    let v = r.block_on(call(&mut c, "decr", json!({"name": "sleeper", "waiting": true})));
    assert_eq!(v["numprocesses"], 2);
    // start a stopped watcher, with info.
    let v = r.block_on(call(&mut c, "start", json!({"name": "manual", "waiting": true})));
    assert_eq!(v["info"]["started"].as_array().unwrap().len(), 1, "{v}");
    // restart: new pids.
    let before = r.block_on(call(&mut c, "list", json!({"name": "manual"})))["pids"].clone();
    let v = r.block_on(call(
        &mut c,
        "restart",
        json!({"name": "manual", "waiting": true}),
    ));
    assert_eq!(v["info"]["stopped"], before);
    assert_ne!(v["info"]["started"], before);
    // stop with match=glob on several watchers.
    r.block_on(call(&mut c, "stop", json!({"name": "m*", "waiting": true})));
    assert_eq!(
        r.block_on(call(&mut c, "status", json!({"name": "manual"})))["status"],
        "stopped"
    );
    // kill one pid: the watcher replaces it.
    let pid = r.block_on(call(&mut c, "list", json!({"name": "sleeper"})))["pids"][0]
        .as_i64()
        .unwrap();
    r.block_on(call(
        &mut c,
        "kill",
        json!({"name": "sleeper", "pid": pid, "signum": "KILL", "waiting": true}),
    ));
    assert!(!alive(pid as i32));
    let pids = r.block_on(call(&mut c, "list", json!({"name": "sleeper"})))["pids"].clone();
    assert_eq!(pids.as_array().unwrap().len(), 2);
    assert!(!pids.as_array().unwrap().contains(&json!(pid)));
    // signal: the process sees it (sleep dies on USR1).
    let pid = pids[0].as_i64().unwrap() as i32;
    r.block_on(call(
        &mut c,
        "signal",
        json!({"name": "sleeper", "pid": pid, "signum": "USR1"}),
    ));
    d.wait_for("exit by USR1", secs(5), |v| {
        v["message"] == "exited" && v["pid"] == json!(pid)
    });
    // set numprocesses and graceful_timeout, read back with get.
    r.block_on(call(
        &mut c,
        "set",
        json!({"name": "sleeper", "options": {"graceful_timeout": 1.5}}),
    ));
    let v = r.block_on(call(
        &mut c,
        "get",
        json!({"name": "sleeper", "keys": ["graceful_timeout"]}),
    ));
    assert_eq!(v["options"]["graceful_timeout"], 1.5);
    // add and rm.
    let v = r.block_on(call(
        &mut c,
        "add",
        json!({"name": "added", "cmd": "sleep 1000", "options": {"numprocesses": 2}, "start": true, "waiting": true}),
    ));
    assert_eq!(v["info"]["started"].as_array().unwrap().len(), 2, "{v}");
    let added: Vec<i32> = v["info"]["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    r.block_on(call(&mut c, "rm", json!({"name": "added", "waiting": true})));
    for p in added {
        assert!(!alive(p));
    }
    assert_eq!(
        r.block_on(call(&mut c, "list", json!({})))["watchers"],
        json!(["manual", "sleeper", "web"])
    );
    // reload replaces processes one by one.
    let v = r.block_on(call(&mut c, "reload", json!({"name": "web", "waiting": true})));
    assert_eq!(v["info"]["stopped"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["info"]["started"].as_array().unwrap().len(), 2, "{v}");
    // quit replies, then the daemon exits 0 leaving nothing.
    let v = r.block_on(call(&mut c, "quit", json!({})));
    assert_eq!(v["status"], "ok");
    assert_eq!(d.wait_exit(secs(15)), 0);
}

#[test]
fn every_malformed_request_gets_an_error_reply() {
    let d = start();
    rt().block_on(async {
        let mut c = Client::connect(&endpoint(&d), secs(5)).await.unwrap();
        let raw_cases: Vec<(Vec<u8>, u64)> = vec![
            (b"not json".to_vec(), 1),
            (b"   ".to_vec(), 1),
            (b"[1,2]".to_vec(), 1),
            (b"{}".to_vec(), 3),
            (br#"{"command": 5, "id": "x"}"#.to_vec(), 3),
            (
                br#"{"command": "list", "properties": [1], "id": "x"}"#.to_vec(),
                3,
            ),
            (br#"{"command": "nope", "id": "x"}"#.to_vec(), 2),
            (
                format!(r#"{{"command":"list","id":"x","pad":"{}"}}"#, "a".repeat(2 << 20)).into_bytes(),
                3,
            ),
        ];
        for (body, errno) in raw_cases {
            let t0 = Instant::now();
            c.send_raw(body.clone()).await.unwrap();
            let reply: Value = serde_json::from_slice(&c.recv_raw().await.unwrap()).unwrap();
            assert_eq!(
                reply["status"],
                "error",
                "{}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
            assert_eq!(reply["errno"], errno, "{reply}");
            assert!(t0.elapsed() < secs(2), "slow error reply");
        }
        let cases = [
            ("status", json!({"name": "nosuch"}), 3, "program nosuch not found"),
            (
                "incr",
                json!({"name": "web", "nb": "lots"}),
                3,
                "'nb' isn't an integer",
            ),
            ("incr", json!({}), 3, "message invalid 'name' is missing"),
            (
                "get",
                json!({"name": "web", "keys": ["bogus"]}),
                3,
                "'bogus' option not found",
            ),
            (
                "set",
                json!({"name": "web", "options": {"bogus": 1}}),
                3,
                "unknown key 'bogus'",
            ),
            (
                "set",
                json!({"name": "web", "options": {"numprocesses": "x"}}),
                3,
                "'numprocesses' isn't an integer",
            ),
            (
                "set",
                json!({"name": "web", "options": 5}),
                3,
                "'options' property should be an object",
            ),
            (
                "globaloptions",
                json!({"option": "bogus"}),
                3,
                "'bogus' not an existing option",
            ),
            (
                "start",
                json!({"name": "web", "match": "bad"}),
                3,
                "unknown match method bad",
            ),
            ("listen", json!({}), 3, "invalid message. use a pub/sub socket"),
            (
                "signal",
                json!({"name": "web", "signum": "BOGUS"}),
                3,
                "signal invalid",
            ),
            (
                "kill",
                json!({"name": "web", "pid": 1}),
                3,
                "process 1 not found in 'web'",
            ),
            (
                "stats",
                json!({"name": "web", "process": 1}),
                3,
                "process 1 not found in 'web'",
            ),
            (
                "add",
                json!({"name": "x", "cmd": "sleep 1", "options": {"numprocesses": "two"}}),
                3,
                "expected u32",
            ),
            (
                "add",
                json!({"name": "web", "cmd": "sleep 1"}),
                5,
                "'web' already exist",
            ),
        ];
        for (cmd, p, errno, reason) in cases {
            let r = call(&mut c, cmd, p.clone()).await;
            assert_eq!(r["status"], "error", "{cmd} {p}: {r}");
            assert_eq!(r["errno"], errno, "{cmd} {p}: {r}");
            assert!(r["reason"].as_str().unwrap().contains(reason), "{cmd} {p}: {r}");
        }
        // The id is echoed verbatim, and the channel still works.
        c.send_raw(br#"{"command":"numwatchers","id":42}"#.to_vec())
            .await
            .unwrap();
        let r: Value = serde_json::from_slice(&c.recv_raw().await.unwrap()).unwrap();
        assert_eq!((r["id"].clone(), r["numwatchers"].clone()), (json!(42), json!(3)));
    });
}

#[test]
fn commands_on_other_watchers_do_not_wait_for_a_slow_stop() {
    let mut d = Daemon::start(
        r#"
[watchers.slow]
cmd = "sh -c 'trap \"\" TERM; sleep 1000'"
graceful_timeout = 3
[watchers.a]
cmd = "sleep 1000"
[watchers.b]
cmd = "sleep 1000"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("slow", 1, secs(10));
    let ep = endpoint(&d);
    rt().block_on(async move {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let mut slow = Client::connect(&ep, secs(10)).await.unwrap();
                let t0 = Instant::now();
                let stop = tokio::task::spawn_local(async move {
                    slow.call("stop", props(json!({"name": "slow", "waiting": true})))
                        .await
                        .unwrap()
                });
                let mut tasks = Vec::new();
                for i in 0..20 {
                    let ep = ep.clone();
                    tasks.push(tokio::task::spawn_local(async move {
                        let mut c = Client::connect(&ep, secs(10)).await.unwrap();
                        for j in 0..100 {
                            let w = if (i + j) % 2 == 0 { "a" } else { "b" };
                            let r = c.call("status", props(json!({"name": w}))).await.unwrap();
                            assert_eq!(r["status"], "active");
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                let busy = t0.elapsed();
                assert!(
                    busy < secs(3),
                    "2000 requests took {busy:?}: they waited for the slow stop"
                );
                let r = stop.await.unwrap();
                assert_eq!(r["status"], "ok");
                assert!(
                    t0.elapsed() >= Duration::from_millis(2900),
                    "stop returned before graceful_timeout"
                );
            })
            .await;
    });
}

#[test]
fn subscriber_sees_kill_reap_spawn_in_order() {
    let d = start();
    rt().block_on(async {
        let mut sub = Subscriber::connect(&pubsub(&d), &["watcher.sleeper.".to_string()])
            .await
            .unwrap();
        let mut c = Client::connect(&endpoint(&d), secs(5)).await.unwrap();
        // The subscription is live once an event published after it arrives.
        let deadline = Instant::now() + secs(10);
        loop {
            call(
                &mut c,
                "set",
                json!({"name": "sleeper", "options": {"max_retry": 5}}),
            )
            .await;
            match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                Ok(Ok((t, _))) if t == "watcher.sleeper.updated" => break,
                _ if Instant::now() > deadline => panic!("subscription never became live"),
                _ => continue,
            }
        }
        let pid = call(&mut c, "list", json!({"name": "sleeper"})).await["pids"][0]
            .as_i64()
            .unwrap();
        call(&mut c, "kill", json!({"name": "sleeper", "pid": pid})).await;
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let (topic, payload) = tokio::time::timeout(secs(10), sub.next())
                .await
                .expect("event")
                .unwrap();
            if topic == "watcher.sleeper.updated" {
                continue;
            }
            seen.push((topic, payload));
        }
        assert_eq!(seen[0].0, "watcher.sleeper.kill");
        assert_eq!(seen[0].1["process_pid"], pid);
        assert_eq!(seen[1].0, "watcher.sleeper.reap");
        assert_eq!(seen[1].1["process_pid"], pid);
        assert_eq!(seen[1].1["exit_code"], -15);
        assert_eq!(seen[2].0, "watcher.sleeper.spawn");
        assert_ne!(seen[2].1["process_pid"], pid);
        assert!(seen[2].1["time"].is_f64());
    });
}

#[test]
fn ipc_endpoint_is_private_to_its_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = start();
    let dir = d.dir.path().join("ringmaster");
    let sock = dir.join("control.sock");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::metadata(&sock).unwrap().uid(), unsafe {
        libc::geteuid()
    });
    if unsafe { libc::geteuid() } != 0 {
        return; // another user cannot be simulated without root; the modes above are the guarantee
    }
    // As root: make the temp dir traversable, then try as the unprivileged `nobody`.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "status",
            "--timeout",
            "1",
            "--endpoint",
        ])
        .arg(endpoint(&d))
        .output()
        .expect("setpriv");
    assert_ne!(
        out.status.code(),
        Some(0),
        "another user reached the control socket"
    );
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    // And the owner still can.
    let out = std::process::Command::new(BIN)
        .args(["status", "--endpoint"])
        .arg(endpoint(&d))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_status_and_error_exit_codes() {
    let d = start();
    let ep = endpoint(&d);
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("RINGMASTER_ENDPOINT", &ep)
            .output()
            .unwrap()
    };
    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("WATCHER")
            && lines[0].contains("READY")
            && lines[0].contains("PIDS")
            && lines[0].contains("RESTARTS"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("web") && l.contains("active") && l.contains("2/2")),
        "{text}"
    );
    let out = run(&["status", "nosuch"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: program nosuch not found"
    );
    let out = run(&["--json", "list"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["watchers"], json!(["manual", "sleeper", "web"]));
    let out = std::process::Command::new(BIN)
        .args(["status", "--timeout", "0.5", "--endpoint", "tcp://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = std::process::Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("ringmaster"));
    let out = std::process::Command::new(BIN).args(["man"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH ringmaster"));
}

#[test]
fn stats_endpoint_publishes_circus_stat_messages() {
    let mut d = Daemon::start(
        r#"
[ringmaster]
statsd = true
[watchers.sleeper]
cmd = "sleep 1000"
numprocesses = 2
"#,
    );
    d.wait_msg("publishing stats", None, secs(10));
    let pids = d.wait_spawned("sleeper", 2, secs(10));
    let ep = format!("ipc://{}/ringmaster/stats.sock", d.dir.path().display());
    rt().block_on(async {
        let mut sub = Subscriber::connect(&ep, &["stat.".to_string()]).await.unwrap();
        let (mut per_pid, mut aggregate, mut circus) = (false, false, false);
        let deadline = Instant::now() + secs(10);
        while !(per_pid && aggregate && circus) {
            assert!(
                Instant::now() < deadline,
                "missing stat topics: {per_pid} {aggregate} {circus}"
            );
            let (topic, v) = tokio::time::timeout(secs(5), sub.next())
                .await
                .expect("stat message")
                .unwrap();
            if topic == format!("stat.sleeper.{}", pids[0]) {
                assert_eq!(v["pid"], pids[0]);
                assert!(v["mem_info1"].is_string());
                per_pid = true;
            } else if topic == "stat.sleeper" {
                assert_eq!(v["pid"].as_array().unwrap().len(), 2);
                aggregate = true;
            } else if topic.starts_with("stat.circus") {
                circus = true;
            }
        }
    });
}

#[test]
fn hostile_match_patterns_get_prompt_replies() {
    // A backtracking glob matcher takes exponential time on the first pattern
    // (the daemon stopped answering anyone) and overflows its stack on the
    // second; a huge regex must be refused, not compiled for minutes.
    let long = "a".repeat(44);
    let mut d = Daemon::start(&format!(
        "[watchers.{long}]\ncmd = \"sleep 1000\"\n[watchers.other]\ncmd = \"sleep 1000\"\n"
    ));
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned(&long, 1, secs(10));
    rt().block_on(async {
        let mut c = Client::connect(&endpoint(&d), secs(5)).await.unwrap();
        c.set_timeout(secs(3));
        // (pattern, match method, expected status, part of the reason)
        let cases = [
            (format!("{}*b", "*a".repeat(14)), "glob", "error", "not found"),
            ("*".repeat(100_000), "glob", "ok", ""),
            (format!("({})*", "a?".repeat(5_000)), "regex", "ok", ""),
            ("(a{1000}){1000}".to_string(), "regex", "error", "invalid regex"),
        ];
        let t0 = Instant::now();
        for (name, how, status, reason) in cases {
            let r = c
                .call("start", props(json!({"name": name, "match": how})))
                .await
                .unwrap_or_else(|e| {
                    let head: String = name.chars().take(20).collect();
                    panic!("{how} {head}…: {e}")
                });
            assert_eq!(r["status"], status, "{r}");
            assert!(r["reason"].as_str().unwrap_or("").contains(reason), "{r}");
        }
        assert!(t0.elapsed() < secs(3), "replies took {:?}", t0.elapsed());
        // Out-of-range numbers are refused, not wrapped or truncated.
        let r = c
            .call(
                "set",
                props(json!({"name": "other", "options": {"numprocesses": 4_294_967_296_u64}})),
            )
            .await
            .unwrap();
        assert_eq!(r["status"], "error", "{r}");
        assert!(r["reason"].as_str().unwrap().contains("at most 10000"), "{r}");
        // A bad command is refused by `set` as by `add`, and not kept.
        for bad in ["", "sleep '1000", "sleep\u{0}1"] {
            let r = c
                .call("set", props(json!({"name": "other", "options": {"cmd": bad}})))
                .await
                .unwrap();
            assert_eq!(r["status"], "error", "{bad:?}: {r}");
        }
        let r = c
            .call("get", props(json!({"name": "other", "keys": ["cmd"]})))
            .await
            .unwrap();
        assert_eq!(r["options"]["cmd"], "sleep 1000", "{r}");
        let r = c
            .call("logs", props(json!({"name": "other", "since": 1e308})))
            .await
            .unwrap();
        assert_eq!(r["status"], "ok", "{r}");
        // Another client is still served.
        let mut c2 = Client::connect(&endpoint(&d), secs(5)).await.unwrap();
        c2.set_timeout(secs(3));
        let r = c2.call("numwatchers", props(json!({}))).await.unwrap();
        assert_eq!(r["numwatchers"], 2, "{r}");
    });
}
