//! Upgrade in place: what goes on across the exec instead of starting over —
//! the captures' own output pipes (and the line they were in the middle
//! of), `max_age` and watchdog deadlines, the `seq` numbering of published
//! log lines, and a signal the old image took but had not acted on.
//! (tests/upgrade.rs covers the upgrade itself.)

mod common;
use common::*;
use ringmaster::control::client::Subscriber;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn copy_binary(d: &Daemon, name: &str) -> PathBuf {
    let p = d.path(name);
    std::fs::copy(BIN, &p).expect("copy the binary");
    p
}

/// `upgrade` to `binary`, then the new image's "restored" event.
fn upgrade(d: &mut Daemon, binary: &Path) {
    let r = call(d, "upgrade", json!({ "binary": binary.display().to_string() }));
    assert_eq!(r["status"], "ok", "{r}");
    d.wait_msg("upgrade: restored", None, secs(30));
}

/// A script for a child, written before the daemon starts.
fn child_script(dir: &tempfile::TempDir, name: &str, body: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, body).expect("write child script");
    p.display().to_string()
}

fn link(pid: i32, fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|l| l.display().to_string())
}

/// How many fds the daemon holds on the stdout/stderr pipes of `watcher`'s
/// processes (same pipe: same `pipe:[inode]`).
fn output_fds(d: &Daemon, watcher: &str) -> (usize, usize) {
    let r = call(d, "list", json!({ "name": watcher }));
    let kids: Vec<i32> = r["pids"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .filter_map(|p| p.as_i64().map(|p| p as i32))
        .collect();
    let theirs: std::collections::HashSet<String> = kids
        .iter()
        .flat_map(|&k| [link(k, 1), link(k, 2)])
        .flatten()
        .filter(|l| l.starts_with("pipe:"))
        .collect();
    let held = fds(d.pid())
        .into_iter()
        .filter(|&fd| link(d.pid(), fd).is_some_and(|l| theirs.contains(&l)))
        .count();
    (kids.len(), held)
}

#[test]
fn the_daemon_holds_two_fds_per_captured_process_before_and_after_an_upgrade() {
    let mut d = Daemon::start("[watchers.quiet]\ncmd = \"sleep 1000\"\nnumprocesses = 5\n");
    let kids = d.wait_spawned("quiet", 5, secs(10));
    for k in kids {
        wait_asleep(k);
    }
    // Each captured process: its stdout and stderr read ends, nothing more.
    assert_eq!(output_fds(&d, "quiet"), (5, 10));
    let new = copy_binary(&d, "ringmaster-new");
    upgrade(&mut d, &new);
    assert_eq!(output_fds(&d, "quiet"), (5, 10), "after the upgrade");
    // They are the captures' own fds: a process that ends takes its two along.
    let before = fds(d.pid()).len();
    let r = call(&d, "decr", json!({"name": "quiet", "nb": 4}));
    assert_eq!(r["status"], "ok", "{r}");
    eventually("the stopped processes' pipes closed", secs(20), || {
        fds(d.pid()).len() <= before - 8
    });
    assert_eq!(output_fds(&d, "quiet"), (1, 2));
    assert_eq!(d.stop(secs(10)), 0);
}

/// A child writing numbered lines non-stop, most of the time with a line
/// begun but not ended in its pipe (so the exec falls inside a line),
/// across two upgrades: the log file has every line once, whole, in order.
#[test]
fn no_output_line_is_lost_doubled_or_cut_across_upgrades() {
    const LINES: u32 = 6_000;
    let scripts = tempfile::tempdir().expect("tempdir");
    let writer = child_script(
        &scripts,
        "count.py",
        &format!(
            "import os, time\n\
             os.write(1, b'n=1')\n\
             for i in range(1, {LINES} + 1):\n\
             \x20   time.sleep(0.001)\n\
             \x20   os.write(1, b' end\\n' + (b'n=%d' % (i + 1) if i < {LINES} else b'done\\n'))\n\
             time.sleep(1000)\n"
        ),
    );
    let mut d = Daemon::start(&format!(
        "[watchers.count]\ncmd = \"python3 {writer}\"\n\
         [watchers.count.stdout_stream]\nclass = \"file\"\nfilename = \"{{dir}}/count.log\"\n"
    ));
    d.wait_spawned("count", 1, secs(10));
    let log = d.path("count.log");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the first lines", secs(10), || text().lines().count() > 100);
    let new = copy_binary(&d, "ringmaster-new");
    upgrade(&mut d, &new);
    let n = text().lines().count();
    eventually("lines after the upgrade", secs(10), || {
        text().lines().count() > n + 100
    });
    upgrade(&mut d, Path::new(BIN));
    eventually("the last line", secs(60), || text().ends_with("done\n"));

    let all = text();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), LINES as usize + 1, "line count");
    for (i, l) in lines[..LINES as usize].iter().enumerate() {
        assert_eq!(*l, format!("n={} end", i + 1), "line {}", i + 1);
    }
    assert_eq!(d.stop(secs(10)), 0);
}

