//! The daemon under a service manager, without systemd: a fake notify socket
//! (a UNIX datagram socket in a temp dir, its path in NOTIFY_SOCKET) and a
//! launcher that passes a listening socket as fd 3 with LISTEN_PID set to
//! the exec'd daemon's pid.

mod common;
use common::notify::{field, FakeManager};
use common::*;
use serde_json::json;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::time::Instant;

/// Sets LISTEN_PID to the pid the daemon will have: the shell's, kept by exec.
const LISTEN_PID_LAUNCHER: [&str; 4] = ["sh", "-c", "LISTEN_PID=$$ exec \"$@\"", "sh"];

fn config(n: u32) -> String {
    format!("[watchers.sleeper]\ncmd = \"sleep 1000\"\nnumprocesses = {n}\n")
}

#[test]
fn notifies_ready_status_reloading_and_stopping() {
    let mut m = FakeManager::new();
    let mut d = Daemon::start_with(&config(2), "toml", &[("NOTIFY_SOCKET", &m.path)]);
    let ready = m.expect(&["READY=1"], secs(15));
    // READY=1 comes once the autostart start reported: both processes exist.
    assert_eq!(
        field(&ready, "STATUS"),
        Some("1 of 1 watchers active, 2 processes"),
        "{ready}"
    );
    assert_eq!(
        field(&ready, "MAINPID"),
        Some(d.pid().to_string().as_str()),
        "{ready}"
    );
    assert_eq!(d.wait_spawned("sleeper", 2, secs(5)).len(), 2);

    std::fs::write(&d.config, config(3)).unwrap();
    let r = call(&d, "reloadconfig", json!({"waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    let reloading = m.expect(&["RELOADING=1"], secs(10));
    assert!(field(&reloading, "MONOTONIC_USEC").is_some(), "{reloading}");
    let again = m.expect(&["READY=1"], secs(10));
    assert_eq!(
        field(&again, "STATUS"),
        Some("1 of 1 watchers active, 3 processes"),
        "{again}"
    );

    d.signal(libc::SIGTERM);
    m.expect(&["STOPPING=1"], secs(10));
    assert_eq!(d.wait_exit(secs(15)), 0);
}

#[test]
fn status_follows_the_watchers_after_ready() {
    let mut m = FakeManager::new();
    let d = Daemon::start_with(&config(2), "toml", &[("NOTIFY_SOCKET", &m.path)]);
    m.expect(&["READY=1"], secs(15));
    let r = call(&d, "incr", json!({"name": "sleeper", "nb": 1, "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    m.expect(&["STATUS=1 of 1 watchers active, 3 processes"], secs(10));
    let r = call(&d, "stop", json!({"name": "sleeper", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    m.expect(&["STATUS=0 of 1 watchers active, 0 processes"], secs(10));
}

#[test]
fn sighup_reload_is_framed_by_reloading_and_ready() {
    let mut m = FakeManager::new();
    let mut d = Daemon::start_with(&config(1), "toml", &[("NOTIFY_SOCKET", &m.path)]);
    m.expect(&["READY=1"], secs(15));
    std::fs::write(&d.config, config(2)).unwrap();
    d.signal(libc::SIGHUP);
    m.expect(&["RELOADING=1"], secs(10));
    let again = m.expect(&["READY=1"], secs(10));
    assert_eq!(
        field(&again, "STATUS"),
        Some("1 of 1 watchers active, 2 processes"),
        "{again}"
    );
    assert_eq!(d.stop(secs(15)), 0);
}

#[test]
fn abstract_notify_socket_is_reached() {
    let name = format!("ringmaster-test-notify-{}", std::process::id());
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    };
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(secs(15))).unwrap();
    let mut d = Daemon::start_with(&config(1), "toml", &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notify message on the abstract socket");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert_eq!(d.stop(secs(15)), 0);
}

#[test]
fn watchdog_keepalives_at_half_the_interval() {
    let mut m = FakeManager::new();
    let mut d = Daemon::start_with(
        &config(1),
        "toml",
        &[("NOTIFY_SOCKET", &m.path), ("WATCHDOG_USEC", "400000")],
    );
    m.expect(&["READY=1"], secs(15));
    let t0 = Instant::now();
    for _ in 0..3 {
        m.expect(&["WATCHDOG=1"], secs(5));
    }
    // Three keep-alives at 200 ms need about 0.6 s, far less than 3 × 400 ms + slack.
    assert!(t0.elapsed() < secs(3), "keep-alives too slow: {:?}", t0.elapsed());
    assert_eq!(d.stop(secs(15)), 0);
}

#[test]
fn children_never_see_the_daemons_manager_variables() {
    let m = FakeManager::new();
    let mut d = Daemon::start_with(
        &format!(
            r#"
[watchers.plain]
cmd = "sleep 1000"
copy_env = true
[sockets.n]
host = "127.0.0.1"
port = 0
[watchers.notified]
cmd = "python3 {w} --fd $(circus.sockets.n) --notify"
use_sockets = true
copy_env = true
[watchers.notified.ready]
type = "notify"
start_timeout = "10s"
"#,
            w = worker_script()
        ),
        "toml",
        &[
            ("NOTIFY_SOCKET", &m.path),
            ("WATCHDOG_USEC", "60000000"),
            ("WATCHDOG_PID", "1"),
            ("LISTEN_FDS", "0"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDNAMES", "nothing"),
        ],
    );
    let plain = d.wait_spawned("plain", 1, secs(10))[0];
    let notified = d.wait_spawned("notified", 1, secs(10))[0];
    // Ready means the notify child ran far enough to read its environment.
    d.wait_msg("ready", Some("notified"), secs(10));
    let get = |env: &[(String, String)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    eventually("plain's environment readable", secs(5), || {
        !environ(plain).is_empty()
    });
    let env = environ(plain);
    assert!(
        get(&env, "PATH").is_some(),
        "copy_env copies the daemon's environment: {env:?}"
    );
    for k in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        assert_eq!(get(&env, k), None, "{k} reached a child");
    }
    let env = environ(notified);
    let own = get(&env, "NOTIFY_SOCKET").expect("a notify child gets the readiness socket");
    assert_ne!(own, m.path, "the notify child got the daemon's own NOTIFY_SOCKET");
    for k in ["WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert_eq!(get(&env, k), None, "{k} reached a child");
    }
    assert_eq!(d.stop(secs(15)), 0);
}

/// Starts the daemon with `fd` as fd 3, LISTEN_FDS=1, LISTEN_FDNAMES=`names`
/// and LISTEN_PID set to the daemon's own pid.
fn start_activated(cfg: &str, fd: i32, names: &str) -> Daemon {
    Daemon::start_launched(
        &LISTEN_PID_LAUNCHER,
        cfg,
        "toml",
        &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", names)],
        |cmd| unsafe {
            cmd.pre_exec(move || {
                // dup2 clears close-on-exec on the copy, but is a no-op when
                // the socket already is fd 3.
                let r = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        },
    )
}

#[test]
fn socket_activation_uses_the_passed_socket_instead_of_binding() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut d = start_activated(
        &format!(
            r#"
[sockets.web]
host = "127.0.0.1"
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
use_sockets = true
"#,
            w = worker_script()
        ),
        listener.as_raw_fd(),
        "web",
    );
    // port = 0 would have bound a fresh port: the same address means adopted.
    assert_eq!(d.wait_listening("web"), addr);
    let r = call(&d, "listsockets", json!({}));
    let port = listener.local_addr().unwrap().port();
    assert_eq!(r["sockets"][0]["port"], port, "listsockets: {r}");
    assert_eq!(r["sockets"][0]["fd"], 3, "the passed fd itself: {r}");
    let pid = d.wait_spawned("web", 1, secs(10))[0];
    let body = http_get(&addr).expect("a worker answers on the passed socket");
    assert_eq!(body.trim(), format!("hello from pid {pid}"));
    assert_eq!(d.stop(secs(15)), 0);
}

#[test]
fn socket_activation_warns_about_an_unmatched_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut d = start_activated(&config(1), listener.as_raw_fd(), "extra");
    d.wait_for("a warning naming the unmatched socket", secs(10), |v| {
        v["level"] == "WARN" && v["socket"] == "extra"
    });
    d.wait_spawned("sleeper", 1, secs(10));
    assert_eq!(d.stop(secs(15)), 0);
}

#[test]
fn socket_activation_refuses_a_socket_of_another_type() {
    let dir = tempfile::tempdir().unwrap();
    let unix = std::os::unix::net::UnixListener::bind(dir.path().join("web.sock")).unwrap();
    let mut d = start_activated(
        "[sockets.web]\nhost = \"127.0.0.1\"\nport = 0\n[watchers.w]\ncmd = \"sleep 1000\"\n",
        unix.as_raw_fd(),
        "web",
    );
    assert_eq!(
        d.wait_exit(secs(10)),
        1,
        "a UNIX socket passed for a TCP one must stop the start"
    );
    let err = d
        .log
        .iter()
        .find(|v| v["level"] == "ERROR")
        .map(|v| v["message"].to_string())
        .unwrap_or_default();
    assert!(err.contains("\\\"web\\\""), "the error names the socket: {err}");
}
