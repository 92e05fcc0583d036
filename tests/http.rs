//! The HTTP endpoint on the real daemon, on loopback port 0: /metrics read
//! by the Prometheus client's own parser, the health probes, the token
//! rules, CSRF, bad input, and the refusal of a non-loopback address
//! without a chosen token.

mod common;

use common::web::{self, get, post_json, request};
use common::{secs, Daemon};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const TOKEN: &str = "test-token-0123456789abcdef";

fn venv_python() -> String {
    let v = std::env::var("RINGMASTER_TEST_VENV").unwrap_or_else(|_| {
        panic!("RINGMASTER_TEST_VENV is not set: run the tests with `bash tests/run.sh`, which installs prometheus-client")
    });
    format!("{v}/bin/python")
}

/// Parses an OpenMetrics exposition with `prometheus_client`'s parser (which
/// rejects what Prometheus would); returns {family: {type, samples: [[name, labels, value]]}}.
fn parse_metrics(text: &str) -> Value {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(venv_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the venv's python");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(m: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m[family]["samples"].as_array()?.iter().find_map(|s| {
        let ok = s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v);
        ok.then(|| s[2].as_f64()).flatten()
    })
}

fn start(extra: &str, env: &[(&str, &str)]) -> (Daemon, SocketAddr) {
    let config = format!(
        r#"
[ringmaster]
http_endpoint = "127.0.0.1:0"
{extra}

[watchers.web]
cmd = "sh -c 'echo hello from $$; exec sleep 1000'"
numprocesses = 2

[watchers.crashy]
cmd = "sh -c 'echo oops >&2; sleep 0.2; exit 3'"
"#
    );
    let mut d = Daemon::start_with(&config, "toml", env);
    let addr = web::http_addr(&mut d);
    (d, addr)
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

#[test]
fn metrics_are_valid_openmetrics_with_every_family() {
    let (mut d, addr) = start("", &[("RINGMASTER_HTTP_TOKEN", TOKEN)]);
    d.wait_spawned("web", 2, secs(10));
    // crashy exits with status 3 and is respawned: exits, restarts and stderr lines count.
    d.wait_spawned("crashy", 2, secs(10));
    // One control request, counted by command and status.
    common::call(&d, "numwatchers", json!({}));
    let m = web::eventually("crashy's restart counted", secs(10), || {
        let r = get(addr, "/metrics", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/openmetrics-text"));
        let m = parse_metrics(&r.text());
        (sample(
            &m,
            "ringmaster_watcher_restarts",
            "ringmaster_watcher_restarts_total",
            &[("watcher", "crashy")],
        ) >= Some(1.0))
        .then_some(m)
    });
    for family in [
        "ringmaster_build_info",
        "ringmaster_start_time_seconds",
        "ringmaster_watcher_state",
        "ringmaster_watcher_processes",
        "ringmaster_watcher_processes_desired",
        "ringmaster_watcher_ready_processes",
        "ringmaster_watcher_restarts",
        "ringmaster_process_exits",
        "ringmaster_process_cpu_seconds",
        "ringmaster_process_resident_memory_bytes",
        "ringmaster_process_start_time_seconds",
        "ringmaster_log_lines",
        "ringmaster_control_requests",
    ] {
        assert!(m.get(family).is_some(), "no family {family} in {m}");
    }
    assert_eq!(m["ringmaster_watcher_restarts"]["type"], "counter");
    assert_eq!(m["ringmaster_process_cpu_seconds"]["type"], "counter");
    let web = [("watcher", "web")];
    assert_eq!(
        sample(
            &m,
            "ringmaster_watcher_processes",
            "ringmaster_watcher_processes",
            &web
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "ringmaster_watcher_processes_desired",
            "ringmaster_watcher_processes_desired",
            &web
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "ringmaster_watcher_state",
            "ringmaster_watcher_state",
            &[("watcher", "web"), ("state", "active")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "ringmaster_watcher_state",
            "ringmaster_watcher_state",
            &[("watcher", "web"), ("state", "stopped")]
        ),
        Some(0.0)
    );
    let rss = sample(
        &m,
        "ringmaster_process_resident_memory_bytes",
        "ringmaster_process_resident_memory_bytes",
        &[("watcher", "web"), ("wid", "1")],
    );
    assert!(rss > Some(0.0), "rss {rss:?}");
    let exits = sample(
        &m,
        "ringmaster_process_exits",
        "ringmaster_process_exits_total",
        &[("watcher", "crashy"), ("reason", "failed")],
    );
    assert!(exits >= Some(1.0), "exits {exits:?}");
    let errs = sample(
        &m,
        "ringmaster_log_lines",
        "ringmaster_log_lines_total",
        &[("watcher", "crashy"), ("stream", "stderr")],
    );
    assert!(errs >= Some(1.0), "stderr lines {errs:?}");
    let req = sample(
        &m,
        "ringmaster_control_requests",
        "ringmaster_control_requests_total",
        &[("command", "numwatchers"), ("status", "ok")],
    );
    assert_eq!(req, Some(1.0));
    assert_eq!(
        sample(
            &m,
            "ringmaster_build_info",
            "ringmaster_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

#[test]
fn healthz_and_readyz_follow_the_watchers() {
    let config = r#"
[ringmaster]
http_endpoint = "127.0.0.1:0"

[watchers.web]
cmd = "sleep 1000"
numprocesses = 2
"#;
    let mut d = Daemon::start_with(config, "toml", &[("RINGMASTER_HTTP_TOKEN", TOKEN)]);
    let addr = web::http_addr(&mut d);
    assert_eq!(get(addr, "/healthz", &[]).status, 200);
    d.wait_spawned("web", 2, secs(10));
    web::eventually("ready", secs(10), || {
        (get(addr, "/readyz", &[]).status == 200).then_some(())
    });
    let (k, v) = bearer();
    let r = post_json(
        addr,
        "/api/action",
        &[(k, &v)],
        &json!({"action": "stop", "watcher": "web"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let why = web::eventually("not ready once web stops", secs(10), || {
        let r = get(addr, "/readyz", &[]);
        (r.status == 503).then(|| r.json())
    });
    assert_eq!(why["status"], "not ready");
    assert!(
        why["reasons"][0].as_str().unwrap_or("").starts_with("web: "),
        "{why}"
    );
    let r = post_json(
        addr,
        "/api/action",
        &[(k, &v)],
        &json!({"action": "start", "watcher": "web"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    web::eventually("ready again", secs(10), || {
        (get(addr, "/readyz", &[]).status == 200).then_some(())
    });
    assert_eq!(get(addr, "/healthz", &[]).json()["status"], "ok");
}

#[test]
fn the_token_is_required_and_traded_for_a_cookie() {
    let (mut d, addr) = start("", &[]);
    d.wait_spawned("web", 2, secs(10));
    let token = web::generated_token(&d);
    let mode = std::fs::metadata(d.path("ringmaster/http.json")).expect("http.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);

    // Nothing without the token; /metrics and the probes stay open.
    for path in ["/api/state", "/api/events", "/api/logs?watcher=web"] {
        assert_eq!(get(addr, path, &[]).status, 401, "{path}");
        assert_eq!(
            get(addr, path, &[("Authorization", "Bearer wrong-wrong-wrong")]).status,
            401
        );
    }
    let page = get(addr, "/", &[]);
    assert_eq!(page.status, 401);
    assert!(!page.text().contains("csrf-token"));
    assert!(
        !page.text().contains("web"),
        "the login page tells nothing about the watchers"
    );
    assert_eq!(get(addr, "/?token=wrong", &[]).status, 401);
    assert_eq!(get(addr, "/metrics", &[]).status, 200);
    assert_eq!(get(addr, "/healthz", &[]).status, 200);

    // The login URL sets an HttpOnly SameSite cookie and drops the token from the URL.
    let login = get(addr, &format!("/?token={token}"), &[]);
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), Some("/"));
    let cookie = login.header("set-cookie").expect("a cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let state = get(addr, "/api/state", &[("Cookie", &pair)]);
    assert_eq!(state.status, 200);
    let names: Vec<String> = state.json()["watchers"]
        .as_array()
        .expect("watchers")
        .iter()
        .map(|w| w["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(names.contains(&"web".to_string()), "{names:?}");
    let page = get(addr, "/", &[("Cookie", &pair)]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("csrf-token"));
    assert!(page.header("content-security-policy").is_some());
    // The bearer form works for scripts.
    let auth = format!("Bearer {token}");
    assert_eq!(get(addr, "/api/state", &[("Authorization", &auth)]).status, 200);
}

#[test]
fn the_token_comes_from_the_environment_or_a_file_and_children_do_not_see_it() {
    let config = r#"
[ringmaster]
http_endpoint = "127.0.0.1:0"
http_metrics_auth = true

[watchers.env]
cmd = "sh -c 'echo token=[$RINGMASTER_HTTP_TOKEN]; exec sleep 1000'"
"#;
    let mut d = Daemon::start_with(config, "toml", &[("RINGMASTER_HTTP_TOKEN", TOKEN)]);
    let addr = web::http_addr(&mut d);
    let (k, v) = bearer();
    assert_eq!(get(addr, "/api/state", &[(k, &v)]).status, 200);
    // http_metrics_auth: the probes and /metrics need it too.
    assert_eq!(get(addr, "/metrics", &[]).status, 401);
    assert_eq!(get(addr, "/readyz", &[]).status, 401);
    assert_eq!(get(addr, "/metrics", &[(k, &v)]).status, 200);
    let logs = web::eventually("the child's line", secs(10), || {
        let r = get(addr, "/api/logs?watcher=env", &[(k, &v)]);
        let l = r.json();
        (!l.as_array()?.is_empty()).then_some(l)
    });
    assert_eq!(logs[0]["line"], "token=[]");
    drop(d);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file-0123456789\n").expect("token file");
    let config = format!(
        "[ringmaster]\nhttp_endpoint = \"127.0.0.1:0\"\nhttp_token_file = \"{}\"\n[watchers.a]\ncmd = \"sleep 1000\"\n",
        file.display()
    );
    let mut d = Daemon::start(&config);
    let addr = web::http_addr(&mut d);
    assert_eq!(
        get(
            addr,
            "/api/state",
            &[("Authorization", "Bearer from-a-file-0123456789")]
        )
        .status,
        200
    );
    assert_eq!(get(addr, "/api/state", &[(k, &v)]).status, 401);

    std::fs::write(&file, "short\n").expect("token file");
    let mut d = Daemon::start(&config);
    assert_eq!(d.wait_exit(secs(10)), 1, "a short token is refused");
}

#[test]
fn changes_need_post_csrf_and_same_origin() {
    let (mut d, addr) = start("", &[("RINGMASTER_HTTP_TOKEN", TOKEN)]);
    d.wait_spawned("web", 2, secs(10));
    let cookie = format!("ringmaster_{}={TOKEN}", addr.port());
    let page = get(addr, "/", &[("Cookie", &cookie)]).text();
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries a CSRF token")
        .to_string();
    let incr = json!({"action": "incr", "watcher": "web"});
    let origin = format!("http://{addr}");
    let r = post_json(addr, "/api/action", &[("Cookie", &cookie)], &incr);
    assert_eq!(r.status, 403, "no CSRF header: {}", r.text());
    let r = post_json(
        addr,
        "/api/action",
        &[("Cookie", &cookie), ("X-CSRF-Token", "nope")],
        &incr,
    );
    assert_eq!(r.status, 403);
    let r = post_json(
        addr,
        "/api/action",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", "http://evil.example"),
        ],
        &incr,
    );
    assert_eq!(r.status, 403, "cross-origin: {}", r.text());
    // A GET never changes anything.
    assert_eq!(get(addr, "/api/action", &[("Cookie", &cookie)]).status, 405);
    let r = post_json(
        addr,
        "/api/action",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf), ("Origin", &origin)],
        &incr,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    d.wait_spawned("web", 1, secs(10));
    let (k, v) = bearer();
    let state = get(addr, "/api/state", &[(k, &v)]).json();
    let web = state["watchers"]
        .as_array()
        .expect("watchers")
        .iter()
        .find(|w| w["name"] == "web")
        .expect("web")
        .clone();
    assert_eq!(web["desired"], 3);
}

#[test]
fn bad_input_gets_a_4xx_with_a_reason() {
    let (mut d, addr) = start("", &[("RINGMASTER_HTTP_TOKEN", TOKEN)]);
    d.wait_spawned("web", 2, secs(10));
    let (k, v) = bearer();
    let h = [(k, v.as_str())];
    let cases = [
        (json!({"action": "restart", "watcher": "nope"}), 404),
        (json!({"action": "explode"}), 400),
        (json!({"action": "incr", "watcher": "web", "n": 0}), 400),
        (json!({"action": "incr", "watcher": "web", "n": -1}), 400),
        (
            json!({"action": "incr", "watcher": "web", "n": 99999999999u64}),
            400,
        ),
        (
            json!({"action": "signal", "watcher": "web", "signal": "NOPE"}),
            400,
        ),
        (json!({"action": "stop", "unknown": true}), 400),
        (json!(["not", "an", "object"]), 400),
    ];
    for (body, want) in cases {
        let r = post_json(addr, "/api/action", &h, &body);
        assert_eq!(r.status, want, "{body}: {}", r.text());
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}: a reason"
        );
    }
    let r = request(addr, "POST", "/api/action", &h, b"{not json");
    assert_eq!(r.status, 400);
    let huge = format!(
        "{{\"action\":\"start\",\"watcher\":\"{}\"}}",
        "x".repeat(64 * 1024)
    );
    let r = request(addr, "POST", "/api/action", &h, huge.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(get(addr, "/api/logs?watcher=nope", &h).status, 404);
    assert_eq!(get(addr, "/api/logs?watcher=web&lines=many", &h).status, 400);
    assert_eq!(get(addr, "/api/logs", &h).status, 400);
    assert_eq!(get(addr, "/no/such/page", &h).status, 404);
    assert_eq!(get(addr, "/assets/nope.js", &[]).status, 404);
    // Still serving, nothing crashed.
    assert_eq!(get(addr, "/healthz", &[]).status, 200);
    assert!(common::alive(d.pid()));
}

#[test]
fn the_live_stream_carries_state_and_output() {
    let (mut d, addr) = start("", &[("RINGMASTER_HTTP_TOKEN", TOKEN)]);
    d.wait_spawned("web", 2, secs(10));
    let (k, v) = bearer();
    let (kind, state) = web::sse_until(addr, "/api/events", &[(k, &v)], secs(10), |e, _| e == "state");
    assert_eq!(kind, "state");
    assert!(state["watchers"].as_array().is_some_and(|w| w.len() == 2));
    // crashy writes to stderr every time it starts.
    let (_, line) = web::sse_until(addr, "/api/events", &[(k, &v)], secs(10), |e, d| {
        e == "log" && d["w"] == "crashy"
    });
    assert_eq!(line["s"], "stderr");
    assert_eq!(line["line"], "oops");
    let (_, stats) = web::sse_until(addr, "/api/events", &[(k, &v)], secs(10), |e, _| e == "stats");
    assert!(stats["p"].as_object().is_some_and(|p| !p.is_empty()), "{stats}");
}

#[test]
fn a_non_loopback_address_without_a_chosen_token_refuses_to_start() {
    let config = r#"
[ringmaster]
http_endpoint = "0.0.0.0:0"

[watchers.web]
cmd = "sleep 1000"
"#;
    let mut d = Daemon::start(config);
    assert_eq!(d.wait_exit(secs(10)), 1);
    let said = d.log.iter().any(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a loopback address"))
    });
    assert!(said, "a clear error: {:?}", d.log);
    assert!(
        !d.log.iter().any(|e| e["message"] == "spawned"),
        "nothing started"
    );
}

#[test]
fn ringmaster_dashboard_prints_the_login_url() {
    let (mut d, addr) = start("", &[]);
    let token = web::generated_token(&d);
    d.wait_spawned("web", 2, secs(10));
    let out = std::process::Command::new(common::BIN)
        .args(["dashboard", "--no-browser"])
        .env("XDG_RUNTIME_DIR", d.dir.path())
        .output()
        .expect("ringmaster dashboard");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(url, format!("http://{addr}/?token={token}"));
    let path = url.trim_start_matches(&format!("http://{addr}"));
    assert_eq!(get(addr, path, &[]).status, 303);
    d.stop(Duration::from_secs(10));
    // Once the daemon is gone, the file is too.
    assert!(!d.path("ringmaster/http.json").exists());
}
