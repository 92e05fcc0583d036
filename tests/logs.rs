//! Output capture through the real daemon: file streams that lose nothing
//! when the daemon stops mid-burst, the pass-through default, `logs`
//! history, `ringmaster logs -f`, and `logs.<watcher>.<stream>` on pubsub.

mod common;
use common::*;
use ringmaster::control::client::{Client, Subscriber};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn daemon_stopped_mid_burst_loses_no_line() {
    let mut d = Daemon::start(
        r#"
[watchers.burst]
cmd = "python3 -u -c 'import sys; [sys.stdout.write(\"line %d %s\\n\" % (i, \"x\" * 80)) for i in range(10**9)]'"
graceful_timeout = 2
[watchers.burst.stdout_stream]
class = "file"
filename = "{dir}/burst.log"
"#,
    );
    d.wait_spawned("burst", 1, secs(10));
    let log = d.path("burst.log");
    eventually("the file fills", secs(10), || {
        std::fs::metadata(&log)
            .map(|m| m.len() > 2_000_000)
            .unwrap_or(false)
    });
    assert_eq!(d.stop(secs(30)), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut n = 0u64;
    for (i, l) in text.lines().enumerate() {
        let want = format!("line {i} ");
        assert!(
            l.starts_with(&want),
            "line {i} is {l:?}: a line was lost or garbled"
        );
        n += 1;
    }
    assert!(n > 10_000, "only {n} lines");
    assert!(text.ends_with('\n'));
}

#[test]
fn default_passes_output_through_prefixed() {
    let mut d = Daemon::start(
        "[watchers.echo]\ncmd = \"sh -c 'echo hello-out; echo hello-err >&2; exec sleep 1000'\"\n",
    );
    let pid = d.wait_spawned("echo", 1, secs(10))[0];
    eventually("stdout passthrough", secs(10), || {
        d.stdout_text().contains("hello-out")
    });
    let out = d.stdout_text();
    let line = out.lines().find(|l| l.contains("hello-out")).unwrap();
    assert!(line.contains("echo") && line.contains(&pid.to_string()), "{line}");
    // stderr goes to the daemon's stderr, which the harness parses as log lines.
    d.wait_for("stderr passthrough", secs(10), |v| {
        v["message"].as_str().is_some_and(|m| m.contains("hello-err"))
    });
}

#[test]
fn history_follow_and_pubsub() {
    // Five early lines, one stderr line, then a live line every 100 ms (bounded: 60 s).
    let mut d = Daemon::start(
        "[watchers.talk]\ncmd = \"sh -c 'for i in 1 2 3 4 5; do echo early $i; done; echo warn >&2; \
         i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo live $i; sleep 0.1; done; exec sleep 1000'\"\n",
    );
    d.wait_spawned("talk", 1, secs(10));
    d.wait_msg("control channel ready", None, secs(10));
    let ep = endpoint(&d);
    // History over the protocol, in order.
    let lines = rt().block_on(async {
        let mut c = Client::connect(&ep, secs(5)).await.unwrap();
        let p: Map<String, Value> = json!({"name": "talk", "lines": 1000, "stream": "stdout"})
            .as_object()
            .cloned()
            .unwrap();
        // The child may not have written yet when it is registered: ask
        // again until the five early lines are in the history (bounded).
        let deadline = Instant::now() + secs(10);
        loop {
            let r = c.call("logs", p.clone()).await.unwrap();
            let lines = r["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["line"].as_str().unwrap().to_string())
                .collect::<Vec<_>>();
            if lines.len() >= 5 || Instant::now() > deadline {
                break lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(
        lines[..5],
        ["early 1", "early 2", "early 3", "early 4", "early 5"],
        "{lines:?}"
    );
    // `ringmaster logs -f`: history first (stderr marked), then live lines in order.
    let mut follower = Command::new(BIN)
        .args(["logs", "talk", "-n", "1000", "-f", "--endpoint", &ep])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + secs(20);
    while got.iter().filter(|l: &&String| l.contains("live")).count() < 25 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => got.push(l),
            Err(_) => panic!("follower stalled; got {got:?}"),
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        got[0].starts_with("talk[") && got[0].ends_with("early 1"),
        "{got:?}"
    );
    assert!(
        got.iter().any(|l| l.contains("! warn")),
        "stderr line marked: {got:?}"
    );
    let live: Vec<u32> = got
        .iter()
        .filter(|l| l.contains("| live"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        live.windows(2).all(|w| w[1] == w[0] + 1),
        "live lines in order, none missing or repeated: {live:?}"
    );
    // A pubsub subscriber sees the live lines with their metadata, while a
    // follow lease is held (`logs` with follow = true).
    let r = call(&d, "logs", json!({"name": "talk", "lines": 0, "follow": true}));
    assert_eq!(r["status"], "ok");
    let pubsub = format!("ipc://{}/ringmaster/pubsub.sock", d.dir.path().display());
    rt().block_on(async {
        let mut sub = Subscriber::connect(&pubsub, &["logs.talk.stdout".to_string()])
            .await
            .unwrap();
        let mut prev = None;
        for _ in 0..3 {
            let (topic, v) = tokio::time::timeout(secs(10), sub.next())
                .await
                .expect("a live line")
                .unwrap();
            assert_eq!(topic, "logs.talk.stdout");
            assert!(v["line"].as_str().unwrap().starts_with("live "), "{v}");
            assert!(v["pid"].is_u64() && v["wid"] == 1 && v["stream"] == "stdout");
            let seq = v["seq"].as_u64().unwrap();
            if let Some(p) = prev {
                assert_eq!(seq, p + 1);
            }
            prev = Some(seq);
        }
    });
}

/// Events and `logs -f` name a watcher in lower case; one spelled with
/// capitals must be followed live all the same.
#[test]
fn a_watcher_spelled_with_capitals_is_followed_live() {
    let mut d = Daemon::start(
        "[watchers.TalkLoud]\ncmd = \"sh -c 'i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo live $i; \
         sleep 0.1; done; exec sleep 1000'\"\n",
    );
    d.wait_spawned("TalkLoud", 1, secs(10));
    let ep = endpoint(&d);
    let mut follower = Command::new(BIN)
        .args(["logs", "TalkLoud", "-n", "0", "-f", "--endpoint", &ep])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(secs(20));
    let _ = follower.kill();
    let _ = follower.wait();
    let line = line.expect("a live line of TalkLoud");
    assert!(
        line.starts_with("TalkLoud[") && line.contains("| live "),
        "{line}"
    );
}

#[test]
fn unwritable_log_file_stops_startup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[watchers.w]\ncmd = \"sleep 1\"\n[watchers.w.stdout_stream]\nclass = \"file\"\nfilename = \"/nonexistent/dir/w.log\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg(&p)
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/dir/w.log"), "{err}");
}
