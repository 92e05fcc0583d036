//! Scenario tests for the core: sockets, watchers, processes, restart policy
//! and stop. Each starts the real daemon on a temp config.

mod common;
use common::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[test]
fn worker_accepts_on_daemon_socket_via_fd_substitution() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.web]
host = "127.0.0.1"
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
numprocesses = 3
use_sockets = true
"#,
        w = worker_script()
    ));
    let addr = d.wait_listening("web");
    let pids: HashSet<i32> = d.wait_spawned("web", 3, secs(10)).into_iter().collect();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + secs(15);
    while seen.len() < 2 && Instant::now() < deadline {
        let body = http_get(&addr).expect("request through the daemon-bound socket");
        let pid: i32 = body.trim().rsplit(' ').next().unwrap().parse().unwrap();
        assert!(pids.contains(&pid), "answer from unknown pid {pid}: {body}");
        seen.insert(pid);
    }
    assert!(
        seen.len() >= 2,
        "expected several workers to answer, got {seen:?}"
    );
    // argv really carried the fd number 3.
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", pids.iter().next().unwrap())).unwrap();
    assert!(cmdline.contains("--fd\u{0}3"), "{cmdline:?}");
}

#[test]
fn worker_finds_socket_through_listen_fds_and_listen_pid() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.api]
port = 0
[watchers.api]
cmd = "python3 {w}"
sockets = ["api"]
"#,
        w = worker_script()
    ));
    let addr = d.wait_listening("api");
    let pid = d.wait_spawned("api", 1, secs(10))[0];
    // Serving means the worker is past exec (environ can read empty mid-exec).
    let body = http_get(&addr).unwrap();
    assert_eq!(body.trim(), format!("hello from pid {pid}"));
    let env = environ(pid);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("LISTEN_FDS").as_deref(), Some("1"));
    assert_eq!(get("LISTEN_FDNAMES").as_deref(), Some("api"));
    assert_eq!(
        get("LISTEN_PID"),
        Some(pid.to_string()),
        "LISTEN_PID must be the child's own pid"
    );
}

#[test]
fn unix_socket_with_umask_and_replace() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    std::fs::write(&sock, b"stale").unwrap();
    let mut d = Daemon::start(&format!(
        r#"
[sockets.app]
path = "{p}"
umask = "077"
replace = true
[watchers.app]
cmd = "python3 {w} --fd $(circus.sockets.app)"
"#,
        p = sock.display(),
        w = worker_script()
    ));
    d.wait_listening("app");
    let pid = d.wait_spawned("app", 1, secs(10))[0];
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket(), "stale file was not replaced");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains(&format!("hello from pid {pid}")), "{out}");
    assert_eq!(d.stop(secs(15)), 0);
    assert!(!exists(&sock), "socket file must be unlinked at shutdown");
}

#[test]
fn only_named_sockets_are_inherited() {
    let mut d = Daemon::start(
        r#"
[sockets.a]
port = 0
[sockets.b]
port = 0
[sockets.c]
path = "{dir}/c.sock"
[watchers.s]
cmd = "sleep 1000"
sockets = ["b"]
"#,
    );
    let pid = d.wait_spawned("s", 1, secs(10))[0];
    wait_asleep(pid);
    assert_eq!(
        fds(pid),
        vec![0, 1, 2, 3],
        "child must hold exactly stdio and its one socket"
    );
    let target = std::fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
    assert!(target.to_string_lossy().starts_with("socket:"), "{target:?}");
    let env = environ(pid);
    assert!(env.contains(&("LISTEN_FDNAMES".into(), "b".into())));
}

#[test]
fn killed_child_is_replaced_quickly() {
    let mut d = Daemon::start(
        r#"
[watchers.s]
cmd = "sleep 1000"
numprocesses = 2
"#,
    );
    let pids = d.wait_spawned("s", 2, secs(10));
    let t0 = Instant::now();
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let new = d.wait_spawned("s", 1, secs(5))[0];
    let took = t0.elapsed();
    assert_ne!(new, pids[0]);
    assert!(alive(new));
    assert!(alive(pids[1]), "the other process must not be touched");
    eprintln!("respawn after SIGKILL took {took:?}");
}

