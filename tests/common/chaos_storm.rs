//! The storm half of tests/chaos.rs: concurrent clients sending random
//! commands, and a killer SIGKILLing the daemon's children.

use crate::common::{props, rt};
use crate::procinfo;
use ringmaster::control::client::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Base watchers: name, initial numprocesses. `flaky` crashes on its own.
pub const BASE: &[(&str, u32)] = &[("a", 2), ("b", 0), ("c", 3), ("flaky", 2)];
pub const EXTRAS: &[&str] = &["x0", "x1", "x2"];
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters shared by every thread.
#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub replied: AtomicU64,
    pub no_reply: AtomicU64,
    pub kills: AtomicU64,
    pub by_kind: Mutex<BTreeMap<String, u64>>,
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Per client: requests sent without a reply (timeout or transport error).
    pub unanswered: Mutex<Vec<String>>,
    /// The last commands sent to each watcher, for failure messages.
    pub recent: Mutex<BTreeMap<String, VecDeque<String>>>,
}

impl Stats {
    pub fn note(&self, watcher: &str, line: String) {
        let mut r = self.recent.lock().unwrap();
        let q = r.entry(watcher.to_string()).or_default();
        if q.len() == 12 {
            q.pop_front();
        }
        q.push_back(line);
    }

    pub fn summary(&self) -> Value {
        json!({
            "sent": self.sent.load(Ordering::SeqCst),
            "replied": self.replied.load(Ordering::SeqCst),
            "no_reply": self.no_reply.load(Ordering::SeqCst),
            "kills": self.kills.load(Ordering::SeqCst),
            "by_kind": *self.by_kind.lock().unwrap(),
            "errors": *self.errors.lock().unwrap(),
        })
    }
}

/// One random command for `name` (a base watcher or an extra).
pub fn random_command(rng: &mut fastrand::Rng, name: &str, extra: bool) -> (&'static str, Value) {
    let waiting = rng.bool();
    let pick = if extra { rng.u32(0..14) } else { rng.u32(0..12) };
    match pick {
        0 => (
            "incr",
            json!({"name": name, "nb": rng.u32(1..3), "waiting": waiting}),
        ),
        1 => (
            "decr",
            json!({"name": name, "nb": rng.u32(1..3), "waiting": waiting}),
        ),
        2 | 3 => (
            "set",
            json!({"name": name, "options": {"numprocesses": rng.u32(0..5)}, "waiting": waiting}),
        ),
        4 => ("start", json!({"name": name, "waiting": waiting})),
        5 => ("stop", json!({"name": name, "waiting": waiting})),
        6 => ("restart", json!({"name": name, "waiting": waiting})),
        7 => ("reload", json!({"name": name, "waiting": waiting})),
        // TERM ends a `sleep`, so the watcher must replace it; CONT is a no-op.
        8 => (
            "signal",
            json!({"name": name, "signum": if rng.bool() { "TERM" } else { "CONT" }}),
        ),
        9 => ("list", json!({"name": name})),
        10 => ("status", json!({"name": name})),
        11 => ("kill", json!({"name": name, "signum": 9, "waiting": waiting})),
        12 => (
            "add",
            json!({"name": name, "cmd": "sleep", "args": "1000", "start": rng.bool(),
                   "waiting": waiting,
                   "options": {"numprocesses": rng.u32(0..3), "graceful_timeout": 2,
                               "restart": {"max_retry": -1, "max_delay": "300ms"}}}),
        ),
        _ => ("rm", json!({"name": name, "waiting": waiting})),
    }
}

/// A DEALER client, or a REQ socket (the daemon answers both).
pub enum Conn {
    Dealer(Client),
    Req(zeromq::ReqSocket),
}

impl Conn {
    pub async fn open(ep: &str, req: bool) -> Conn {
        use zeromq::Socket;
        if req {
            let mut s = zeromq::ReqSocket::new();
            s.connect(ep)
                .await
                .unwrap_or_else(|e| panic!("REQ connect {ep}: {e}"));
            Conn::Req(s)
        } else {
            Conn::Dealer(
                Client::connect(ep, CALL_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| panic!("connect {ep}: {e}")),
            )
        }
    }