#[test]
fn max_age_counts_from_the_process_start_not_from_the_upgrade() {
    let mut d = Daemon::start(
        "[watchers.aged]\ncmd = \"sh -c 'echo started; sleep 3; echo waited; exec sleep 1000'\"\n\
         max_age = 6\nmax_age_variance = 0\ngraceful_timeout = 1\n",
    );
    let first = d.wait_spawned("aged", 1, secs(10))[0];
    eventually("3 s into the process's life", secs(10), || {
        d.stdout_text().contains("waited")
    });
    let waited = Instant::now();
    let new = copy_binary(&d, "ringmaster-new");
    upgrade(&mut d, &new);
    let second = d.wait_spawned("aged", 1, secs(15))[0];
    assert_ne!(first, second);
    // Due 6 s after the start, 3 s after "waited"; counted from the
    // upgrade it would come more than 6 s after "waited".
    let took = waited.elapsed();
    assert!(took < Duration::from_secs(5), "replaced {took:?} after 'waited'");
    assert_eq!(d.stop(secs(10)), 0);
}

#[test]
fn the_watchdog_deadline_is_kept_across_an_upgrade() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let pinger = child_script(
        &scripts,
        "ping.py",
        "import os, socket, sys, time\n\
         addr = os.environ['NOTIFY_SOCKET']\n\
         if addr.startswith('@'):\n\
         \x20   addr = '\\0' + addr[1:]\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.sendto(b'READY=1', addr)\n\
         s.sendto(b'WATCHDOG=1', addr)\n\
         time.sleep(3)\n\
         print('quiet', flush=True)\n\
         time.sleep(1000)\n",
    );
    let mut d = Daemon::start(&format!(
        "[watchers.dog]\ncmd = \"python3 {pinger}\"\ngraceful_timeout = 1\n\
         [watchers.dog.ready]\ntype = \"notify\"\nwatchdog_timeout = \"6s\"\n"
    ));
    let first = d.wait_spawned("dog", 1, secs(10))[0];
    d.wait_msg("ready", Some("dog"), secs(10));
    eventually("3 s since the last ping", secs(10), || {
        d.stdout_text().contains("quiet")
    });
    let quiet = Instant::now();
    let new = copy_binary(&d, "ringmaster-new");
    upgrade(&mut d, &new);
    let second = d.wait_spawned("dog", 1, secs(15))[0];
    assert_ne!(first, second);
    // Due 6 s after the ping, 3 s after "quiet"; armed again at the
    // upgrade it would come more than 6 s after "quiet".
    let took = quiet.elapsed();
    assert!(took < Duration::from_secs(5), "replaced {took:?} after 'quiet'");
    assert_eq!(d.stop(secs(10)), 0);
}