#[test]
fn crash_loop_backs_off_then_fails() {
    let mut d = Daemon::start(
        r#"
[watchers.crash]
cmd = "sh -c 'exit 3'"
[watchers.crash.restart]
min_uptime = "1s"
initial_delay = "50ms"
multiplier = 2.0
jitter = 0.0
max_retry = 4
[watchers.steady]
cmd = "sleep 1000"
"#,
    );
    let mut delays = Vec::new();
    for _ in 0..3 {
        let v = d.wait_msg("process failed quickly; backing off", Some("crash"), secs(10));
        delays.push(v["delay_ms"].as_u64().unwrap());
    }
    assert_eq!(delays, vec![50, 100, 200]);
    d.wait_for("watcher failed", secs(10), |v| {
        v["message"] == "watcher state" && v["watcher"] == "crash" && v["state"] == "failed"
    });
    // The crash loop did not disturb the other watcher.
    assert!(
        d.log
            .iter()
            .filter(|v| v["message"] == "spawned" && v["watcher"] == "steady")
            .count()
            <= 1
    );
}

/// Processes that exit the instant they exec: their exit can be reaped
/// before the spawner thread has handed their pid to the slot. Every one must
/// still be seen (the restart policy counts them) or the watcher would sit in
/// "running" with dead pids instead of reaching `failed`.
#[test]
fn instant_exits_are_never_lost() {
    let mut d = Daemon::start(
        r#"
[watchers.blink]
cmd = "true"
numprocesses = 20
[watchers.blink.restart]
initial_delay = "1ms"
jitter = 0.0
max_retry = 5
"#,
    );
    d.wait_for("watcher failed", secs(20), |v| {
        v["message"] == "watcher state" && v["watcher"] == "blink" && v["state"] == "failed"
    });
    // Slots still between spawns when the watcher gave up finish theirs;
    // every pid that was spawned must be reported as exited.
    let spawned = |d: &Daemon| -> Vec<i64> {
        d.log
            .iter()
            .filter(|v| v["message"] == "spawned" && v["watcher"] == "blink")
            .filter_map(|v| v["pid"].as_i64())
            .collect()
    };
    let mut seen = 0;
    while seen < spawned(&d).len() {
        let pids = spawned(&d);
        for &pid in &pids[seen..] {
            d.wait_for(&format!("exit of {pid}"), secs(10), |v| {
                v["message"] == "exited" && v["pid"] == pid
            });
        }
        seen = pids.len();
    }
    assert!(seen >= 20, "{seen} spawns");
}

#[test]
fn missing_program_goes_through_restart_policy() {
    let mut d = Daemon::start(
        r#"
[watchers.ghost]
cmd = "/nonexistent/program --flag"
[watchers.ghost.restart]
initial_delay = "10ms"
jitter = 0.0
max_retry = 3
"#,
    );
    let v = d.wait_msg(
        "spawn failed: cannot start /nonexistent/program: execve: No such file or directory (os error 2)",
        Some("ghost"),
        secs(10),
    );
    assert_eq!(v["level"], "ERROR");
    d.wait_for("failed", secs(10), |v| {
        v["message"] == "watcher state" && v["state"] == "failed"
    });
}

#[test]
fn term_ignoring_child_and_grandchild_are_killed_after_graceful_timeout() {
    let mut d = Daemon::start(
        r#"
[watchers.stubborn]
cmd = "sh -c 'trap \"\" TERM; sleep 1000 & echo $! > {dir}/grandchild; wait; wait'"
graceful_timeout = "700ms"
"#,
    );
    let pid = d.wait_spawned("stubborn", 1, secs(10))[0];
    let gc_file = d.path("grandchild");
    eventually("grandchild pid written", secs(5), || {
        std::fs::read_to_string(&gc_file)
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false)
    });
    let gc: i32 = std::fs::read_to_string(&gc_file).unwrap().trim().parse().unwrap();
    assert!(alive(gc));
    let t0 = Instant::now();
    assert_eq!(d.stop(secs(15)), 0);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(650),
        "killed before graceful_timeout: {took:?}"
    );
    assert!(!alive(pid), "child survived");
    assert!(!alive(gc), "grandchild survived");
    assert!(d.log.iter().any(|v| v["message"] == "graceful_timeout expired"));
}

#[test]
fn numprocesses_singleton_and_respawn_false() {
    let mut d = Daemon::start(
        r#"
[watchers.many]
cmd = "sleep 1000"
numprocesses = 5
[watchers.one]
cmd = "sleep 1000"
singleton = true
[watchers.once]
cmd = "sh -c 'exit 0'"
respawn = false
numprocesses = 2
"#,
    );
    let many = d.wait_spawned("many", 5, secs(10));
    assert_eq!(many.iter().collect::<HashSet<_>>().len(), 5);
    d.wait_for("once stops", secs(10), |v| {
        v["message"] == "watcher state" && v["watcher"] == "once" && v["state"] == "stopped"
    });
    assert_eq!(
        d.log
            .iter()
            .filter(|v| v["message"] == "spawned" && v["watcher"] == "once")
            .count(),
        2
    );
    let one = d.wait_spawned("one", 1, secs(10));
    assert_eq!(one.len(), 1);
    assert_eq!(
        d.log
            .iter()
            .filter(|v| v["message"] == "spawned" && v["watcher"] == "one")
            .count(),
        1
    );
}

