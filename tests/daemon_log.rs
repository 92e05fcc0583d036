//! The daemon's own log (stderr) when it goes to a file: no colour codes in
//! text, one JSON object per line with `--log-format json` or
//! `[ringmaster] log_format = "json"`.

mod common;

use common::{secs, BIN};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon whose stderr is a file; stopped (SIGTERM, then SIGKILL) on drop.
struct FileLogged {
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl FileLogged {
    /// Starts `ringmaster run` with `extra` arguments on a config whose one
    /// watcher writes `{dir}/up` once it runs; returns when that file exists.
    fn start(global: &str, extra: &[&str]) -> FileLogged {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let config = format!(
            "[ringmaster]\n{global}\n\n[watchers.sleeper]\ncmd = \"sh\"\n\
             args = [\"-c\", \"echo up > {d}/up; exec sleep 3600\"]\n"
        );
        let path = dir.path().join("ringmaster.toml");
        std::fs::write(&path, config).expect("write config");
        let log = dir.path().join("daemon.log");
        let file = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(BIN)
            .arg("run")
            .arg(&path)
            .args(extra)
            .env("XDG_RUNTIME_DIR", dir.path())
            // The log level comes from the arguments, not the caller's environment.
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ringmaster");
        let mut d = FileLogged {
            child: Some(child),
            dir,
            log,
        };
        let up = d.dir.path().join("up");
        let deadline = Instant::now() + secs(20);
        while !up.exists() {
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("daemon exited ({st}) before its watcher ran; log:\n{}", d.text());
            }
            assert!(
                Instant::now() < deadline,
                "the watcher did not run; log:\n{}",
                d.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, wait for the exit (bounded); returns the whole log's bytes.
    fn stop(mut self) -> Vec<u8> {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + secs(30);
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                assert_eq!(st.code(), Some(0), "daemon exit; log:\n{}", self.text());
                break;
            }
            assert!(Instant::now() < deadline, "daemon did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::read(&self.log).expect("read log")
    }
}

impl Drop for FileLogged {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + secs(10);
            while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every line is a JSON object with a level, a timestamp and a message.
fn assert_json_lines(log: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(log).expect("the log is UTF-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(lines.len() >= 2, "start-up and shutdown are logged:\n{text}");
    for v in &lines {
        assert!(v["level"].is_string(), "no level: {v}");
        let ts = v["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("no timestamp: {v}"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "timestamp is not RFC 3339: {v}"
        );
        assert!(v["message"].is_string(), "no message: {v}");
    }
    lines
}

#[test]
fn text_log_to_a_file_has_no_escape_codes() {
    let d = FileLogged::start("", &["--log-level", "debug"]);
    let log = d.stop();
    assert!(!log.is_empty(), "the daemon logged nothing");
    let text = String::from_utf8_lossy(&log);
    assert!(
        !log.contains(&0x1b),
        "ESC byte in a log that is not a terminal:\n{text}"
    );
    assert!(
        serde_json::from_str::<Value>(text.lines().next().unwrap_or("")).is_err(),
        "text is the default format"
    );
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let d = FileLogged::start("", &["--log-format", "json", "--log-level", "debug"]);
    let lines = assert_json_lines(&d.stop());
    // Fields of an event are top-level keys next to the message.
    assert!(
        lines.iter().any(|v| v["pid"].is_number()),
        "an event with a pid field: {lines:?}"
    );
}

#[test]
fn log_format_from_the_config_file() {
    let d = FileLogged::start("log_format = \"json\"", &[]);
    assert_json_lines(&d.stop());
}

#[test]
fn log_format_argument_wins_over_the_config_file() {
    let d = FileLogged::start("log_format = \"json\"", &["--log-format", "text"]);
    let log = d.stop();
    let text = String::from_utf8_lossy(&log);
    let first = text.lines().next().expect("a log line");
    assert!(
        serde_json::from_str::<Value>(first).is_err(),
        "text wins: {first}"
    );
    assert!(!log.contains(&0x1b), "no ESC:\n{text}");
}

#[test]
fn bad_log_format_in_the_config_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ringmaster.toml");
    std::fs::write(&path, "[ringmaster]\nlog_format = \"xml\"\n").expect("write config");
    let out = Command::new(BIN)
        .arg("check")
        .arg(&path)
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log_format") || err.contains("xml"), "{err}");
}
