//! Log capture against real pipes and real child processes.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ringmaster::streams::{LogHub, Piece, StreamConfig, StreamKind, WatcherLogs, MAX_LINE};
use tokio::sync::broadcast::error::RecvError;

const T: Duration = Duration::from_secs(30);

fn hub() -> LogHub {
    LogHub::start(1000).expect("hub")
}

fn file_cfg(path: &Path, extra: &str) -> StreamConfig {
    let s = format!(
        "class = \"file\"\nfilename = {:?}\n{extra}",
        path.display().to_string()
    );
    toml::from_str(&s).expect("config")
}

/// Spawn `python3 -c script args…` with stdout piped; return the child and
/// the read end of its stdout.
fn spawn_py(script: &str, args: &[&str]) -> (Child, OwnedFd) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python3");
    let out: OwnedFd = child.stdout.take().expect("stdout").into();
    (child, out)
}

async fn reap(mut child: Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join")
}

/// Poll `f` until it holds; fail after `limit`.
async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn seen_number(logs: &WatcherLogs) -> u64 {
    logs.history(None, 1, None)
        .last()
        .and_then(|r| {
            std::str::from_utf8(&r.line[..8.min(r.line.len())])
                .ok()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Numbers at the start of every line of `data` (all lines must be whole).
fn numbers(data: &[u8]) -> Vec<u64> {
    assert!(
        data.is_empty() || data.ends_with(b"\n"),
        "file does not end with a newline"
    );
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let s = std::str::from_utf8(l).expect("utf8");
            s.split(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("bad line {s:?}"))
        })
        .collect()
}

fn assert_contiguous(nums: &[u64], first: u64) {
    for (i, n) in nums.iter().enumerate() {
        assert_eq!(*n, first + i as u64, "gap or duplicate at index {i}");
    }
}

// A writer of numbered lines, one write(2) per line (atomic on a pipe).
const NUMBERED: &str = r#"
import os, sys
n = int(sys.argv[1]) if len(sys.argv) > 1 else 10**9
for i in range(1, n + 1):
    os.write(1, b"%08d %s\n" % (i, b"x" * 60))
"#;

#[tokio::test]
async fn sigkill_mid_burst_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let counter = dir.path().join("count");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 100)
        .unwrap();
    // The child records, after each line, how many it has written.
    let script = r#"
import os, sys
c = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
i = 0
while True:
    i += 1
    os.write(1, b"%08d %s\n" % (i, b"y" * 60))
    os.pwrite(c, b"%012d" % i, 0)
"#;
    let (child, fd) = spawn_py(script, &[counter.to_str().unwrap()]);
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    wait_until("20000 lines", T, || seen_number(&logs) >= 20_000).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    reap(child).await;
    let stats = tokio::time::timeout(T, done)
        .await
        .expect("EOF")
        .expect("capture");
    assert!(stats.eof);
    logs.close().await;
    let reported: u64 = fs::read_to_string(&counter).unwrap().trim().parse().unwrap();
    let nums = numbers(&fs::read(&log).unwrap());
    assert_contiguous(&nums, 1);
    let last = *nums.last().unwrap();
    assert!(
        last >= reported,
        "child reported {reported} lines, file has {last}"
    );
    assert!(last <= reported + 1);
    assert_eq!(stats.lines, last);
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_mid_burst_keeps_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let report = dir.path().join("report");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 100)
        .unwrap();
    // Reports the number of lines written successfully once the pipe breaks.
    let script = r#"
import os, sys
i = 0
try:
    while True:
        os.write(1, b"%08d %s\n" % (i + 1, b"z" * 60))
        i += 1
except BrokenPipeError:
    open(sys.argv[1], "w").write(str(i))
