//! Compatibility with Circus's own tools: the real `circusctl` 0.19 and
//! Circus's Python client and consumer classes, installed from PyPI by
//! `tests/run.sh` into the virtualenv named by RINGMASTER_TEST_VENV, drive
//! Ringmaster over tcp:// and ipc://. These tests fail (they do not skip)
//! when the tools are missing.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn venv() -> PathBuf {
    let v = std::env::var("RINGMASTER_TEST_VENV").unwrap_or_else(|_| {
        panic!("RINGMASTER_TEST_VENV is not set: run the tests with `bash tests/run.sh`, which installs circus==0.19.0")
    });
    let p = PathBuf::from(v);
    assert!(
        p.join("bin/circusctl").exists(),
        "{} has no circusctl: run `bash tests/run.sh`",
        p.display()
    );
    p
}

struct Ctl {
    bin: PathBuf,
    endpoint: String,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(&self.bin)
            .arg("--endpoint")
            .arg(&self.endpoint)
            .args(args)
            .output()
            .expect("run circusctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "circusctl {args:?}: {out} {err}");
        out
    }
}

fn daemon(endpoints: &str) -> (Daemon, String, String) {
    let mut d = Daemon::start(&format!(
        r#"
[ringmaster]
{endpoints}
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
numprocesses = 2
[watchers.sleeper]
cmd = "sleep 1000"
graceful_timeout = 2
"#,
        w = worker_script()
    ));
    let v = d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("web", 2, secs(10));
    d.wait_spawned("sleeper", 1, secs(10));
    (
        d,
        v["endpoint"].as_str().unwrap().to_string(),
        v["pubsub"].as_str().unwrap().to_string(),
    )
}

fn circusctl_suite(endpoint: &str) {
    let ctl = Ctl {
        bin: venv().join("bin/circusctl"),
        endpoint: endpoint.to_string(),
    };
    assert_eq!(ctl.ok(&["list"]), "sleeper,web");
    assert_eq!(ctl.ok(&["list", "web"]).split(',').count(), 2);
    assert_eq!(ctl.ok(&["status"]), "sleeper: active\nweb: active");
    assert_eq!(ctl.ok(&["status", "web"]), "active");
    assert_eq!(ctl.ok(&["numwatchers"]), "2");
    assert_eq!(ctl.ok(&["numprocesses"]), "3");
    assert_eq!(ctl.ok(&["incr", "sleeper", "2", "--waiting"]), "3");
    assert_eq!(ctl.ok(&["numprocesses", "sleeper"]), "3");
    assert_eq!(ctl.ok(&["decr", "sleeper", "--waiting"]), "2");
    assert_eq!(ctl.ok(&["stop", "sleeper", "--waiting"]), "ok");
    assert_eq!(ctl.ok(&["status", "sleeper"]), "stopped");
    assert_eq!(ctl.ok(&["start", "sleeper", "--waiting"]), "ok");
    assert_eq!(ctl.ok(&["status", "sleeper"]), "active");
    let before = ctl.ok(&["list", "sleeper"]);
    assert_eq!(ctl.ok(&["restart", "sleeper", "--waiting"]), "ok");
    assert_ne!(ctl.ok(&["list", "sleeper"]), before);
    let opts = ctl.ok(&["options", "sleeper"]);
    assert!(opts.lines().any(|l| l == "cmd: sleep 1000"), "{opts}");
    assert_eq!(ctl.ok(&["get", "sleeper", "numprocesses"]), "numprocesses: 2");
    assert_eq!(ctl.ok(&["set", "sleeper", "graceful_timeout", "3"]), "ok");
    assert_eq!(
        ctl.ok(&["get", "sleeper", "graceful_timeout"]),
        "graceful_timeout: 3.0"
    );
    assert_eq!(ctl.ok(&["signal", "sleeper", "CONT"]), "ok");
    let socks = ctl.ok(&["listsockets"]);
    assert!(socks.contains("socket 'web' at 127.0.0.1:"), "{socks}");
    let stats = ctl.ok(&["stats", "web"]);
    assert!(stats.starts_with("web:") && stats.lines().count() == 3, "{stats}");
    let dstats = ctl.ok(&["dstats"]);
    assert!(
        dstats.starts_with("Main Process:") && dstats.contains("ringmaster"),
        "{dstats}"
    );
    let j: Value = serde_json::from_str(&ctl.ok(&["--json", "status"])).unwrap();
    assert_eq!(j["statuses"]["web"], "active");
    assert_eq!(j["status"], "ok");
    // An error reply: message on stdout/stderr and exit code 3, as with circusd.
    let (code, out, err) = ctl.run(&["get", "sleeper", "bogus"]);
    assert_eq!(code, 3, "{out} {err}");
    assert!(
        format!("{out}{err}").contains("'bogus' option not found"),
        "{out} {err}"
    );
}

fn python_suite(endpoint: &str, pubsub: &str) {
    let script = repo_root().join("tests/python/client_consumer.py");
    let out = Command::new(venv().join("bin/python"))
        .arg(script)
        .args([endpoint, pubsub])
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["list"]["watchers"], serde_json::json!(["sleeper", "web"]));
    assert_eq!(v["status"]["status"], "active");
    // The circusctl suite before left sleeper at 2 processes.
    assert_eq!(v["incr"]["numprocesses"], 3);
    assert_eq!(v["decr"]["numprocesses"], 2);
    let events: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "watcher.sleeper.kill",
            "watcher.sleeper.reap",
            "watcher.sleeper.spawn"
        ],
        "{v}"
    );
    assert!(v["reaped"].as_array().unwrap().contains(&v["killed"]), "{v}");
}

#[test]
fn circusctl_and_python_client_over_tcp() {
    let (mut d, ep, pubsub) =
        daemon("endpoint = \"tcp://127.0.0.1:0\"\npubsub_endpoint = \"tcp://127.0.0.1:0\"");
    assert!(ep.starts_with("tcp://127.0.0.1:") && !ep.ends_with(":0"), "{ep}");
    circusctl_suite(&ep);
    python_suite(&ep, &pubsub);
    let ctl = Ctl {
        bin: venv().join("bin/circusctl"),
        endpoint: ep,
    };
    assert_eq!(ctl.ok(&["quit"]), "ok");
    assert_eq!(d.wait_exit(secs(15)), 0);
}

#[test]
fn circusctl_and_python_client_over_ipc() {
    let (mut d, ep, pubsub) = daemon("");
    assert!(ep.starts_with("ipc://"), "{ep}");
    circusctl_suite(&ep);
    python_suite(&ep, &pubsub);
    let ctl = Ctl {
        bin: venv().join("bin/circusctl"),
        endpoint: ep.clone(),
    };
    assert_eq!(ctl.ok(&["quit"]), "ok");
    assert_eq!(d.wait_exit(secs(15)), 0);
    let path = ep.trim_start_matches("ipc://");
    assert!(
        !std::path::Path::new(path).exists(),
        "ipc socket file left behind"
    );
}
