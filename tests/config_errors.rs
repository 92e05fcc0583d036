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
        assert_eq!(
            self.code,
            Some(1),
            "expected a refusal:\n{}{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "{needle:?} not in:\n{}",
            self.stderr
        );
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
        assert_eq!(
            self.code,
            Some(0),
            "expected success:\n{}{}",
            self.stdout,
            self.stderr
        );
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
    let mut out = String::new();
    for l in report.lines() {
        let l = l.trim_start().trim_start_matches(['│', '×']).trim();
        // miette wraps after the hyphen of a word ("non-" / "negative").
        if !out.is_empty() && !out.ends_with('-') {
            out.push(' ');
        }
        out.push_str(l);
    }
    out
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

#[test]
fn upper_case_socket_names_can_be_referenced() {
    check(
        "case.toml",
        "[sockets.Web]\nport = 0\n[watchers.x]\ncmd = \"sleep 1 $(circus.sockets.WEB)\"\nsockets = [\"wEb\"]\n",
    )
    .passes();
    check(
        "case.toml",
        "[sockets.web]\nport = 0\n[sockets.WEB]\nport = 0\n[watchers.x]\ncmd = \"sleep 1\"\n",
    )
    .fails_with("case-insensitive")
    .at("3:1");
    check(
        "case.toml",
        "[watchers.web]\ncmd = \"sleep 1\"\n[watchers.Web]\ncmd = \"sleep 1\"\n",
    )
    .fails_with("case-insensitive");
}

#[test]
fn errors_point_at_the_key_not_at_cmd() {
    let w = "[watchers.x]\ncmd = \"sleep 1\"\n";
    for (extra, line_col, needle) in [
        (
            "[watchers.x.restart]\nmultiplier = 0.5\n",
            "4:14",
            "restart.multiplier",
        ),
        ("[watchers.x.restart]\njitter = 2.0\n", "4:10", "restart.jitter"),
        (
            "[watchers.x.ready]\ntype = \"log\"\npattern = \"(\"\n",
            "5:11",
            "not a valid regex",
        ),
        (
            "[watchers.x.ready]\ntype = \"http\"\nurl = \"ftp://x\"\n",
            "5:7",
            "must start with http://",
        ),
        (
            "[watchers.x.ready]\ntype = \"tcp\"\nwatchdog_timeout = 5\naddress = \"127.0.0.1:1\"\n",
            "5:20",
            "needs type = \"notify\"",
        ),
        ("[watchers.x.ready]\ntype = \"tcp\"\n", "3:1", "needs `address`"),
        ("rlimit_nofile = \"lots\"\n", "3:17", "rlimit_nofile"),
        ("max_surge = 0\n", "3:13", "cannot both be 0"),
    ] {
        check("key.toml", &format!("{w}{extra}"))
            .fails_with(needle)
            .at(line_col);
    }
}

#[test]
fn untagged_values_say_what_was_expected() {
    let w = "[watchers.x]\ncmd = \"sleep 1\"\n";
    for (extra, needle) in [
        (
            "args = 3\n",
            "expected a command-line string or a list of strings",
        ),
        ("uid = true\n", "expected a user or group name, or a numeric id"),
        (
            "rlimits = {nofile = true}\n",
            "expected a non-negative integer, or -1",
        ),
        ("umask = true\n", "expected an octal string"),
        (
            "hooks = {before_start = 1}\n",
            "expected a command string, or a table with `cmd`",
        ),
    ] {
        let c = check("expect.toml", &format!("{w}{extra}"));
        c.fails_with(needle).at("3:");
        assert!(!c.stderr.contains("did not match any variant"), "{}", c.stderr);
    }
}

#[test]
fn rlimit_minus_one_is_unlimited() {
    check(
        "rl.toml",
        "[watchers.x]\ncmd = \"sleep 1\"\nrlimits = {nofile = -1, core = \"infinity\"}\nrlimit_nproc = \"unlimited\"\n",
    )
    .passes();
    check(
        "rl.toml",
        "[watchers.x]\ncmd = \"sleep 1\"\nrlimits = {nofile = -2}\n",
    )
    .fails_with("expected a non-negative integer")
    .at("3:21");
}

#[test]
fn hook_tables_refuse_unknown_keys_and_hooks() {
    let w = "[watchers.x]\ncmd = \"sleep 1\"\n";
    check(
        "hook.toml",
        &format!("{w}[watchers.x.hooks.before_start]\ncmd = \"true\"\ncmdd = \"true\"\n"),
    )
    .fails_with("unknown field `cmdd`")
    .at("5:1");
    check(
        "hook.toml",
        &format!("{w}[watchers.x.hooks.before_start]\ncmdd = \"true\"\n"),
    )
    .fails_with("unknown field `cmdd`")
    .at("4:1");
    check(
        "hook.toml",
        &format!("{w}[watchers.x.hooks]\nbefore_strat = \"true\"\n"),
    )
    .fails_with("unknown field `before_strat`")
    .at("4:1");
}

#[test]
fn host_or_port_beside_path_is_refused() {
    check(
        "sock.toml",
        "[sockets.s]\npath = \"/tmp/rm.sock\"\nport = 80\n[watchers.x]\ncmd = \"sleep 1\"\n",
    )
    .fails_with("port cannot be combined with path")
    .at("3:8");
    check(
        "sock.toml",
        "[sockets.s]\nhost = \"127.0.0.1\"\npath = \"/tmp/rm.sock\"\n[watchers.x]\ncmd = \"sleep 1\"\n",
    )
    .fails_with("host cannot be combined with path")
    .at("2:8");
}

