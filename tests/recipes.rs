//! Worker recipes (docs/workers.md): each one runs under the real `ringmaster`
//! binary on a socket the daemon binds (`port = 0`), and HTTP requests to that
//! port must be answered by several worker pids.
//!
//! - the plain Python socket worker: config/example.toml (config/hello_worker.py);
//! - uvicorn with `--fd $(circus.sockets.web)`: config/uvicorn.toml;
//! - gunicorn with systemd's LISTEN_FDS: config/gunicorn.toml, and with
//!   `--bind fd://$(circus.sockets.web)`;
//! - a Rust worker using the `listenfd` crate: examples/listenfd_worker.rs.
//!
//! The shipped config files are read as they are; only the port is changed to
//! 0. uvicorn and gunicorn come from the virtualenv named by
//! RINGMASTER_TEST_VENV (created by `bash tests/run.sh`, from PyPI): these
//! tests fail, they do not skip, when it is missing.
//!
//! Each test has its own temp dir (config, XDG_RUNTIME_DIR for the default ipc
//! control socket), waits for the daemon's JSON log lines with bounded
//! timeouts, stops the daemon with SIGTERM and waits for it; on a failure,
//! dropping the daemon kills the process group of every pid it spawned.
//! This file is self-contained (no `mod common`).

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringmaster");

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The test virtualenv, which must hold `tool` (uvicorn, gunicorn).
fn venv_with(tool: &str) -> PathBuf {
    let v = std::env::var("RINGMASTER_TEST_VENV").unwrap_or_else(|_| {
        panic!(
            "RINGMASTER_TEST_VENV is not set: run the tests with `bash tests/run.sh`, \
             which creates .venv and installs {tool} from PyPI (see config/requirements-workers.txt)"
        )
    });
    let p = PathBuf::from(v);
    assert!(
        p.join("bin").join(tool).is_file(),
        "{} has no bin/{tool}: `bash tests/run.sh` must install it into the test virtualenv \
         (pip install -r config/requirements-workers.txt)",
        p.display()
    );
    p
}

/// `PATH` with the virtualenv's bin first, so a recipe's `cmd = "uvicorn …"`
/// (and `python3`) resolve there, as in an activated virtualenv.
fn path_with(venv: &Path) -> String {
    format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    )
}

/// A shipped config file with its socket's port set to 0.
fn recipe(rel: &str, port_line: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    assert!(
        text.lines().any(|l| l.trim() == port_line),
        "{rel} no longer has the line `{port_line}`: update tests/recipes.rs"
    );
    text.lines()
        .map(|l| if l.trim() == port_line { "port = 0" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    events: Receiver<Value>,
    log: Vec<Value>,
    spawned: Vec<i32>,
}

impl Daemon {
    fn start(config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ringmaster.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg(&path)
            .args(["--log-format", "json"])
            .current_dir(repo_root())
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start ringmaster");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Workers' own stderr lines are passed through with a prefix:
                // keep them (as raw text) for failure messages.
                let v = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "raw": true }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child: Some(child),
            dir,
            events: rx,
            log: Vec::new(),
            spawned: Vec::new(),
        }
    }

    fn record(&mut self, v: Value) {
        if v["message"] == "spawned" {
            if let Some(pid) = v["pid"].as_i64() {
                self.spawned.push(pid as i32);
            }
        }
        self.log.push(v);
    }

    fn log_text(&self) -> String {
        self.log
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (bounded) for the next log event matching `pred`.
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    let hit = pred(&v);
                    self.record(v.clone());
                    if hit {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out after {timeout:?} waiting for {what}; log so far:\n{}",
                    self.log_text()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the daemon exited while waiting for {what}; log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// The address the daemon bound for `socket` (its `listening` line).
    fn wait_listening(&mut self, socket: &str) -> String {
        let v = self.wait_for(&format!("socket {socket} listening"), secs(15), |v| {
            v["message"] == "listening" && v["socket"].as_str() == Some(socket)
        });
        v["address"]
            .as_str()
            .expect("listening line has an address")
            .to_string()
    }

    /// Waits until `n` processes of `watcher` were spawned; returns their pids.
    fn wait_spawned(&mut self, watcher: &str, n: usize, timeout: Duration) -> Vec<i32> {
        let deadline = Instant::now() + timeout;
        let mut pids = Vec::new();
        while pids.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.wait_for(&format!("{n} spawns of {watcher}"), left, |v| {
                v["message"] == "spawned" && v["watcher"].as_str() == Some(watcher)
            });
            pids.push(v["pid"].as_i64().expect("spawned line has a pid") as i32);
        }
        pids
    }

    /// SIGTERM, then waits (bounded) for the exit; returns the exit code.
    fn stop(&mut self, timeout: Duration) -> i32 {
        let mut child = self.child.take().expect("daemon running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Learn every pid reported so far, then stop the daemon, then end the
        // process group of each pid it spawned (each child leads its group).
        while let Ok(v) = self.events.try_recv() {
            self.record(v);
        }
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        while let Ok(v) = self.events.recv_timeout(Duration::from_millis(200)) {
            self.record(v);
        }
        for pid in &self.spawned {
            unsafe { libc::killpg(*pid, libc::SIGKILL) };
        }
        let _ = &self.dir;
    }
}

/// One HTTP/1.0 GET on a fresh connection; returns the pid in the body
/// ("hello from pid N").
fn get_pid(addr: &str) -> Result<i32, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(secs(15))).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| format!("read: {e}"))?;
    if !out.starts_with("HTTP/1.") || !out.contains(" 200 ") {
        return Err(format!("not a 200 answer: {out:?}"));
    }
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    body.trim()
        .strip_prefix("hello from pid ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no pid in the body: {body:?}"))
}