"#;
    let (child, fd) = spawn_py(script, &[report.to_str().unwrap()]);
    let pid = Pid::from_raw(child.id() as i32);
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    wait_until("5000 lines", T, || seen_number(&logs) >= 5_000).await;
    // Freeze the writer so that "written before shutdown" is exact.
    kill(pid, Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    hub.shutdown(Duration::from_millis(300)).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "shutdown not bounded");
    let stats = tokio::time::timeout(T, done).await.expect("done").expect("stats");
    assert!(!stats.eof);
    kill(pid, Signal::SIGCONT).unwrap();
    reap(child).await;
    let written: u64 = fs::read_to_string(&report).unwrap().trim().parse().unwrap();
    let nums = numbers(&fs::read(&log).unwrap());
    assert_contiguous(&nums, 1);
    assert_eq!(
        *nums.last().unwrap(),
        written,
        "every line written before shutdown is in the file"
    );
}

#[tokio::test]
async fn shutdown_while_child_keeps_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 100)
        .unwrap();
    let (child, fd) = spawn_py(NUMBERED, &[]);
    let pid = child.id();
    let _done = logs.capture(fd, pid, 1, StreamKind::Stdout);
    wait_until("3000 lines", T, || seen_number(&logs) >= 3_000).await;
    let seen = seen_number(&logs);
    hub.shutdown(Duration::from_millis(200)).await;
    // Pipe closed: the child dies of EPIPE.
    reap(child).await;
    let nums = numbers(&fs::read(&log).unwrap());
    assert_contiguous(&nums, 1);
    assert!(*nums.last().unwrap() >= seen);
}

fn read_maybe_gz(p: &Path) -> Vec<u8> {
    let data = fs::read(p).unwrap();
    if p.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        data
    }
}

async fn size_rotation(gzip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rot.log");
    let hub = hub();
    let extra = format!("max_bytes = 10000\nbackup_count = 3\ngzip = {gzip}");
    let logs = hub
        .add_watcher("w", &file_cfg(&log, &extra), &StreamConfig::null(), 10)
        .unwrap();
    let (child, fd) = spawn_py(NUMBERED, &["3000"]);
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    tokio::time::timeout(T, done).await.unwrap().unwrap();
    reap(child).await;
    logs.close().await;
    hub.shutdown(Duration::from_secs(1)).await;
    let ext = if gzip { ".gz" } else { "" };
    let mut all = Vec::new();
    for i in (1..=3).rev() {
        let p = PathBuf::from(format!("{}.{i}{ext}", log.display()));
        let data = read_maybe_gz(&p);
        assert!(data.len() < 10_000, "{} has {} bytes", p.display(), data.len());
        assert!(data.len() > 9_000);
        all.extend(data);
        if gzip {
            assert!(!PathBuf::from(format!("{}.{i}", log.display())).exists());
        }
    }
    assert!(!PathBuf::from(format!("{}.4{ext}", log.display())).exists());
    let cur = fs::read(&log).unwrap();
    assert!(cur.len() < 10_000);
    all.extend(cur);
    let nums = numbers(&all);
    assert_eq!(*nums.last().unwrap(), 3000);
    assert_contiguous(&nums, nums[0]);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn size_rotation_keeps_backups_in_order() {
    size_rotation(false).await;
}

#[tokio::test]
async fn size_rotation_with_gzip() {
    size_rotation(true).await;
}

// Writes numbered lines until SIGTERM, a little slower than flat out so that
// the burst spans the external rotation comfortably.
const UNTIL_TERM: &str = r#"
import os, signal, sys, time
stop = False
def h(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, h)
i = 0
while not stop:
    for _ in range(100):
        i += 1
        os.write(1, b"%08d %s\n" % (i, b"r" * 40))
    time.sleep(0.001)
"#;

async fn external_rotation(on_demand: bool) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let moved = dir.path().join("app.log.1");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 100)
        .unwrap();
    let (child, fd) = spawn_py(UNTIL_TERM, &[]);
    let pid = child.id();
    let done = logs.capture(fd, pid, 1, StreamKind::Stdout);
    wait_until("2000 lines", T, || seen_number(&logs) >= 2_000).await;
    fs::rename(&log, &moved).unwrap();
    if on_demand {
        // What SIGUSR1 does.
        hub.reopen_all();
    }
    let limit = if on_demand {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(5)
    };
    wait_until("the new file", limit, || {
        fs::metadata(&log).is_ok_and(|m| m.len() > 1000)
    })
    .await;
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    reap(child).await;
    let stats = tokio::time::timeout(T, done).await.unwrap().unwrap();
    logs.close().await;
    let mut all = fs::read(&moved).unwrap();
    let old = numbers(&all).len();
    assert!(old >= 2000);
    all.extend(fs::read(&log).unwrap());
    let nums = numbers(&all);
    assert!(nums.len() > old);
    assert_contiguous(&nums, 1);
    assert_eq!(nums.len() as u64, stats.lines);
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn logrotate_rename_detected() {
    external_rotation(false).await;
}

