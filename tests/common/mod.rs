//! Test harness: starts the real `ringmaster` binary on a config written to a
//! temp dir, reads its JSON log as a stream of events, and waits for events
//! with bounded timeouts. Dropping a `Daemon` stops it and kills every process
//! group it reported spawning, so tests never leave processes behind.
#![allow(dead_code)]

pub mod notify;
pub mod web;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringmaster");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    events: Receiver<Value>,
    /// Every log event seen so far.
    pub log: Vec<Value>,
    pub stdout: Arc<Mutex<Vec<u8>>>,
    spawned: Vec<i32>,
    /// Indexes into `log` already returned by a wait, so each event matches once.
    consumed: std::collections::HashSet<usize>,
    /// The logged pids are in our PID namespace.
    own_pids: bool,
}

impl Daemon {
    /// Writes `config` (with `{dir}` replaced by the temp dir) and starts the daemon.
    pub fn start(config: &str) -> Daemon {
        Self::start_with(config, "toml", &[])
    }

    pub fn start_with(config: &str, ext: &str, extra_env: &[(&str, &str)]) -> Daemon {
        Self::start_customized(config, ext, extra_env, |_| {})
    }

    /// As `start_with`, with a last say on the daemon's `Command` (inherited
    /// fds, signal dispositions).
    pub fn start_customized(
        config: &str,
        ext: &str,
        extra_env: &[(&str, &str)],
        customize: impl FnOnce(&mut Command),
    ) -> Daemon {
        Self::start_launched(&[], config, ext, extra_env, customize)
    }