#[test]
fn unix_socket_paths_longer_than_sun_path_are_refused() {
    let long = format!("/tmp/{}", "d".repeat(103)); // 108 bytes
    check(
        "long.toml",
        &format!("[sockets.s]\npath = \"{long}\"\n[watchers.x]\ncmd = \"sleep 1\"\n"),
    )
    .fails_with("at most 107 bytes")
    .at("2:8");
    let fits = format!("/tmp/{}", "d".repeat(102)); // 107 bytes
    check(
        "long.toml",
        &format!("[sockets.s]\npath = \"{fits}\"\n[watchers.x]\ncmd = \"sleep 1\"\n"),
    )
    .passes();
}

#[test]
fn bad_env_names_and_values_are_refused_at_the_key() {
    let w = "[watchers.x]\ncmd = \"sleep 1\"\n";
    for (text, needle, line_col) in [
        (format!("[env]\n\"A=B\" = \"1\"\n{w}"), "contains '='", "2:1"),
        (format!("[env]\n\"\" = \"1\"\n{w}"), "cannot be empty", "2:1"),
        (
            format!("[env]\n\"A\\u0000\" = \"1\"\n{w}"),
            "contains a NUL byte",
            "2:1",
        ),
        (
            format!("[env]\nA = \"x\\u0000y\"\n{w}"),
            "value of A contains a NUL byte",
            "2:1",
        ),
        (
            format!("{w}[watchers.x.env]\nOK = 1\n"),
            "expected a string",
            "4:6",
        ),
        (
            format!("{w}env = {{ OK = \"a\", \"B=C\" = \"d\" }}\n"),
            "contains '='",
            "3:19",
        ),
        (
            format!("{w}[watchers.x.env]\nV = \"\\u0000\"\n"),
            "contains a NUL byte",
            "4:1",
        ),
    ] {
        check("env.toml", &text).fails_with(needle).at(line_col);
    }
}

#[test]
fn control_endpoints_are_validated() {
    let w = "[watchers.x]\ncmd = \"sleep 1\"\n";
    for (key, value, needle) in [
        ("endpoint", "tcp://127.0.0.1", "expected tcp://HOST:PORT"),
        ("pubsub_endpoint", "udp://127.0.0.1:5", "expected tcp://HOST:PORT"),
        (
            "stats_endpoint",
            "tcp://127.0.0.1:99999",
            "expected tcp://HOST:PORT",
        ),
        ("endpoint", "ipc://", "invalid endpoint \"ipc://\""),
    ] {
        check("ep.toml", &format!("[ringmaster]\n{key} = \"{value}\"\n{w}"))
            .fails_with(needle)
            .at(&format!("2:{}", key.len() + 4));
    }
    check(
        "ep.ini",
        "[circus]\nendpoint = tcp://127.0.0.1:5555\npubsub_endpoint = tcp://localhost\n[watcher:x]\ncmd = sleep 1\n",
    )
    .fails_with("pubsub_endpoint")
    .at("3");
    check(
        "ep.toml",
        &format!("[ringmaster]\nendpoint = \"tcp://127.0.0.1:0\"\npubsub_endpoint = \"ipc:///tmp/rm-pub.sock\"\n{w}"),
    )
    .passes();
}

#[test]
fn ready_interval_zero_is_refused() {
    check(
        "ready.toml",
        "[watchers.x]\ncmd = \"sleep 1\"\n[watchers.x.ready]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\ninterval = 0\n",
    )
    .fails_with("ready.interval cannot be 0")
    .at("6:12");
}

#[test]
fn numprocesses_is_capped() {
    check(
        "np.toml",
        "[watchers.x]\ncmd = \"sleep 1\"\nnumprocesses = 10001\n",
    )
    .fails_with("more than the limit of 10000")
    .at("3:16");
    check(
        "np.toml",
        "[watchers.x]\ncmd = \"sleep 1\"\nnumprocesses = 10000\n",
    )
    .passes();
    check("np.ini", "[watcher:x]\ncmd = sleep 1\nnumprocesses = 20000\n")
        .fails_with("more than the limit")
        .at("3");
}

#[test]
fn run_endpoint_overrides_the_config() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ep.toml");
    std::fs::write(
        &path,
        "[ringmaster]\nendpoint = \"ipc://{dir}/config.sock\"\n[watchers.x]\ncmd = \"sleep 30\"\nautostart = false\n"
            .replace("{dir}", dir.path().to_str().expect("utf8 temp path")),
    )
    .expect("write config");
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .args(["--endpoint", "tcp://127.0.0.1:0", "--log-format", "json"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ringmaster");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    let endpoint = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["message"] == "control channel ready" {
                    break v["endpoint"].as_str().unwrap_or_default().to_string();
                }
                seen.push(line);
            }
            Err(_) => break String::new(),
        }
    };
    // SAFETY: plain kill(2) of the daemon this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(
        endpoint.starts_with("tcp://127.0.0.1:"),
        "endpoint {endpoint:?}; log: {seen:#?}"
    );
}

#[test]
fn invalid_utf8_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bytes.toml");
    std::fs::write(&path, b"[watchers.x]\ncmd = \"sl\xffeep\"\n").expect("write config");
    check_path(&path, dir).fails_with("not valid UTF-8").at("2:10");
}