#[tokio::test]
async fn logrotate_rename_then_reopen() {
    external_rotation(true).await;
}

#[tokio::test]
async fn logrotate_copytruncate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let copy = dir.path().join("app.log.1");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 100)
        .unwrap();
    let (child, fd) = spawn_py(UNTIL_TERM, &[]);
    let pid = child.id();
    let done = logs.capture(fd, pid, 1, StreamKind::Stdout);
    // 2000 lines on disk (the history runs ahead of the writer thread).
    wait_until("2000 lines on disk", T, || {
        fs::metadata(&log).is_ok_and(|m| m.len() >= 2000 * 50)
    })
    .await;
    // What logrotate's copytruncate does.
    fs::copy(&log, &copy).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    // The copy races with our writes (as with logrotate): it may end inside
    // a line; count only its complete lines.
    let copied = fs::read(&copy).unwrap();
    let complete = copied.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let copied_last = *numbers(&copied[..complete]).last().unwrap();
    let target = seen_number(&logs) + 2000;
    wait_until("more lines", T, || seen_number(&logs) >= target).await;
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    reap(child).await;
    tokio::time::timeout(T, done).await.unwrap().unwrap();
    logs.close().await;
    let data = fs::read(&log).unwrap();
    // O_APPEND: no hole of NULs where the old content was.
    assert!(!data.contains(&0u8), "sparse hole after copytruncate");
    let nums = numbers(&data);
    // Lines written between copy and truncate are lost (inherent to
    // copytruncate); everything after is there, in order.
    assert!(nums[0] > copied_last);
    assert_contiguous(&nums, nums[0]);
    assert!(data.len() < 2 * (fs::metadata(&copy).unwrap().len() as usize) + 200_000);
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn partial_last_line_and_huge_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("big.log");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 100)
        .unwrap();
    // 1 MiB line of varying bytes, a 200 KiB line of 3-byte UTF-8 chars,
    // then a last line without newline, all in odd-sized writes.
    let script = r#"