/// The next published line of `logs.talk.stdout`, as (line number, seq).
async fn next_line(sub: &mut Subscriber) -> (u64, u64) {
    let (topic, v): (String, Value) = tokio::time::timeout(secs(10), sub.next())
        .await
        .expect("a published line")
        .expect("pubsub");
    assert_eq!(topic, "logs.talk.stdout");
    let n = v["line"]
        .as_str()
        .and_then(|l| l.strip_prefix("line "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{v}"));
    (n, v["seq"].as_u64().unwrap_or_else(|| panic!("{v}")))
}

#[test]
fn published_log_lines_keep_their_seq_numbering_across_an_upgrade() {
    let mut d = Daemon::start(
        "[ringmaster]\npublish_logs = true\n\
         [watchers.talk]\ncmd = \"sh -c 'i=0; while true; do i=$((i+1)); echo line $i; sleep 0.02; done'\"\n",
    );
    d.wait_spawned("talk", 1, secs(10));
    let topic = ["logs.talk.stdout".to_string()];
    rt().block_on(async {
        let mut sub = Subscriber::connect(&pubsub(&d), &topic).await.expect("subscribe");
        for _ in 0..3 {
            let (n, seq) = next_line(&mut sub).await;
            assert_eq!(seq, n, "every line published since the start");
        }
    });
    let new = copy_binary(&d, "ringmaster-new");
    upgrade(&mut d, &new);
    rt().block_on(async {
        let mut sub = Subscriber::connect(&pubsub(&d), &topic).await.expect("subscribe");
        for _ in 0..3 {
            let (n, seq) = next_line(&mut sub).await;
            assert_eq!(seq, n, "the numbering goes on from the old image's");
        }
    });
    assert_eq!(d.stop(secs(10)), 0);
}

/// The old image takes a SIGTERM (its handler ran, nothing acted on it yet)
/// at the last moment before the exec (`RINGMASTER_UPGRADE_TEST_SIGNAL`):
/// the new image gets it and stops gracefully.
#[test]
fn a_sigterm_taken_just_before_the_exec_is_acted_on_by_the_new_image() {
    let mut d = Daemon::start_with(
        "[watchers.sleeper]\ncmd = \"sleep 1000\"\n",
        "toml",
        &[("RINGMASTER_UPGRADE_TEST_SIGNAL", "TERM")],
    );
    let pid = d.wait_spawned("sleeper", 1, secs(10))[0];
    let new = copy_binary(&d, "ringmaster-new");
    let r = call(&d, "upgrade", json!({ "binary": new.display().to_string() }));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(d.wait_exit(secs(30)), 0, "a graceful stop after the upgrade");
    assert!(d.log.iter().any(|v| v["message"] == "upgrade: restored"));
    assert!(d.log.iter().any(|v| v["message"] == "all watchers stopped"));
    assert!(!alive(pid));
}

/// Each thread of `pid`: (name, whether it blocks every signal the daemon
/// handles: TERM, INT, QUIT, HUP, USR1, USR2, CHLD).
fn threads_blocking(pid: i32) -> Vec<(String, bool)> {
    let handled: u64 = [15, 2, 3, 1, 10, 12, 17].iter().fold(0, |m, s| m | 1 << (s - 1));
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    let mut out = Vec::new();
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue; // a thread that just ended
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("{k} in {status}"))
        };
        let blocked = u64::from_str_radix(&field("SigBlk:"), 16).expect("SigBlk");
        out.push((field("Name:"), blocked & handled == handled));
    }
    out
}

/// Only the signal thread takes the handled signals: once it blocks them
/// before the exec, a signal cannot be taken by a thread the exec ends.
#[test]
fn only_the_signal_thread_takes_the_handled_signals_before_and_after_an_upgrade() {
    let mut d = Daemon::start("[watchers.quiet]\ncmd = \"sleep 1000\"\n");
    d.wait_spawned("quiet", 1, secs(10));
    // The signal thread starts once the image has restored: wait for it.
    let check = |d: &Daemon| {
        let taking = |threads: &[(String, bool)]| -> Vec<String> {
            threads
                .iter()
                .filter(|(_, blocks)| !blocks)
                .map(|(name, _)| name.clone())
                .collect()
        };
        eventually("a thread that takes them", secs(10), || {
            !taking(&threads_blocking(d.pid())).is_empty()
        });
        let threads = threads_blocking(d.pid());
        assert_eq!(taking(&threads), ["ringmaster-sign"], "threads: {threads:?}");
    };
    check(&d);
    let new = copy_binary(&d, "ringmaster-new");
    upgrade(&mut d, &new);
    check(&d);
    assert_eq!(d.stop(secs(10)), 0);
}
