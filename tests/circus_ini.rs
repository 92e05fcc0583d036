//! circus.ini files: Circus's own example and test configs convert (or are
//! refused naming the unsupported feature and its line), the parser follows
//! Circus's StrictConfigParser, and a converted file runs under the daemon
//! with the real circusctl.

mod common;
use common::*;
use ringmaster::config::circus_ini::{self, Severity};
use ringmaster::config::{self, Format};
use std::path::Path;

fn data(name: &str) -> std::path::PathBuf {
    repo_root().join("tests/data/circus").join(name)
}

#[test]
fn circus_example_and_test_configs_convert() {
    // Files Circus ships; the refused ones use features Ringmaster cannot honour.
    let refused = [
        ("example1.ini", "httpd"),
        ("example5.ini", "httpd"),
        ("hooks.ini", "Python hooks"),
        ("virtualenv.ini", "virtualenv"),
        ("empty_section.ini", "plugins are not supported"),
        ("reload_base.ini", "plugins are not supported"),
        ("issue137.ini", "no such user"),
        ("issue442.ini", "expected a boolean"),
    ];
    let mut n = 0;
    for entry in std::fs::read_dir(repo_root().join("tests/data/circus")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let res = config::load(&path, Some(Format::Ini));
        match refused.iter().find(|(f, _)| *f == name) {
            Some((_, why)) => {
                let e = res.expect_err(&name);
                let text = e.one_line_each().join("\n");
                assert!(text.contains(why), "{name}: {text}");
                assert!(
                    text.contains(&format!("{name}:")),
                    "{name}: error without file:line: {text}"
                );
            }
            None => {
                let cfg = res.unwrap_or_else(|e| panic!("{name}: {}", e.one_line_each().join("\n")));
                // Round trip: the printed TOML loads to the same config.
                let conv = circus_ini::convert(&path).unwrap();
                let again = config::load_toml_str(&path, &circus_ini::to_toml_string(&conv.table)).unwrap();
                assert_eq!(again.watchers, cfg.watchers, "{name}");
                n += 1;
            }
        }
    }
    assert!(n >= 12, "only {n} files converted");
}

#[test]
fn circus_defaults_and_quirks_are_kept() {
    let cfg = config::load(&data("circus.ini"), Some(Format::Ini)).unwrap();
    assert_eq!(cfg.global.endpoint.as_deref(), Some("tcp://127.0.0.1:5555"));
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "s.ini",
        "[socket:s]\nbacklog = 10\n[watcher:w]\ncmd = sleep 1\nuse_sockets = 1\n",
    );
    let c = config::load(&p, Some(Format::Ini)).unwrap();
    match &c.sockets[0].addr {
        config::SocketAddrSpec::Inet { host, port, .. } => {
            assert_eq!((host.as_str(), *port), ("localhost", 8080))
        }
        other => panic!("{other:?}"),
    }
    // A non-copy_env watcher gets no PATH, as in Circus.
    assert!(c.watchers.iter().all(|w| w.copy_env || !w.copy_path));
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn parser_follows_strict_config_parser() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "extra.ini",
        "[watcher:a]\nnumprocesses = 9\nwarmup_delay = 2\n[watcher:b]\ncmd = sleep 2\n",
    );
    std::env::set_var("RM_INI_TEST_HOME", "/home/x");
    let main = write(
        dir.path(),
        "main.ini",
        "# comment\n; comment\nrem a comment\nREM another\n[circus]\ninclude = extra.ini nothing-*.ini\n\n\
         [watcher:a]\ncmd = sleep 1 ; inline comment\nargs = --a\n  --b\nnumprocesses = 2\nnumprocesses = 3\n\
         working_dir = $(circus.env.rm_ini_test_home)\n\
         [env:a*,z]\nFOO = bar\n[env:a]\nFOO = baz\nP = $PATH:/x\n[env]\nGLOBAL = \"\"\n",
    );
    let conv = circus_ini::convert(&main).unwrap();
    let w = &conv.table["watchers"]["a"];
    assert_eq!(w["cmd"].as_str(), Some("sleep 1"), "inline ; comment stripped");
    assert_eq!(w["args"].as_str(), Some("--a\n--b"), "continuation joined");
    assert_eq!(
        w["numprocesses"].as_integer(),
        Some(2),
        "first definition wins, include cannot override"
    );
    assert_eq!(
        w["warmup_delay"].as_integer(),
        Some(2),
        "include extends the section"
    );
    assert_eq!(
        w["working_dir"].as_str(),
        Some("/home/x"),
        "$(circus.env.X), any case"
    );
    assert_eq!(w["env"]["FOO"].as_str(), Some("baz"), "later [env:…] wins");
    assert_eq!(
        w["env"]["P"].as_str(),
        Some("$PATH:/x"),
        "[env:…] values raw ($UPPER expands at spawn)"
    );
    assert_eq!(conv.table["env"]["GLOBAL"].as_str(), Some(""), "\"\" is empty");
    assert!(conv.table["watchers"].get("b").is_some(), "included watcher");
    let warn = conv
        .diagnostics
        .iter()
        .find(|d| d.message.contains("nothing-*.ini"))
        .expect("warning for empty include");
    assert_eq!(warn.severity, Severity::Warning);
    assert_eq!(warn.location.line, 6);
}

#[test]
fn errors_name_the_ini_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.ini",
        "[watcher:a]\ncmd = sleep 10\ncopy_env = maybe\nhooks.before_start = x.y\n",
    );
    let e = config::load(&p, Some(Format::Ini)).unwrap_err();
    let lines = e.one_line_each();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.ini:3") && l.contains("copy_env")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.ini:4") && l.contains("hooks")),
        "{lines:?}"
    );
    // `ringmaster check` exits 1 with the same locations.
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.ini:3"));
}

#[test]
fn example_circus_ini_checks_and_a_converted_ini_runs_under_circusctl() {
    let out = std::process::Command::new(BIN)
        .args(["check", "config/circus.ini"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conv = std::process::Command::new(BIN)
        .args(["convert", "config/circus.ini"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&conv.stdout).contains("[watchers.web.stdout_stream]"));
    // The same file on free ports, run for real.
    let text = std::fs::read_to_string(repo_root().join("config/circus.ini"))
        .unwrap()
        .replace("tcp://127.0.0.1:5555", "tcp://127.0.0.1:0")
        .replace("tcp://127.0.0.1:5556", "tcp://127.0.0.1:0")
        .replace("port = 8080", "port = 0")
        .replace("ringmaster-web.log", "{dir}/web.log");
    let mut d = Daemon::start_with(&text, "ini", &[]);
    let v = d.wait_msg("control channel ready", None, secs(10));
    let ep = v["endpoint"].as_str().unwrap().to_string();
    let addr = d.wait_listening("web");
    d.wait_spawned("web", 4, secs(10));
    let body = http_get(&addr).unwrap();
    assert!(body.starts_with("hello from pid"), "{body}");
    let venv = std::env::var("RINGMASTER_TEST_VENV").expect("RINGMASTER_TEST_VENV: run `bash tests/run.sh`");
    let out = std::process::Command::new(Path::new(&venv).join("bin/circusctl"))
        .args(["--endpoint", &ep, "status"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ticker: active\nweb: active"
    );
    eventually("ticker's [env:ticker] variable used", secs(10), || {
        d.stdout_text().contains("tick from worker 1")
    });
}