/// Sends requests, 8 at a time, until `want` distinct pids have answered
/// (at most 60 rounds and 60 s). Returns the pids that answered.
fn distinct_pids(addr: &str, want: usize) -> BTreeSet<i32> {
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    let deadline = Instant::now() + secs(60);
    for _ in 0..60 {
        if seen.len() >= want || Instant::now() > deadline {
            break;
        }
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let a = addr.to_string();
                std::thread::spawn(move || get_pid(&a))
            })
            .collect();
        for h in handles {
            match h.join().expect("request thread") {
                Ok(pid) => {
                    seen.insert(pid);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    assert!(
        seen.len() >= want,
        "only {} distinct pid(s) answered ({seen:?}) on {addr}; errors: {errors:?}",
        seen.len()
    );
    seen
}

/// The process group of `pid` (field 5 of /proc/PID/stat).
fn pgid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit(')').next()?.split_whitespace().nth(2)?.parse().ok()
}

fn assert_clean_stop(d: &mut Daemon) {
    let code = d.stop(secs(40));
    assert_eq!(code, 0, "the daemon's exit code; log:\n{}", d.log_text());
}

#[test]
fn python_socket_worker_example() {
    let config = recipe("config/example.toml", "port = 8080");
    let mut d = Daemon::start(&config, &[]);
    let addr = d.wait_listening("web");
    let pids = d.wait_spawned("web", 4, secs(15));
    let answered = distinct_pids(&addr, 3);
    for p in &answered {
        assert!(
            pids.contains(p),
            "pid {p} answered but is not one of the web workers {pids:?}"
        );
    }
    assert_clean_stop(&mut d);
}

#[test]
fn uvicorn_recipe_with_fd() {
    let venv = venv_with("uvicorn");
    let config = recipe("config/uvicorn.toml", "port = 8000");
    let path = path_with(&venv);
    let mut d = Daemon::start(&config, &[("PATH", &path)]);
    let addr = d.wait_listening("web");
    let pids = d.wait_spawned("web", 2, secs(20));
    // One single-process uvicorn per slot: the answering pids are exactly the
    // processes Ringmaster spawned.
    let answered = distinct_pids(&addr, 2);
    for p in &answered {
        assert!(
            pids.contains(p),
            "pid {p} answered but is not one of the uvicorn processes {pids:?}"
        );
    }
    assert_clean_stop(&mut d);
}

/// gunicorn's workers are forked by its master, the process Ringmaster
/// spawned: they answer, and they are in the master's process group.
fn check_gunicorn(config: &str) {
    let venv = venv_with("gunicorn");
    let path = path_with(&venv);
    let mut d = Daemon::start(config, &[("PATH", &path)]);
    let addr = d.wait_listening("web");
    let master = d.wait_spawned("web", 1, secs(20))[0];
    let answered = distinct_pids(&addr, 2);
    for p in &answered {
        assert_ne!(*p, master, "the gunicorn master answered itself");
        assert_eq!(
            pgid(*p),
            Some(master),
            "pid {p} answered but is not a worker of the gunicorn master {master}"
        );
    }
    assert_clean_stop(&mut d);
}

#[test]
fn gunicorn_recipe_with_listen_fds() {
    let config = recipe("config/gunicorn.toml", "port = 8000");
    assert!(
        config
            .lines()
            .any(|l| l.starts_with("cmd = \"gunicorn") && !l.contains("--bind")),
        "config/gunicorn.toml should run gunicorn without --bind (it relies on LISTEN_FDS)"
    );
    check_gunicorn(&config);
}

/// `--bind fd://N` (Circus's way) works only without LISTEN_FDS: given both,
/// gunicorn opens fd 3 twice and exits with EBADF (gunicorn 27, sock.py). So a
/// Circus config that uses `fd://` runs under Ringmaster with the LISTEN_*
/// variables removed by `env -u` (same process, same pid), as docs/workers.md says.
#[test]
fn gunicorn_with_bind_fd() {
    let config = recipe("config/gunicorn.toml", "port = 8000").replace(
        "cmd = \"gunicorn --workers 2",
        "cmd = \"env -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES \
         gunicorn --bind fd://$(circus.sockets.web) --workers 2",
    );
    assert!(
        config.contains("--bind fd://"),
        "cmd line not found in config/gunicorn.toml"
    );
    check_gunicorn(&config);
}

/// The compiled example, target/<profile>/examples/NAME, next to the test
/// binaries' target/<profile>/deps/ (`cargo build --examples` makes it;
/// `cargo test --all-targets` builds examples only as test harnesses).
fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let p = profile_dir.join("examples").join(name);
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build --examples` (tests/run.sh does)",
        p.display()
    );
    p
}

/// The Rust recipe from docs/workers.md.
const LISTENFD_RECIPE: &str = r#"
[sockets.web]
host = "127.0.0.1"
port = 0
blocking = true          # the workers call blocking accept()

[watchers.web]
cmd = "{bin}"
sockets = ["web"]
numprocesses = 4
graceful_timeout = "5s"
"#;

#[test]
fn rust_listenfd_worker() {
    let bin = example_bin("listenfd_worker");
    let config = LISTENFD_RECIPE.replace("{bin}", bin.to_str().expect("utf-8 path"));
    let mut d = Daemon::start(&config, &[]);
    let addr = d.wait_listening("web");
    let pids = d.wait_spawned("web", 4, secs(15));
    let answered = distinct_pids(&addr, 3);
    for p in &answered {
        assert!(
            pids.contains(p),
            "pid {p} answered but is not one of the workers {pids:?}"
        );
    }
    assert_clean_stop(&mut d);
}
