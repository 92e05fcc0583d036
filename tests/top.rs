//! `ringmaster top` end to end: the real daemon, the real binary in a real
//! terminal (tmux, with its own server socket and a fixed size), keys typed
//! with send-keys and the screen read with capture-pane. tmux is required
//! (tests/run.sh installs it): without it this test fails.

mod common;

use common::{endpoint, secs, Daemon, BIN};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A tmux server of our own (`tmux -L NAME`), killed on drop.
struct Tmux {
    socket: String,
    conf: std::path::PathBuf,
    /// Where the program's exit status is written when it ends.
    status: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const SESSION: &str = "top";

impl Tmux {
    /// Starts `argv` in a new detached session of `width`×`height`. A shell
    /// around it writes its exit status to a file (tmux's own `pane_dead_status`
    /// is sometimes never filled in); the pane stays so that the screen can be read.
    fn start(argv: &[&str], width: u16, height: u16) -> Tmux {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g status off\n").expect("write tmux.conf");
        let status = dir.path().join("status");
        let t = Tmux {
            socket: format!("ringmaster-top-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            conf,
            status: status.clone(),
            _dir: dir,
        };
        let (w, h) = (width.to_string(), height.to_string());
        let script = format!(
            "\"$@\"; echo $? > '{0}.tmp' && mv '{0}.tmp' '{0}'",
            status.display()
        );
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &w,
            "-y",
            &h,
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ];
        args.extend_from_slice(argv);
        let out = t.tmux(&args);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            // The socket goes in our temp dir (tmux-UID/NAME under it), removed with it.
            .env("TMUX_TMPDIR", self._dir.path())
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux (tests/run.sh installs it with apt-get): {e}"))
    }

    fn screen(&self) -> String {
        self.capture(&[])
    }

    /// The screen and the lines scrolled off it.
    fn scrollback(&self) -> String {
        self.capture(&["-S", "-"])
    }

    fn capture(&self, extra: &[&str]) -> String {
        let mut args = vec!["capture-pane", "-p", "-J", "-t", SESSION];
        args.extend_from_slice(extra);
        let out = self.tmux(&args);
        assert!(
            out.status.success(),
            "capture-pane: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let out = self.tmux(&["send-keys", "-t", SESSION, keys]);
        assert!(
            out.status.success(),
            "send-keys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Reads the screen until `pred` holds (bounded); returns that screen.
    /// A terminal has no event to wait for: this is the one polled condition.
    fn wait_screen(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `#{format}` of the pane (tmux's display-message).
    fn pane(&self, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", SESSION, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The program's exit status, once it has ended.
    fn exit_status(&self) -> Option<i32> {
        std::fs::read_to_string(&self.status).ok()?.trim().parse().ok()
    }

    /// Waits (bounded) for the program to end; returns its exit status.
    fn wait_exit(&self, what: &str, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.exit_status() {
                return code;
            }
            assert!(Instant::now() < deadline, "{what}; screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The pid column of the process table: words of the rows that start with a wid.
fn process_pids(screen: &str) -> Vec<i32> {
    screen
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l
                .split(|c: char| c.is_whitespace() || c == '│')
                .filter(|w| !w.is_empty())
                .collect();
            match w[..] {
                [wid, pid, "running", ..] if wid.parse::<u32>().is_ok() => pid.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn top_shows_watchers_scales_restarts_and_quits() {
    let mut d = Daemon::start(
        r#"
[watchers.topweb]
cmd = "sh"
args = ["-c", "echo hello-from-$$; exec sleep 3600"]
"#,
    );
    let first = d.wait_spawned("topweb", 1, secs(20))[0];
    let ep = endpoint(&d);
    let t = Tmux::start(&[BIN, "--endpoint", &ep, "top"], 140, 40);

    // The watcher table, its process and the log line from the history.
    let s = t.wait_screen("topweb with its process and log line", secs(20), |s| {
        s.contains("topweb") && s.contains("1/1") && s.contains(&format!("hello-from-{first}"))
    });
    assert_eq!(process_pids(&s), [first], "{s}");

    // `+`: one more process, seen by the daemon and on the screen.
    t.keys("+");
    let second = d.wait_spawned("topweb", 1, secs(20))[0];
    let s = t.wait_screen("2/2 and the new pid", secs(20), |s| {
        s.contains("2/2") && process_pids(s).contains(&second)
    });
    assert!(s.contains("incr topweb: ok"), "{s}");

    // `r` asks first; `y` restarts both processes with new pids.
    t.keys("r");
    t.wait_screen("the confirmation", secs(10), |s| s.contains("restart topweb? y"));
    t.keys("y");
    let fresh = d.wait_spawned("topweb", 2, secs(30));
    let s = t.wait_screen("the restarted pids", secs(20), |s| {
        let mut pids = process_pids(s);
        pids.sort();
        let mut want = fresh.clone();
        want.sort();
        pids == want
    });
    assert!(!process_pids(&s).contains(&first), "{s}");
    // The live log follows: a restarted process's line arrives over pubsub.
    t.wait_screen("a line of a restarted process", secs(20), |s| {
        fresh.iter().any(|p| s.contains(&format!("hello-from-{p}")))
    });

    t.keys("q");
    assert_eq!(
        t.wait_exit("top did not exit on q", secs(10)),
        0,
        "top's exit status"
    );
}

#[test]
fn top_ends_on_sigterm_and_gives_the_terminal_back() {
    let mut d = Daemon::start("[watchers.quiet]\ncmd = \"sleep 3600\"\n");
    d.wait_spawned("quiet", 1, secs(20));
    let t = Tmux::start(&[BIN, "--endpoint", &endpoint(&d), "top"], 100, 30);
    t.wait_screen("the watcher", secs(20), |s| {
        s.contains("quiet") && s.contains("1/1")
    });
    assert_eq!(
        t.pane("#{alternate_on}"),
        "1",
        "top draws on the alternate screen"
    );
    // The pane runs `sh -c`, whose one child is top.
    let sh: i32 = t.pane("#{pane_pid}").parse().expect("pane_pid");
    let children = std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children"))
        .expect("children of the pane's shell");
    let top: i32 = children
        .split_whitespace()
        .next()
        .expect("top runs")
        .parse()
        .expect("a pid");
    unsafe { libc::kill(top, libc::SIGTERM) };
    assert_eq!(t.wait_exit("top did not exit on SIGTERM", secs(10)), 0);
    assert_eq!(t.pane("#{alternate_on}"), "0", "the terminal is given back");
}

#[test]
fn top_without_a_daemon_fails_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = format!("ipc://{}/none.sock", dir.path().display());
    // A terminal of its own, so the failure is about the daemon, not the terminal.
    let t = Tmux::start(&[BIN, "--endpoint", &ep, "top"], 100, 20);
    let code = t.wait_exit("top did not exit", secs(10));
    assert_eq!(code, 1);
    let text = t.scrollback();
    assert!(text.contains("cannot reach the ringmaster daemon"), "{text}");
}

#[test]
fn top_needs_a_terminal() {
    let out = Command::new(BIN)
        .args(["--endpoint", "ipc:///nonexistent/x.sock", "top"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ringmaster top");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a terminal"));
}