    /// As `start_customized`, with the daemon run through `launcher` (the
    /// daemon's path and arguments follow it): `sh -c '... exec "$@"' sh` to
    /// set variables that need the daemon's pid, or `unshare` for a PID
    /// namespace. In another PID namespace the logged pids are not ours: they
    /// are not recorded for `Drop` (use `unshare --kill-child`, whose death
    /// takes the namespace down).
    pub fn start_launched(
        launcher: &[&str],
        config: &str,
        ext: &str,
        extra_env: &[(&str, &str)],
        customize: impl FnOnce(&mut Command),
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = config.replace("{dir}", dir.path().to_str().expect("utf8 temp path"));
        let path = dir.path().join(format!("ringmaster.{ext}"));
        std::fs::write(&path, text).expect("write config");
        let mut cmd = match launcher.split_first() {
            None => Command::new(BIN),
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
        };
        cmd.arg("run")
            .arg(&path)
            .args(["--log-format", "json", "--log-level", "debug"])
            .current_dir(repo_root())
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        customize(&mut cmd);
        let mut child = cmd.spawn().expect("start ringmaster");
        let stderr = child.stderr.take().expect("stderr");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "raw": true }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let out2 = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out2.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Daemon {
            child: Some(child),
            dir,
            config: path,
            events: rx,
            log: Vec::new(),
            stdout: out,
            spawned: Vec::new(),
            consumed: Default::default(),
            own_pids: launcher.first() != Some(&"unshare"),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn record(&mut self, v: &Value) {
        if self.own_pids && v["message"] == "spawned" {
            if let Some(pid) = v["pid"].as_i64() {
                self.spawned.push(pid as i32);
            }
        }
    }

    /// Waits for a log event matching `pred` that no earlier wait returned
    /// (events seen while waiting for something else are kept, in order).
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        for (i, v) in self.log.iter().enumerate() {
            if !self.consumed.contains(&i) && pred(v) {
                self.consumed.insert(i);
                return v.clone();
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.record(&v);
                    self.log.push(v.clone());
                    if pred(&v) {
                        self.consumed.insert(self.log.len() - 1);
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out after {timeout:?} waiting for {what}; log so far:\n{}",
                    self.log
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "daemon exited while waiting for {what}; log:\n{}",
                    self.log
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Waits for a log message, optionally for one watcher.
    pub fn wait_msg(&mut self, msg: &str, watcher: Option<&str>, timeout: Duration) -> Value {
        let m = msg.to_string();
        let w = watcher.map(str::to_string);
        self.wait_for(&format!("{msg:?} (watcher {watcher:?})"), timeout, move |v| {
            v["message"].as_str() == Some(m.as_str())
                && w.as_deref().is_none_or(|w| v["watcher"].as_str() == Some(w))
        })
    }

    /// Waits until `n` processes of `watcher` have been spawned; returns their pids.
    pub fn wait_spawned(&mut self, watcher: &str, n: usize, timeout: Duration) -> Vec<i32> {
        let mut pids = Vec::new();
        let deadline = Instant::now() + timeout;
        while pids.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.wait_msg("spawned", Some(watcher), left);
            pids.push(v["pid"].as_i64().unwrap() as i32);
        }
        pids
    }

    /// Waits until the daemon logs that it is listening on `socket`; returns the address.
    pub fn wait_listening(&mut self, socket: &str) -> String {
        let s = socket.to_string();
        let v = self.wait_for("listening", Duration::from_secs(10), move |v| {
            v["message"] == "listening" && v["socket"].as_str() == Some(s.as_str())
        });
        v["address"].as_str().unwrap().to_string()
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM and wait for the exit code (bounded).
    pub fn stop(&mut self, timeout: Duration) -> i32 {
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("daemon running");
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                // Drain the rest of the log for assertions.
                while let Ok(v) = self.events.recv_timeout(Duration::from_secs(2)) {
                    self.record(&v);
                    self.log.push(v);
                }
                self.child = None;
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                panic!("daemon did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads every log event that arrived so far without waiting; returns the whole log.
    pub fn drain(&mut self) -> &[Value] {
        while let Ok(v) = self.events.try_recv() {
            self.record(&v);
            self.log.push(v);
        }
        &self.log
    }

    /// Reads the events that arrived so far and keeps only the last `keep` of
    /// the whole log, all counted as consumed, so a long run does not hold
    /// every debug line. Spawned pids are not recorded here (a long run would
    /// collect thousands for `Drop` to killpg): the caller ends its processes.
    pub fn drain_keep_last(&mut self, keep: usize) {
        while let Ok(v) = self.events.try_recv() {
            self.log.push(v);
        }
        if self.log.len() > keep {
            self.log.drain(..self.log.len() - keep);
        }
        self.consumed = (0..self.log.len()).collect();
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in &self.spawned {
            // Each process leads its own group; end the groups we were told about.
            unsafe { libc::killpg(*pid, libc::SIGKILL) };
        }
    }
}

/// Kills the processes a test recorded (grandchildren the daemon may not
/// know of), should it fail half-way.
pub struct Strays(pub Vec<i32>);

impl Drop for Strays {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit(')').next().and_then(|r| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Polls a condition about the OS (no event exists for it) with a deadline.
pub fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn environ(pid: i32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn fds(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A plain HTTP/1.0 GET on a fresh connection; returns the body.
pub fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

pub fn worker_script() -> String {
    repo_root().join("config/hello_worker.py").display().to_string()
}

/// Waits (bounded) until `pid` runs `sleep` and has reached its nanosleep:
/// past exec and past libc's start-up, which may hold a file open for a
/// moment (the locale archive), so its fd table is the one it was given.
pub fn wait_asleep(pid: i32) {
    eventually("the child is asleep in `sleep`", secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
            && std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("nanosleep"))
    });
}

/// The value of `key` (e.g. "Uid:") in /proc/PID/status, trimmed.
pub fn proc_status(pid: i32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {s}"))
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// A current-thread runtime for the async ZeroMQ client.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The daemon's default control endpoint (XDG_RUNTIME_DIR is its temp dir).
pub fn endpoint(d: &Daemon) -> String {
    format!("ipc://{}/ringmaster/control.sock", d.dir.path().display())
}

pub fn pubsub(d: &Daemon) -> String {
    format!("ipc://{}/ringmaster/pubsub.sock", d.dir.path().display())
}

pub fn props(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// One request on a fresh connection; returns the whole reply.
pub fn call(d: &Daemon, cmd: &str, p: Value) -> Value {
    let ep = endpoint(d);
    rt().block_on(async move {
        let mut c = ringmaster::control::client::Client::connect(&ep, secs(60))
            .await
            .expect("connect");
        c.call(cmd, props(p)).await.expect("call")
    })
}