import os, sys
big = bytes((i * 7 + i // 251) % 256 for i in range(1 << 20)).replace(b"\n", b"N")
euro = "€".encode() * 70000
data = big + b"\n" + euro + b"\nshort\ntail-without-newline"
sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
open(sys.argv[1], "wb").write(data)
"#;
    let expect_path = dir.path().join("expected");
    let (child, fd) = spawn_py(script, &[expect_path.to_str().unwrap()]);
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    let stats = tokio::time::timeout(T, done).await.unwrap().unwrap();
    reap(child).await;
    assert_eq!(stats.lines, 4);
    let mut expected = fs::read(&expect_path).unwrap();
    expected.push(b'\n');
    let got = fs::read(&log).unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "raw file output differs from what the child wrote"
    );

    // Records: the big line in MAX_LINE pieces, each € piece valid UTF-8.
    let recs = logs.history(None, 100, None);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for r in &recs {
        assert!(r.line.len() <= MAX_LINE);
        if r.piece.is_continuation() {
            lines.last_mut().unwrap().extend_from_slice(&r.line);
        } else {
            lines.push(r.line.to_vec());
        }
    }
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].len(), 1 << 20);
    assert_eq!(recs[0].piece, Piece::First);
    for r in recs.iter().filter(|r| r.line.starts_with("€".as_bytes())) {
        assert!(std::str::from_utf8(&r.line).is_ok());
    }
    assert_eq!(lines[3], b"tail-without-newline");
    logs.close().await;
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn history_and_followers() {
    let hub = hub();
    let logs = hub
        .add_watcher("w", &StreamConfig::null(), &StreamConfig::null(), 100)
        .unwrap();
    let (child, fd) = spawn_py(NUMBERED, &["1000"]);
    tokio::time::timeout(T, logs.capture(fd, child.id(), 1, StreamKind::Stdout))
        .await
        .unwrap()
        .unwrap();
    reap(child).await;
    let h = logs.history(None, 1000, None);
    assert_eq!(h.len(), 100);
    let nums = numbers(
        &h.iter()
            .flat_map(|r| [&r.line[..], b"\n"].concat())
            .collect::<Vec<u8>>(),
    );
    assert_contiguous(&nums, 901);
    assert_eq!(logs.history(None, 10, None).len(), 10);
    assert_eq!(logs.history(Some(StreamKind::Stderr), 10, None).len(), 0);
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    assert!(logs.history(None, 10, Some(later)).is_empty());
    assert_eq!(
        logs.history(Some(StreamKind::Stdout), 10, Some(h[0].time)).len(),
        10
    );
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn follower_sees_history_then_live_in_order() {
    let hub = hub();
    let logs = hub
        .add_watcher("w", &StreamConfig::null(), &StreamConfig::null(), 60_000)
        .unwrap();
    // 20000 lines, the first half before the follower attaches, the rest
    // while it is attaching and after.
    let script = r#"
import os, sys
for i in range(1, 10001):
    os.write(1, b"%08d\n" % i)
sys.stdin.readline()
for i in range(10001, 20001):
    os.write(1, b"%08d\n" % i)
"#;
    let (mut child, fd) = spawn_py(script, &[]);
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    wait_until("first half", T, || seen_number(&logs) >= 5_000).await;
    let (hist, mut rx) = logs.follow(Some(StreamKind::Stdout), 100_000, None);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut got: Vec<u64> = hist
        .iter()
        .map(|r| std::str::from_utf8(&r.line).unwrap().parse().unwrap())
        .collect();
    while got.last() != Some(&20_000) {
        let r = tokio::time::timeout(T, rx.recv())
            .await
            .expect("live line")
            .expect("no lag");
        got.push(std::str::from_utf8(&r.line).unwrap().parse().unwrap());
    }
    assert_contiguous(&got, 1);
    tokio::time::timeout(T, done).await.unwrap().unwrap();
    reap(child).await;
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn stalled_follower_lags_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("f.log");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 1000)
        .unwrap();
    let mut rx = logs.subscribe();
    let (child, fd) = spawn_py(NUMBERED, &["50000"]);
    // Never reading `rx` must not hold anything back.
    let stats = tokio::time::timeout(T, logs.capture(fd, child.id(), 1, StreamKind::Stdout))
        .await
        .expect("capture finished although a follower is stalled")
        .unwrap();
    reap(child).await;
    assert_eq!(stats.lines, 50_000);
    match rx.recv().await {
        Err(RecvError::Lagged(n)) => assert!(n >= 40_000, "lagged {n}"),
        other => panic!("expected Lagged, got {other:?}"),
    }
    let mut last = 0u64;
    while let Ok(r) = rx.try_recv() {
        let n: u64 = std::str::from_utf8(&r.line[..8]).unwrap().parse().unwrap();
        assert!(n > last);
        last = n;
    }
    assert_eq!(last, 50_000);
    logs.close().await;
    assert_eq!(numbers(&fs::read(&log).unwrap()).len(), 50_000);
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn json_lines_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("j.log");
    let hub = hub();
    let cfg = file_cfg(&log, "format = \"json\"");
    let logs = hub.add_watcher("web", &cfg, &cfg, 100).unwrap();
    let script = r#"
import os
os.write(1, b'plain\n"quoted" \\ back\\slash\n\xff\xfe bad utf8\ncaf\xc3\xa9\n' + "€".encode() * 30000 + b"\nend")
"#;
    let (child, fd) = spawn_py(script, &[]);
    let pid = child.id();
    tokio::time::timeout(T, logs.capture(fd, pid, 7, StreamKind::Stdout))
        .await
        .unwrap()
        .unwrap();
    reap(child).await;
    logs.close().await;
    let text = fs::read_to_string(&log).expect("JSON output is UTF-8");
    let vals: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let lines: Vec<&str> = vals.iter().map(|v| v["line"].as_str().unwrap()).collect();
    assert_eq!(lines[0], "plain");
    assert_eq!(lines[1], "\"quoted\" \\ back\\slash");
    assert_eq!(lines[2], "\u{fffd}\u{fffd} bad utf8");
    assert_eq!(lines[3], "café");
    assert_eq!(*lines.last().unwrap(), "end");
    let euro: String = vals[4..vals.len() - 1]
        .iter()
        .map(|v| v["line"].as_str().unwrap())
        .collect();
    assert_eq!(euro, "€".repeat(30000), "pieces cut inside a character");
    assert_eq!(vals[4]["piece"], "first");
    assert_eq!(vals[vals.len() - 2]["piece"], "last");
    for v in &vals {
        assert_eq!(v["watcher"], "web");
        assert_eq!(v["pid"], pid);
        assert_eq!(v["wid"], 7);
        assert_eq!(v["stream"], "stdout");
        chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).expect("RFC 3339 time");
    }
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn time_format_prefix_and_shared_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("p.log");
    let hub = hub();
    let cfg = file_cfg(&log, "time_format = \"%Y\"");
    // Two processes writing into one file.
    let logs = hub.add_watcher("w", &cfg, &cfg, 10).unwrap();
    let mut waits = Vec::new();
    let mut children = Vec::new();
    for _ in 0..2 {
        let (child, fd) = spawn_py(NUMBERED, &["20000"]);
        waits.push(logs.capture(fd, child.id(), 1, StreamKind::Stdout));
        children.push(child);
    }
    for w in waits {
        tokio::time::timeout(T, w).await.unwrap().unwrap();
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    for c in children {
        reap(c).await;
    }
    logs.close().await;
    let text = fs::read_to_string(&log).unwrap();
    let year = chrono::Local::now().format("%Y").to_string();
    let mut per_pid = std::collections::HashMap::<u32, Vec<u64>>::new();
    for l in text.lines() {
        // "<year> [<pid>] | <nnnnnnnn> xxx…"
        let (head, body) = l.split_once(" | ").unwrap_or_else(|| panic!("bad line {l:?}"));
        let (y, pid) = head.split_once(' ').unwrap();
        assert_eq!(y, year);
        let pid: u32 = pid.trim_matches(|c| c == '[' || c == ']').parse().unwrap();
        assert_eq!(body.len(), 8 + 1 + 60, "line garbled: {l:?}");
        per_pid.entry(pid).or_default().push(body[..8].parse().unwrap());
    }
    for pid in pids {
        assert_contiguous(&per_pid[&pid], 1);
        assert_eq!(per_pid[&pid].len(), 20_000);
    }
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn time_rotation_every_second() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.log");
    let hub = hub();
    let cfg = file_cfg(
        &log,
        "rotate_when = \"s\"\nbackup_count = 2\nutc = true\ngzip = true",
    );
    let logs = hub.add_watcher("w", &cfg, &StreamConfig::null(), 10).unwrap();
    // ~3.5 s of lines, 100 per 10 ms.
    let script = r#"
import os, time
end = time.time() + 3.5
i = 0
while time.time() < end:
    for _ in range(100):
        i += 1
        os.write(1, b"%08d t\n" % i)
    time.sleep(0.01)
"#;
    let (child, fd) = spawn_py(script, &[]);
    let stats = tokio::time::timeout(T, logs.capture(fd, child.id(), 1, StreamKind::Stdout))
        .await
        .unwrap()
        .unwrap();
    reap(child).await;
    logs.close().await;
    let mut rotated: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &log)
        .collect();
    rotated.sort();
    assert_eq!(rotated.len(), 2, "backup_count = 2 keeps two: {rotated:?}");
    for p in &rotated {
        let name = p.file_name().unwrap().to_str().unwrap();
        // t.log.YYYY-mm-dd_HH-MM-SS.gz
        assert!(name.starts_with("t.log.") && name.ends_with(".gz"), "{name}");
        assert_eq!(name.len(), "t.log.".len() + 19 + 3, "{name}");
    }
    let mut all = Vec::new();
    for p in &rotated {
        all.extend(read_maybe_gz(p));
    }
    all.extend(fs::read(&log).unwrap());
    let nums = numbers(&all);
    assert_eq!(*nums.last().unwrap(), stats.lines);
    assert_contiguous(&nums, nums[0]);
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unwritable_path_names_the_file() {
    let hub = hub();
    let err = hub
        .add_watcher(
            "w",
            &file_cfg(Path::new("/nonexistent-dir/x.log"), ""),
            &StreamConfig::null(),
            10,
        )
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("/nonexistent-dir/x.log"), "{msg}");
    let a = tempfile::tempdir().unwrap();
    let p = a.path().join("same.log");
    let _w1 = hub
        .add_watcher("a", &file_cfg(&p, ""), &StreamConfig::null(), 10)
        .unwrap();
    let e = hub
        .add_watcher(
            "b",
            &file_cfg(&p, "max_bytes = 100\nbackup_count = 1"),
            &StreamConfig::null(),
            10,
        )
        .unwrap_err();
    assert!(format!("{e:#}").contains("different rotation"));
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn publish_hook_sees_every_line() {
    let hub = hub();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    hub.set_publish_hook(Box::new(move |r| {
        if r.stream == StreamKind::Stdout && &*r.watcher == "h" {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }));
    let logs = hub
        .add_watcher("h", &StreamConfig::null(), &StreamConfig::null(), 10)
        .unwrap();
    let (child, fd) = spawn_py(NUMBERED, &["3000"]);
    tokio::time::timeout(T, logs.capture(fd, child.id(), 1, StreamKind::Stdout))
        .await
        .unwrap()
        .unwrap();
    reap(child).await;
    assert_eq!(count.load(Ordering::Relaxed), 3000);
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn close_with_grandchild_holding_the_pipe_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("g.log");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 10)
        .unwrap();
    // The shell exits at once but its background sleep keeps stdout open.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("echo before; sleep 30 & echo $!")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let fd: OwnedFd = child.stdout.take().unwrap().into();
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    reap(child).await;
    wait_until("two lines", T, || logs.history(None, 10, None).len() == 2).await;
    let t0 = Instant::now();
    logs.close_with_timeout(Duration::from_millis(200)).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    let stats = tokio::time::timeout(T, done).await.unwrap().unwrap();
    assert!(!stats.eof);
    let text = fs::read_to_string(&log).unwrap();
    let sleeper: i32 = text.lines().nth(1).unwrap().parse().unwrap();
    let _ = kill(Pid::from_raw(sleeper), Signal::SIGKILL);
    assert!(text.starts_with("before\n") && text.ends_with('\n'));
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn close_is_bounded_with_a_nonstop_writer() {
    let hub = hub();
    // /dev/null: a non-regular "file" (no rotation, no reopen checks) that
    // keeps this test independent of the disk's speed.
    let logs = hub
        .add_watcher(
            "w",
            &file_cfg(Path::new("/dev/null"), ""),
            &StreamConfig::null(),
            10,
        )
        .unwrap();
    let line = "y".repeat(99);
    let mut child = Command::new("yes")
        .arg(&line)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let fd: OwnedFd = child.stdout.take().unwrap().into();
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    wait_until("some output", T, || logs.history(None, 1, None).len() == 1).await;
    let t0 = Instant::now();
    logs.close_with_timeout(Duration::from_millis(200)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "close took {:?}",
        t0.elapsed()
    );
    let stats = tokio::time::timeout(T, done).await.unwrap().unwrap();
    assert!(!stats.eof);
    assert!(stats.lines > 1000);
    // The pipe is closed: `yes` dies of SIGPIPE.
    reap(child).await;
    // Whole lines, except the last one, cut where the drain stopped.
    let hist = logs.history(None, 10, None);
    let (last, whole) = hist.split_last().unwrap();
    assert!(whole.iter().all(|r| r.line == line.as_bytes()));
    assert!(line.as_bytes().starts_with(&last.line));
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn lone_line_reaches_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l.log");
    let hub = hub();
    let logs = hub
        .add_watcher("w", &file_cfg(&log, ""), &StreamConfig::null(), 10)
        .unwrap();
    // One line, then the child waits (pipe open) until told to go.
    let script = "import os, sys\nos.write(1, b'hello\\n')\nsys.stdin.readline()\n";
    let (mut child, fd) = spawn_py(script, &[]);
    let done = logs.capture(fd, child.id(), 1, StreamKind::Stdout);
    wait_until("the line read", T, || logs.history(None, 1, None).len() == 1).await;
    let t0 = Instant::now();
    wait_until("the line in the file", Duration::from_secs(5), || {
        fs::read(&log).is_ok_and(|d| d == b"hello\n")
    })
    .await;
    println!(
        "line on disk {:?} after it was read (child still running)",
        t0.elapsed()
    );
    drop(child.stdin.take());
    tokio::time::timeout(T, done).await.unwrap().unwrap();
    reap(child).await;
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn blocked_sink_does_not_hold_back_other_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let hub = hub();
    // Nobody reading: opening it for writing must fail, not hang.
    let err = hub
        .add_watcher("x", &file_cfg(&fifo, ""), &StreamConfig::null(), 10)
        .unwrap_err();
    assert!(format!("{err:#}").contains("fifo"), "{err:#}");
    // A reader that never reads: the sink blocks once the FIFO is full.
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let stuck = hub
        .add_watcher("stuck", &file_cfg(&fifo, ""), &StreamConfig::null(), 10)
        .unwrap();
    let mut a = Command::new("sh")
        .arg("-c")
        .arg("yes | head -c 30000000")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let afd: OwnedFd = a.stdout.take().unwrap().into();
    let a_done = stuck.capture(afd, a.id(), 1, StreamKind::Stdout);

    let log = dir.path().join("free.log");
    let free = hub
        .add_watcher("free", &file_cfg(&log, ""), &StreamConfig::null(), 10)
        .unwrap();
    let (b, bfd) = spawn_py(NUMBERED, &["20000"]);
    let stats = tokio::time::timeout(T, free.capture(bfd, b.id(), 1, StreamKind::Stdout))
        .await
        .expect("the other watcher is not held back")
        .unwrap();
    reap(b).await;
    assert_eq!(stats.lines, 20_000);
    free.close().await;
    assert_eq!(numbers(&fs::read(&log).unwrap()).len(), 20_000);

    // Unblock: the reader goes away, the stuck sink gets EPIPE and drops.
    drop(reader);
    tokio::time::timeout(T, a_done).await.unwrap().unwrap();
    reap(a).await;
    stuck.close().await;
    hub.shutdown(Duration::from_secs(1)).await;
}
