//! `ringmaster check` on broken configs: every error names the file, line and
//! column of the key at fault (ini: file and line), through the real binary.

mod common;

use common::BIN;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The result of `ringmaster check` on one file.
struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Checked {
    /// Fails the test unless the check failed with `needle` in its report.
    #[track_caller]
    fn fails_with(&self, needle: &str) -> &Self {
        assert_eq!(self.code, Some(1), "expected a refusal:\n{}{}", self.stdout, self.stderr);
        assert!(self.stderr.contains(needle), "{needle:?} not in:\n{}", self.stderr);
        self
    }

    /// Fails the test unless the report names `file:line:col` of the file.
    #[track_caller]
    fn at(&self, line_col: &str) -> &Self {
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let loc = format!("{name}:{line_col}");
        assert!(self.stderr.contains(&loc), "{loc:?} not in:\n{}", self.stderr);
        self
    }

    #[track_caller]
    fn passes(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success:\n{}{}", self.stdout, self.stderr);
        self
    }
}

/// Writes `text` to `name` in a fresh temp dir and runs `ringmaster check` on it.
fn check(name: &str, text: &str) -> Checked {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    check_path(&path, dir)
}

fn check_path(path: &Path, dir: tempfile::TempDir) -> Checked {
    let out = Command::new(BIN)
        .arg("check")
        .arg(path)
        .output()
        .expect("run ringmaster check");
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: unwrap_report(&String::from_utf8_lossy(&out.stderr)),
        path: path.to_path_buf(),
        _dir: dir,
    }
}

/// miette wraps long messages at 80 columns behind a `│` gutter; join the
/// lines back so a message can be searched whole.
fn unwrap_report(report: &str) -> String {
    report
        .lines()
        .map(|l| l.trim_start().trim_start_matches(['│', '×']).trim())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn thousands_of_errors_are_capped_and_stay_small() {
    let mut toml = String::new();
    for i in 0..5000 {
        toml.push_str(&format!("[watchers.w{i}]\ncmd = \"\"\n"));
    }
    let c = check("many.toml", &toml);
    c.fails_with("and 4950 more errors").at("2:7");
    // Each of the 50 shown errors has a short excerpt, not a copy of the file.
    assert!(c.stderr.len() < 64 * 1024, "{} bytes", c.stderr.len());

    let mut ini = String::new();
    for i in 0..5000 {
        ini.push_str(&format!("[watcher:w{i}]\ncmd = sleep 1\nnumprocesses = x\n"));
    }
    let c = check("many.ini", &ini);
    c.fails_with("and 4950 more errors").at("3");
    assert!(c.stderr.len() < 64 * 1024, "{} bytes", c.stderr.len());
}

#[test]
fn ini_sections_with_a_colon_keep_their_line() {
    let c = check(
        "colon.ini",
        "[watcher:web:1]\ncmd = sleep 1\nuid = no_such_user_ringmaster\n",
    );
    c.fails_with("no such user").at("3:");
}

#[test]
fn env_sections_for_thousands_of_watchers_convert_in_linear_time() {
    // 5000 watchers, each with its own [env:NAME] plus a shared [env:*]: the
    // quadratic conversion took 40 s here, the linear one about 2 s (debug).
    let mut ini = String::from("[env:*]\n");
    for i in 0..5 {
        ini.push_str(&format!("G{i} = v{i}\n"));
    }
    for i in 0..5000 {
        ini.push_str(&format!(
            "[watcher:w{i}]\ncmd = sleep 1\n[env:w{i}]\nA = {i}\nB = $(circus.env.G1)\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("envs.ini");
    std::fs::write(&path, ini).expect("write config");
    let child = Command::new(BIN)
        .arg("check")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ringmaster check");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(out) => {
            let out = out.expect("wait for ringmaster check");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains("watchers (5000"), "{stdout}");
        }
        Err(_) => {
            // SAFETY: plain kill(2) of the child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("check of 5000 watchers with [env:…] sections took over 20 s");
        }
    }
}
