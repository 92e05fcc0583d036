//! HTTP for the tests: a small HTTP/1.1 client over std (one request per
//! connection), a Server-Sent Events reader, and a WebDriver session on a
//! headless Chromium driven by chromedriver (the W3C protocol is plain JSON
//! over HTTP, so the same client speaks it).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request; `Connection: close`, so the body ends at EOF.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    // A refused body may be answered before it is all read: ignore the write error.
    let _ = s.write_all(body);
    // Read the head, then exactly the body (a server may keep the connection open).
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push_str(&line),
            Err(e) => panic!("{method} {path}: reading the response: {e}"),
        }
    }
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(n) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).expect("the body");
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Response {
        status,
        headers,
        body,
    }
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, b"")
}

pub fn post_json(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut h = headers.to_vec();
    h.push(("Content-Type", "application/json"));
    request(addr, "POST", path, &h, body.to_string().as_bytes())
}

/// Reads events from `GET path` (an SSE stream) until `want` returns true
/// for one, or `timeout`; returns it as (event, data).
pub fn sse_until(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
    mut want: impl FnMut(&str, &Value) -> bool,
) -> (String, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut r = BufReader::new(s);
    let deadline = Instant::now() + timeout;
    let mut event = String::new();
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => panic!("SSE stream closed"),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("SSE read: {e}"),
        }
        let l = line.trim_end();
        if let Some(e) = l.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = l.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).expect("SSE data is JSON");
            if want(&event, &v) {
                return (event, v);
            }
        }
    }
    panic!("timed out after {timeout:?} waiting for an SSE event");
}

/// Waits until `f` returns `Some`, checking every 100 ms, at most `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The address the daemon's HTTP endpoint bound, from its start-up event.
pub fn http_addr(d: &mut super::Daemon) -> SocketAddr {
    let v = d.wait_msg("http endpoint ready", None, Duration::from_secs(10));
    v["addr"]
        .as_str()
        .expect("addr field")
        .parse()
        .expect("a socket address")
}

/// The token the daemon generated, from its runtime file.
pub fn generated_token(d: &super::Daemon) -> String {
    let path = d.path("ringmaster/http.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("http.json")).expect("JSON");
    v["token"].as_str().expect("token").to_string()
}

// ------------------------------------------------------------------ WebDriver

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver on a free loopback port and one headless Chromium session;
/// both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Fails (never skips) when Chromium or chromedriver is missing.
    pub fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (tests/run.sh does)"
            );
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let mut driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver");
            let up = (0..100).any(|_| {
                if let Ok(Some(_)) = driver.try_wait() {
                    return false;
                }
                let ok = TcpStream::connect(addr).is_ok()
                    && get(addr, "/status", &[]).json()["value"]["ready"] == true;
                if !ok {
                    std::thread::sleep(Duration::from_millis(100));
                }
                ok
            });
            if !up {
                let _ = driver.kill();
                let _ = driver.wait();
                last = format!("chromedriver did not answer on port {port}");
                continue;
            }
            let caps = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1400,1000",
                        format!("--user-data-dir={}", profile.path().display())],
                },
            }}});
            let r = post_json(addr, "/session", &[], &caps);
            let v = r.json();
            match v["value"]["sessionId"].as_str() {
                Some(id) => {
                    return Browser {
                        driver,
                        addr,
                        session: id.to_string(),
                        _profile: profile,
                    }
                }
                None => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    panic!("chromedriver refused a session: {v}");
                }
            }
        }
        panic!("{last}");
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let r = match body {
            Some(b) => post_json(self.addr, &path, &[], &b),
            None => request(self.addr, method, &path, &[], b""),
        };
        let v = r.json();
        assert!(r.status == 200, "WebDriver {method} {path}: {} {v}", r.status);
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body) in the page; returns its value.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits until `script` returns something other than null/false.
    pub fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Value {
        eventually(what, timeout, || {
            let v = self.exec(script, json!([]));
            (!v.is_null() && v != false).then_some(v)
        })
    }

    /// Clicks the element `css` selects (through WebDriver, as a user
    /// would). The page redraws its table as data comes in: a reference that
    /// went stale between finding and clicking is looked up again.
    pub fn click(&self, css: &str) {
        for _ in 0..20 {
            let path = format!("/session/{}/element", self.session);
            let el = post_json(
                self.addr,
                &path,
                &[],
                &json!({ "using": "css selector", "value": css }),
            )
            .json();
            let id = el["value"]
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no element {css}: {el}"))
                .to_string();
            let path = format!("/session/{}/element/{id}/click", self.session);
            let r = post_json(self.addr, &path, &[], &json!({}));
            if r.status == 200 {
                return;
            }
            let v = r.json();
            assert!(
                v["value"]["error"] == "stale element reference",
                "click {css}: {} {v}",
                r.status
            );
        }
        panic!("{css} kept going stale");
    }

    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.call("GET", "/screenshot", None);
        decode_base64(b64.as_str().expect("base64"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            b"",
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
