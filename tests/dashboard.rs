//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver (WebDriver), against the real daemon on loopback port 0.
//! These tests fail, never skip, when Chromium or chromedriver is missing
//! (`tests/run.sh` installs Debian's `chromium` and `chromium-driver`).
//!
//! `RINGMASTER_SCREENSHOT=path` makes the first test save its screenshot
//! there (bench/dashboard-screenshot uses it for docs/dashboard.png).

mod common;

use common::web::{self, Browser};
use common::{secs, Daemon};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;

const CONFIG: &str = r#"
[ringmaster]
http_endpoint = "127.0.0.1:0"

[watchers.web]
cmd = "sh -c 'i=0; while true; do i=$((i+1)); echo \"GET /orders/$i 200 in 3ms\"; sleep 0.5; done'"
numprocesses = 3

[watchers.worker]
cmd = "sh -c 'while true; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo job done; echo warning: slow job >&2; sleep 1; done'"
numprocesses = 2

[watchers.talker]
cmd = "sh -c 'echo waiting; while [ ! -f {dir}/go ]; do sleep 0.1; done; echo \"MARKER-$(cat {dir}/go)\"; exec sleep 1000'"

[watchers.cron]
cmd = "sleep 1000"
autostart = false
"#;

fn start() -> (Daemon, SocketAddr, String) {
    let mut d = Daemon::start(CONFIG);
    let addr = web::http_addr(&mut d);
    d.wait_spawned("web", 3, secs(15));
    d.wait_spawned("worker", 2, secs(15));
    d.wait_spawned("talker", 1, secs(15));
    let token = web::generated_token(&d);
    (d, addr, token)
}

fn pids_of(b: &Browser, watcher: &str) -> Vec<i64> {
    let v = b.exec(
        "const r = document.querySelector(`tr.watcher[data-name=\"${arguments[0]}\"]`);
         return r ? r.dataset.pids : null;",
        json!([watcher]),
    );
    v.as_str()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn log_in(b: &Browser, addr: SocketAddr, token: &str) {
    b.goto(&format!("http://{addr}/?token={token}"));
    // The token is traded for a cookie and leaves the address bar.
    assert_eq!(b.url(), format!("http://{addr}/"));
    b.wait_js(
        "the watchers table",
        secs(15),
        "return document.querySelectorAll('tr.watcher').length === 4 || null;",
    );
}

#[test]
fn log_in_see_the_watchers_and_restart_one() {
    let (_d, addr, token) = start();
    let b = Browser::start();
    log_in(&b, addr, &token);
    let names = b.exec(
        "return [...document.querySelectorAll('tr.watcher')].map(r => [r.dataset.name, r.dataset.state]);",
        json!([]),
    );
    let names: HashSet<(String, String)> = serde_json::from_value(names).expect("names");
    for (w, s) in [
        ("web", "active"),
        ("worker", "active"),
        ("talker", "active"),
        ("cron", "stopped"),
    ] {
        assert!(
            names.contains(&(w.to_string(), s.to_string())),
            "{w} {s} in {names:?}"
        );
    }
    b.wait_js(
        "the live indicator",
        secs(10),
        "return document.getElementById('live').dataset.state === 'live' || null;",
    );
    let before = pids_of(&b, "web");
    assert_eq!(before.len(), 3, "{before:?}");
    // Wait for a few CPU/RSS samples so the screenshot has sparklines.
    b.wait_js(
        "memory figures",
        secs(15),
        "return [...document.querySelectorAll('tr.proc .spark.mem span')].some(s => s.textContent.includes('iB')) || null;",
    );
    if let Ok(path) = std::env::var("RINGMASTER_SCREENSHOT") {
        // Some history first: the sparklines need more than one point.
        b.wait_js(
            "several samples",
            secs(30),
            "return (document.querySelector('tr.proc polyline')?.getAttribute('points') || '').split(' ').length >= 8 || null;",
        );
        b.click("tr.watcher[data-name=\"web\"] td.name");
        b.wait_js(
            "web's logs",
            secs(10),
            "return document.querySelectorAll('#log-lines .line').length >= 5 || null;",
        );
        std::fs::write(&path, b.screenshot()).expect("write the screenshot");
    }
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");

    b.click("button[data-action=\"restart\"][data-watcher=\"web\"]");
    b.wait_js(
        "the confirmation",
        secs(5),
        "return document.getElementById('confirm').open || null;",
    );
    b.click("#confirm-ok");
    let after = web::eventually("web's pids replaced", secs(30), || {
        let now = pids_of(&b, "web");
        (now.len() == 3 && now.iter().all(|p| !before.contains(p))).then_some(now)
    });
    assert_eq!(after.len(), 3);
}

#[test]
fn a_new_log_line_appears_live() {
    let (d, addr, token) = start();
    let b = Browser::start();
    log_in(&b, addr, &token);
    b.click("tr.watcher[data-name=\"talker\"] td.name");
    b.wait_js(
        "talker's first line",
        secs(10),
        "return document.getElementById('log-lines').textContent.includes('waiting') || null;",
    );
    let marker = format!("{}", std::process::id());
    std::fs::write(d.path("go"), &marker).expect("write go");
    let found: Value = b.wait_js(
        "the new line in the page",
        secs(15),
        "return [...document.querySelectorAll('#log-lines .line .msg')].map(e => e.textContent).find(t => t.startsWith('MARKER-')) || null;",
    );
    assert_eq!(found, json!(format!("MARKER-{marker}")));
    // The stream filter hides stdout when stderr is picked.
    b.click("#log-stream button[data-stream=\"stderr\"]");
    let n = b.exec(
        "return document.querySelectorAll('#log-lines .line').length;",
        json!([]),
    );
    assert_eq!(n, 0);
}

#[test]
fn a_wrong_token_gets_nothing() {
    let (_d, addr, _token) = start();
    let b = Browser::start();
    b.goto(&format!("http://{addr}/?token=not-the-token-at-all"));
    let text = b.exec("return document.body.innerText;", json!([]));
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("not valid"), "{text}");
    for w in ["web", "worker", "talker"] {
        assert!(!text.contains(w), "the page names {w}: {text}");
    }
    let rows = b.exec(
        "return document.querySelectorAll('tr.watcher').length;",
        json!([]),
    );
    assert_eq!(rows, 0);
    // The API refuses the page too (no cookie was set).
    let status = b.exec(
        "const x = new XMLHttpRequest(); x.open('GET', '/api/state', false); x.send(); return x.status;",
        json!([]),
    );
    assert_eq!(status, 401);
    let status = b.exec(
        "const x = new XMLHttpRequest(); x.open('POST', '/api/action', false);
         x.setRequestHeader('Content-Type', 'application/json'); x.send('{\"action\":\"stop\"}'); return x.status;",
        json!([]),
    );
    assert_eq!(status, 401);
}
