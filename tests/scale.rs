//! Large operations stay proportionate: a big `incr` leaves every other
//! watcher answering promptly, and a tree-mode stop of hundreds of processes
//! (each with a grandchild in its own session) is quick and leaves nothing.

mod common;
use common::*;
use ringmaster::control::client::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn ask(c: &mut Client, cmd: &str, p: Value) -> Value {
    let v = c
        .call(cmd, props(p))
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let want = if cmd == "status" { "active" } else { "ok" };
    assert_eq!(v["status"], want, "{cmd}: {v}");
    v
}

fn pids_of(v: &Value) -> Vec<i32> {
    v["pids"]
        .as_array()
        .unwrap_or_else(|| panic!("no pids in {v}"))
        .iter()
        .map(|p| p.as_i64().expect("numeric pid") as i32)
        .collect()
}

/// Both tests start hundreds of processes and time how the daemon copes: on a
/// small machine running them side by side would time the machine instead.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const INCR_N: usize = 2000;
/// The slowest `list`/`status` of the other watcher allowed while the
/// processes start. With every start prepared on the actors' thread at once,
/// a 2,000-process `incr` held such replies for well over a second here.
const PROMPT: Duration = Duration::from_millis(700);

const INCR_CONFIG: &str = r#"
[watchers.big]
cmd = "sleep 1000"
numprocesses = 0
[watchers.other]
cmd = "sleep 1000"
"#;

#[test]
fn big_incr_leaves_other_watchers_answering() {
    let _one = one_at_a_time();
    let mut d = Daemon::start(INCR_CONFIG);
    d.wait_spawned("other", 1, secs(10));
    d.wait_msg("control channel ready", None, secs(10));
    let ep = endpoint(&d);
    let incr = std::thread::spawn(move || {
        rt().block_on(async move {
            let mut c = Client::connect(&ep, secs(120)).await.expect("connect");
            let t = Instant::now();
            let v = ask(
                &mut c,
                "incr",
                json!({"name": "big", "nb": INCR_N, "waiting": true}),
            )
            .await;
            (v, t.elapsed())
        })
    });
    let r = rt();
    let mut c = r
        .block_on(Client::connect(&endpoint(&d), secs(10)))
        .expect("connect");
    let (mut worst, mut probes) = (Duration::ZERO, 0u32);
    let deadline = Instant::now() + secs(180);
    while !incr.is_finished() {
        assert!(Instant::now() < deadline, "incr of {INCR_N} took over 180 s");
        for cmd in ["list", "status"] {
            let t = Instant::now();
            let v = r.block_on(ask(&mut c, cmd, json!({"name": "other"})));
            worst = worst.max(t.elapsed());
            probes += 1;
            if cmd == "list" {
                assert_eq!(pids_of(&v).len(), 1, "{v}");
            }
        }
    }
    let (v, took) = incr.join().expect("incr thread");
    assert_eq!(v["numprocesses"], INCR_N, "{v}");
    // incr replies once every added process has been spawned.
    let pids = pids_of(&r.block_on(ask(&mut c, "list", json!({"name": "big"}))));
    let _strays = Strays(pids.clone());
    assert_eq!(pids.len(), INCR_N, "pids listed right after the reply");
    let dead: Vec<i32> = pids.iter().copied().filter(|p| !alive(*p)).collect();
    assert!(dead.is_empty(), "listed but not running: {dead:?}");
    eprintln!("incr {INCR_N}: {took:?}; {probes} probes of the other watcher, slowest {worst:?}");
    assert!(probes > 0, "no probe ran while incr ({took:?}) was in progress");
    assert!(
        worst < PROMPT,
        "a list/status of another watcher took {worst:?} during incr {INCR_N} ({took:?})"
    );
    let v = r.block_on(ask(&mut c, "stop", json!({"name": "big", "waiting": true})));
    assert_eq!(v["status"], "ok");
}

const TREE_N: usize = 300;
/// The longest a tree-mode stop of TREE_N processes may take: graceful_timeout
/// (1 s, for the grandchildren that ignore SIGTERM) plus the work. A scan of
/// all of /proc for every process that exits took far longer.
const TREE_STOP: Duration = Duration::from_secs(8);

// Each process has two grandchildren in sessions of their own: one stays its
// child; one is orphaned at once (re-parented to the daemon) and ignores
// SIGTERM, so only the SIGKILL after graceful_timeout ends it.
const TREE_CONFIG: &str = r#"
[ringmaster]
kill_mode = "tree"
[watchers.fan]
cmd = '''sh -c '(setsid sh -c "trap \"\" TERM; echo \$\$ >> {dir}/gc.pids; exec sleep 1000" &); setsid sh -c "echo \$\$ >> {dir}/gc.pids; exec sleep 1000" & wait' '''
numprocesses = 300
graceful_timeout = 1
"#;

fn pids_in(path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn tree_mode_stop_of_hundreds_is_quick_and_leaves_nothing() {
    let _one = one_at_a_time();
    let mut d = Daemon::start(TREE_CONFIG);
    let v = d.wait_msg("process containment", None, secs(10));
    assert_eq!(v["kill_mode"], "tree", "{v}");
    assert_eq!(
        v["fork_events"], true,
        "tree mode runs with fork events here: {v}"
    );
    let leaders = d.wait_spawned("fan", TREE_N, secs(120));
    let mut strays = Strays(leaders.clone());
    let file = d.path("gc.pids");
    let mut grandchildren = Vec::new();
    eventually(
        &format!("{} grandchildren started", 2 * TREE_N),
        secs(120),
        || {
            grandchildren = pids_in(&file);
            grandchildren.len() >= 2 * TREE_N
        },
    );
    strays.0.extend(&grandchildren);
    let orphans = grandchildren
        .iter()
        .filter(|p| proc_status(**p, "PPid:") == d.pid().to_string())
        .count();
    assert!(
        orphans >= TREE_N,
        "{orphans} grandchildren re-parented to the daemon"
    );
    let t = Instant::now();
    let r = call(&d, "stop", json!({"name": "fan", "waiting": true}));
    let took = t.elapsed();
    assert_eq!(r["status"], "ok", "{r}");
    let left: Vec<i32> = strays.0.iter().copied().filter(|p| alive(*p)).collect();
    eprintln!(
        "tree-mode stop of {TREE_N} processes and {} grandchildren: {took:?}",
        grandchildren.len()
    );
    assert!(
        left.is_empty(),
        "{} processes left after the stop: {left:?}",
        left.len()
    );
    assert!(took < TREE_STOP, "tree-mode stop of {TREE_N} took {took:?}");
}