#[test]
fn singleton_with_more_processes_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[watchers.x]\ncmd = \"sleep 1\"\nsingleton = true\nnumprocesses = 3\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("singleton"), "{err}");
    assert!(err.contains("bad.toml:4:16"), "{err}");
}

#[test]
fn unrunnable_commands_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    for (cmd, problem) in [
        (r#""  ""#, "cmd is empty"),
        (r#""sleep \u0000 1""#, "cmd contains a NUL byte"),
        (r#""sleep '1""#, "cmd has unbalanced quotes"),
    ] {
        std::fs::write(&p, format!("[watchers.x]\ncmd = {cmd}\n")).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("check")
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(problem), "{cmd}: {err}");
        assert!(err.contains("bad.toml:2:7"), "{cmd}: {err}");
    }
}

#[test]
fn max_age_replaces_old_processes() {
    let mut d = Daemon::start(
        r#"
[watchers.aging]
cmd = "sleep 1000"
max_age = "500ms"
max_age_variance = 0
graceful_timeout = 2
"#,
    );
    let first = d.wait_spawned("aging", 1, secs(10))[0];
    let t0 = Instant::now();
    d.wait_msg("max_age reached; replacing process", Some("aging"), secs(5));
    // Rolling: the replacement starts first, then the old process is stopped.
    let second = d.wait_spawned("aging", 1, secs(5))[0];
    assert_ne!(first, second);
    d.wait_for("old process exits", secs(5), |v| {
        v["message"] == "exited" && v["pid"] == first
    });
    assert!(t0.elapsed() < secs(3));
    assert!(!alive(first));
    assert!(alive(second));
}

/// The daemon ignores SIGPIPE (the Rust runtime does), catches several
/// signals and may inherit ignored ones (under `cargo test`, glibc's internal
/// signal 32 arrives ignored); a child must start with none ignored or blocked.
#[test]
fn child_starts_with_default_signal_dispositions() {
    let mut d = Daemon::start("[watchers.s]\ncmd = \"sleep 1000\"\n");
    let pid = d.wait_spawned("s", 1, secs(10))[0];
    let mut status = String::new();
    eventually("exec done", secs(5), || {
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(s) if s.contains("Name:\tsleep") => {
                status = s;
                true
            }
            _ => false,
        }
    });
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("SigIgn:"), "0000000000000000", "{status}");
    assert_eq!(field("SigBlk:"), "0000000000000000", "{status}");
}

#[test]
fn env_copy_env_working_dir_and_rlimits_reach_the_child() {
    std::env::set_var("RINGMASTER_TEST_PARENT_VAR", "from-parent");
    let mut d = Daemon::start_with(
        r#"
[env]
GLOBAL = "g"
[watchers.clean]
cmd = "sleep 1000"
working_dir = "{dir}"
env = { FOO = "bar", WITH_PATH = "$HOME:x" }
rlimits = { nofile = 512 }
rlimit_core = 0
umask = "027"
[watchers.copied]
cmd = "sleep 1000"
copy_env = true
env = { FOO = "baz" }
"#,
        "toml",
        &[("RINGMASTER_TEST_PARENT_VAR", "from-parent")],
    );
    let clean = d.wait_spawned("clean", 1, secs(10))[0];
    let copied = d.wait_spawned("copied", 1, secs(10))[0];
    for pid in [clean, copied] {
        eventually("exec done", secs(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "sleep")
                .unwrap_or(false)
        });
    }
    let env: std::collections::BTreeMap<String, String> = environ(clean).into_iter().collect();
    let keys: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["FOO", "GLOBAL", "PATH", "WITH_PATH"],
        "clean env: only config + PATH"
    );
    assert_eq!(env["FOO"], "bar");
    assert_eq!(
        env["WITH_PATH"],
        format!("{}:x", std::env::var("HOME").unwrap_or_default())
    );
    let cwd = std::fs::read_link(format!("/proc/{clean}/cwd")).unwrap();
    assert_eq!(cwd, d.dir.path().canonicalize().unwrap());
    let limits = std::fs::read_to_string(format!("/proc/{clean}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["512", "512"],
        "{line}"
    );
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    let status = std::fs::read_to_string(format!("/proc/{clean}/status")).unwrap();
    assert!(status.lines().any(|l| l == "Umask:\t0027"), "{status}");

    let env2: std::collections::BTreeMap<String, String> = environ(copied).into_iter().collect();
    assert_eq!(
        env2.get("RINGMASTER_TEST_PARENT_VAR").map(String::as_str),
        Some("from-parent")
    );
    assert_eq!(env2["FOO"], "baz");
    assert_eq!(env2["GLOBAL"], "g");
}

