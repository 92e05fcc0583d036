//! How long the daemon does not answer during an upgrade in place, with 10
//! and with 1,000 supervised processes (`bench/upgrade`, or
//! `cargo bench --bench upgrade`; under `cargo test --all-targets` a
//! 10-process smoke pass).
//!
//! A prober sends `globaloptions` back to back, each on a fresh connection
//! (the old image's connections end at the exec) with a 25 ms timeout,
//! while another client asks for `upgrade` to a copy of the binary (so the
//! binary id tells which image answered). Reported per round:
//! - `reply`: the `upgrade` request's latency (pre-flight, freeze, snapshot);
//! - `pause`: the longest gap between two answers to the prober across the
//!   upgrade — how long control requests went unanswered;
//! - `total`: from sending `upgrade` to the first answer of the new binary.

use ringmaster::control::client::Client;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringmaster");
/// A request lost with the old image's connection costs at most this much
/// extra pause in the figures.
const PROBE_TIMEOUT: Duration = Duration::from_millis(25);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let plan: &[(u32, usize)] = if full { &[(10, 5), (1000, 5)] } else { &[(10, 1)] };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("upgrade in place: control requests across the exec (medians of the rounds, max in brackets)");
    println!(
        "{:>9}  {:>16}  {:>16}  {:>16}",
        "processes", "upgrade reply", "pause", "total"
    );
    for &(n, rounds) in plan {
        let mut runs = Vec::new();
        for _ in 0..rounds {
            runs.push(rt.block_on(round(n)));
        }
        let col = |f: fn(&Run) -> Duration| {
            let mut v: Vec<Duration> = runs.iter().map(f).collect();
            v.sort();
            format!("{:>6.1} ms [{:>5.1}]", ms(v[v.len() / 2]), ms(v[v.len() - 1]))
        };
        println!(
            "{:>9}  {}  {}  {}",
            n,
            col(|r| r.reply),
            col(|r| r.pause),
            col(|r| r.total)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Run {
    reply: Duration,
    pause: Duration,
    total: Duration,
}

/// The daemon, killed (with its process groups) when dropped.
struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(ep: &str, cmd: &str, p: Value, timeout: Duration) -> Option<Value> {
    let mut c = Client::connect(ep, timeout).await.ok()?;
    let props: Map<String, Value> = p.as_object().cloned().unwrap_or_default();
    tokio::time::timeout(timeout, c.call(cmd, props)).await.ok()?.ok()
}

async fn round(n: u32) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        format!("[watchers.sleepers]\ncmd = \"sleep 3600\"\nnumprocesses = {n}\n"),
    )
    .expect("write config");
    let copy = dir.path().join("ringmaster-new");
    std::fs::copy(BIN, &copy).expect("copy the binary");
    let child = Command::new(BIN)
        .arg("run")
        .arg(&cfg)
        .args(["--log-level", "warn"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringmaster");
    let ep = format!("ipc://{}/ringmaster/control.sock", dir.path().display());
    let d = Daemon { child, _dir: dir };
    wait_all_running(&ep, n).await;
    let before = binary_id(&ep).await.expect("binary id");

    // Prober: answers (time, binary id), until the new binary has answered for 200 ms.
    let prober = {
        let ep = ep.clone();
        let before = before.clone();
        async move {
            let mut answers: Vec<(Instant, bool)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut new_since: Option<Instant> = None;
            while Instant::now() < deadline {
                if let Some(id) = binary_id_within(&ep, PROBE_TIMEOUT).await {
                    let now = Instant::now();
                    let is_new = id != before;
                    answers.push((now, is_new));
                    if is_new && now - *new_since.get_or_insert(now) > Duration::from_millis(200) {
                        break;
                    }
                }
            }
            answers
        }
    };
    let upgrade = async {
        // Let the prober run first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        let r = call(
            &ep,
            "upgrade",
            json!({"binary": copy.display().to_string()}),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            r.as_ref().map(|r| r["status"].clone()),
            Some(json!("ok")),
            "{r:?}"
        );
        (t0, t0.elapsed())
    };
    let (answers, (t0, reply)) = tokio::join!(prober, upgrade);
    let first_new = answers
        .iter()
        .find(|a| a.1)
        .map(|a| a.0)
        .expect("the new binary answered");
    let pause = answers
        .windows(2)
        .filter(|w| w[1].0 >= t0)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    drop(d);
    Run {
        reply,
        pause,
        total: first_new - t0,
    }
}

async fn binary_id_within(ep: &str, t: Duration) -> Option<String> {
    let r = call(ep, "globaloptions", json!({}), t).await?;
    r["options"]["binary_id"].as_str().map(str::to_string)
}

async fn binary_id(ep: &str) -> Option<String> {
    binary_id_within(ep, Duration::from_secs(5)).await
}

async fn wait_all_running(ep: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let path = ep.trim_start_matches("ipc://");
    while Instant::now() < deadline {
        if Path::new(path).exists() {
            if let Some(r) = call(ep, "list", json!({"name": "sleepers"}), Duration::from_secs(5)).await {
                if r["pids"].as_array().map_or(0, Vec::len) == n as usize {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} processes not running within 120 s");
}