    /// The reply, or why none came.
    pub async fn call(&mut self, cmd: &str, p: Value) -> Result<Value, String> {
        use zeromq::{SocketRecv, SocketSend};
        match self {
            Conn::Dealer(c) => c.call(cmd, props(p)).await.map_err(|e| e.to_string()),
            Conn::Req(s) => {
                let id = ringmaster::control::client::random_hex_id();
                let body = json!({"command": cmd, "properties": p, "id": id}).to_string();
                let exchange = async {
                    s.send(zeromq::ZmqMessage::from(body))
                        .await
                        .map_err(|e| e.to_string())?;
                    let m = s.recv().await.map_err(|e| e.to_string())?;
                    let frame = m.into_vec().pop().unwrap_or_default();
                    serde_json::from_slice::<Value>(&frame).map_err(|e| format!("reply not JSON: {e}"))
                };
                let v = tokio::time::timeout(CALL_TIMEOUT, exchange)
                    .await
                    .map_err(|_| format!("no reply within {CALL_TIMEOUT:?}"))??;
                if v["id"] != json!(id) {
                    return Err(format!("reply for another id: {v}"));
                }
                Ok(v)
            }
        }
    }
}

pub struct Budget {
    pub seconds: u64,
    pub kills: u64,
    pub start: Instant,
}

impl Budget {
    pub fn over(&self, stats: &Stats) -> bool {
        let t = self.start.elapsed();
        let hard = t >= Duration::from_secs(self.seconds * 3);
        hard || (t >= Duration::from_secs(self.seconds) && stats.kills.load(Ordering::SeqCst) >= self.kills)
    }
}

pub fn client_thread(
    id: usize,
    seed: u64,
    ep: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        rt().block_on(async {
            let mut conn = Conn::open(&ep, id == 0).await;
            let (mut sent, mut replied) = (0u64, 0u64);
            // Bounded: the main thread sets `stop` when the budget is spent.
            while !stop.load(Ordering::SeqCst) {
                let extra = rng.u32(0..4) == 0;
                let name = if extra {
                    EXTRAS[rng.usize(0..EXTRAS.len())]
                } else {
                    BASE[rng.usize(0..BASE.len())].0
                };
                let (cmd, p) = random_command(&mut rng, name, extra);
                stats.note(name, format!("client {id}: {cmd} {p}"));
                *stats.by_kind.lock().unwrap().entry(cmd.to_string()).or_default() += 1;
                stats.sent.fetch_add(1, Ordering::SeqCst);
                sent += 1;
                match conn.call(cmd, p.clone()).await {
                    Ok(r) => {
                        replied += 1;
                        stats.replied.fetch_add(1, Ordering::SeqCst);
                        if r["status"] == "error" {
                            let key = format!("{cmd}: errno {}", r["errno"]);
                            *stats.errors.lock().unwrap().entry(key).or_default() += 1;
                        }
                    }
                    Err(e) => {
                        let mut u = stats.unanswered.lock().unwrap();
                        if u.len() < 100 {
                            u.push(format!("client {id}: {cmd} {p}: {e}"));
                        }
                        drop(u);
                        stats.no_reply.fetch_add(1, Ordering::SeqCst);
                        // A REQ socket cannot send again without a reply.
                        if matches!(conn, Conn::Req(_)) {
                            break;
                        }
                    }
                }
            }
            stats.note("*", format!("client {id}: sent {sent}, replied {replied}"));
        });
    })
}

pub fn killer_thread(
    seed: u64,
    ep: String,
    daemon: i32,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    grandchildren: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut names: Vec<&str> = BASE.iter().map(|b| b.0).chain(EXTRAS.iter().copied()).collect();
        if grandchildren {
            names.push("gc");
        }
        rt().block_on(async {
            let mut c = Client::connect(&ep, CALL_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("killer connect {ep}: {e}"));
            while !stop.load(Ordering::SeqCst) {
                let name = names[rng.usize(0..names.len())];
                let Ok(r) = c.call("list", props(json!({"name": name}))).await else {
                    continue;
                };
                let pids: Vec<i32> = r["pids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_i64().map(|p| p as i32)).collect())
                    .unwrap_or_default();
                if pids.is_empty() {
                    continue;
                }
                let pid = pids[rng.usize(0..pids.len())];
                // Only a live child of the daemon: never a recycled pid.
                if procinfo::stat(pid).is_some_and(|p| p.ppid == daemon && p.state != 'Z') {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    stats.kills.fetch_add(1, Ordering::SeqCst);
                    stats.note(name, format!("killer: SIGKILL {pid}"));
                }
                // Pacing, not synchronisation: about 50 kills a second.
                tokio::time::sleep(Duration::from_millis(rng.u64(5..35))).await;
            }
        });
    })
}