#[test]
fn config_errors_carry_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.toml");
    std::fs::write(&p, "[watchers.web]\ncmd = \"x\"\nnumprocesses = \"four\"\n").unwrap();
    for sub in ["check", "run"] {
        let out = std::process::Command::new(BIN).arg(sub).arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("broken.toml:3:16"), "{sub}: {err}");
        assert!(err.contains("watchers.web.numprocesses"), "{sub}: {err}");
        assert!(err.contains("expected u32"), "{sub}: {err}");
    }
    std::fs::write(&p, "[watchers.web]\ncmd = \"x\"\nnumprocess = 2\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.toml:3:1") && err.contains("numprocess"),
        "{err}"
    );
    std::fs::write(
        &p,
        "[watchers.web]\ncmd = \"x\"\n[watchers.web.ready]\ntype = \"log\"\npattern = \"(unclosed\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.toml:5:11") && err.contains("ready.pattern is not a valid"),
        "{err}"
    );
}

#[test]
fn check_prints_the_plan() {
    let out = std::process::Command::new(BIN)
        .args(["check", "config/example.toml"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("127.0.0.1:8080") && s.contains("web=fd3") && s.ends_with("ok\n"),
        "{s}"
    );
}

#[test]
fn socket_that_cannot_be_bound_stops_startup_with_its_name_and_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        format!("[sockets.web]\nport = {port}\n[watchers.w]\ncmd = \"sleep 1000\"\n"),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("run")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("socket \"web\"") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("Address already in use"), "{err}");
}

#[test]
fn sigterm_leaves_no_process_behind_and_reaps_orphans() {
    let mut d = Daemon::start(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
numprocesses = 2
graceful_timeout = 5
priority = 1
[watchers.orphaner]
cmd = "sh -c '(sh -c \"sleep 0.2\" &); exec sleep 1000'"
[watchers.tree]
cmd = "sh -c 'sleep 1000 & sleep 1000 & wait'"
"#
        .replace("{w}", &worker_script())
        .as_str(),
    );
    let mut pids = d.wait_spawned("web", 2, secs(10));
    pids.extend(d.wait_spawned("orphaner", 1, secs(10)));
    pids.extend(d.wait_spawned("tree", 1, secs(10)));
    // The grandchild left behind by the orphaner is re-parented to us and reaped.
    d.wait_msg("reaped orphan", None, secs(5));
    let tree = *pids.last().unwrap();
    eventually("tree children", secs(5), || {
        std::fs::read_to_string(format!("/proc/{tree}/task/{tree}/children"))
            .map(|c| c.split_whitespace().count() == 2)
            .unwrap_or(false)
    });
    let grandkids: Vec<i32> = std::fs::read_to_string(format!("/proc/{tree}/task/{tree}/children"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let daemon = d.pid();
    assert_eq!(d.stop(secs(20)), 0);
    for p in pids.iter().chain(grandkids.iter()) {
        assert!(!alive(*p), "process {p} survived the daemon's SIGTERM");
    }
    // Lower priority (orphaner, tree: 0) stopped before web (1).
    let order: Vec<String> = d
        .log
        .iter()
        .filter(|v| v["message"] == "watcher state" && v["state"] == "stopped")
        .map(|v| v["watcher"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order.last().map(String::as_str), Some("web"), "{order:?}");
    assert!(std::fs::read_to_string(format!("/proc/{daemon}/stat")).is_err() || !alive(daemon));
}

#[test]
fn second_sigint_kills_at_once() {
    let mut d = Daemon::start(
        r#"
[watchers.slow]
cmd = "sh -c 'trap \"\" TERM INT; sleep 1000'"
graceful_timeout = 60
"#,
    );
    let pid = d.wait_spawned("slow", 1, secs(10))[0];
    d.signal(libc::SIGINT);
    d.wait_msg("stopping process", Some("slow"), secs(5));
    let t0 = Instant::now();
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(secs(10)), 0);
    assert!(t0.elapsed() < secs(5));
    assert!(!alive(pid));
}
