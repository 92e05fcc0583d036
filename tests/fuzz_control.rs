//! Fuzzing the control and pubsub endpoints of the real daemon over raw TCP
//! (a hand-written ZMTP 3.0 peer, tests/common/zmtp.rs):
//! - mutated Circus requests and random frames: every message gets a reply;
//! - hostile frame headers and handshakes (the 2^40-byte long frame that
//!   made the daemon abort, see vendor/zeromq/RINGMASTER-PATCH.md): after
//!   each connection the daemon is alive and answers `status` promptly.
//!   RSS stays flat throughout.
//!
//! Seeded: `RINGMASTER_FUZZ_SEED` (printed). Budget: `RINGMASTER_FUZZ_INPUTS`
//! requests (default 3000) and `RINGMASTER_FUZZ_RAW` raw connections
//! (default 300); `bench/soak` raises both.

mod common;
#[path = "common/procinfo.rs"]
mod procinfo;
#[path = "common/zmtp.rs"]
mod zmtp;

use common::*;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use zmtp::{Raw, COMMAND, LONG, MORE};

const CONFIG: &str = r#"
[ringmaster]
endpoint = "tcp://127.0.0.1:0"
pubsub_endpoint = "tcp://127.0.0.1:0"
[watchers.sleeper]
cmd = "sleep 1000"
graceful_timeout = 1
# A huge `incr` clamps to the daemon's limit of 10,000 processes: forking
# that many on a shared test machine is not the point. A singleton runs one
# process whatever it is asked (and `defuse` keeps `set` from changing that).
singleton = true
"#;
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `status` may take after a hostile connection.
const PROMPT: Duration = Duration::from_secs(3);
/// RSS growth allowed over a whole fuzz run.
const RSS_SLACK_KIB: u64 = 8 * 1024;

struct Fuzzed {
    d: Daemon,
    control: String,
    pubsub: String,
    seed: u64,
}

fn start(what: &str) -> Fuzzed {
    let seed = procinfo::seed_from_env("RINGMASTER_FUZZ_SEED");
    eprintln!("{what}: RINGMASTER_FUZZ_SEED={seed}");
    let mut d = Daemon::start(CONFIG);
    let ready = d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("sleeper", 1, secs(10));
    let addr = |k: &str| {
        ready[k]
            .as_str()
            .and_then(|e| e.strip_prefix("tcp://"))
            .unwrap_or_else(|| panic!("no tcp {k} in {ready}"))
            .to_string()
    };
    let (control, pubsub) = (addr("endpoint"), addr("pubsub"));
    Fuzzed {
        d,
        control,
        pubsub,
        seed,
    }
}

impl Fuzzed {
    /// A well-formed `status` on a fresh raw connection answers within `PROMPT`.
    fn assert_responsive(&self, after: &str) {
        let t = Instant::now();
        let reply = (|| -> std::io::Result<Value> {
            let mut raw = Raw::handshake(&self.control, "DEALER", PROMPT)?;
            raw.send(&[br#"{"command":"status","properties":{},"id":"probe"}"#])?;
            let frames = raw.recv()?;
            serde_json::from_slice(frames.last().map_or(&[][..], |f| f)).map_err(std::io::Error::other)
        })();
        match reply {
            Ok(v) if v["id"] == "probe" && v["status"] == "ok" => {}
            other => panic!(
                "seed {}: after {after}: status got {other:?} after {:?}; daemon alive: {}",
                self.seed,
                t.elapsed(),
                alive(self.d.pid())
            ),
        }
    }

    /// Stops the daemon and ends anything it left (processes we caused).
    fn finish(mut self) {
        let left: Vec<i32> = procinfo::descendants(self.d.pid()).into_keys().collect();
        assert_eq!(self.d.stop(secs(20)), 0, "seed {}: daemon exit status", self.seed);
        for p in left {
            if alive(p) && procinfo::cmdline(p).starts_with("sleep") {
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

/// Values of every JSON type, and the edges of each.
fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u32(0..16) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(-1),
        7 => json!(rng.f64() * 1e6),
        8 => json!(random_string(rng, 16)),
        9 => json!("9".repeat(rng.usize(1..400))),
        10 => json!(random_string(rng, 70_000)),
        11 if depth < 3 => Value::Array(
            (0..rng.usize(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        12 if depth < 3 => {
            let mut m = Map::new();
            for _ in 0..rng.usize(0..4) {
                m.insert(random_string(rng, 8), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
        13 => json!(["TERM", "KILL", "HUP", "STOP", "CONT", "SIGUSR1", "0", "999", "-9"][rng.usize(0..9)]),
        14 => json!(""),
        _ => json!(rng.u32(0..3)),
    }
}

fn random_string(rng: &mut fastrand::Rng, max: usize) -> String {
    let n = rng.usize(0..=max);
    (0..n)
        .map(|_| match rng.u32(0..10) {
            0 => char::from_u32(rng.u32(0x80..0x2_0000)).unwrap_or('\u{fffd}'),
            1 => ['"', '\\', '\0', '\n', '*', '.', '/'][rng.usize(0..7)],
            _ => rng.alphanumeric(),
        })
        .collect()
}

/// Valid requests to start from. `quit`, `add`, `rm` and `reloadconfig`
/// are left out: they would end the run or grow it without testing parsing.
fn base_request(rng: &mut fastrand::Rng) -> (String, Map<String, Value>) {
    let name = if rng.u32(0..4) == 0 {
        random_string(rng, 12)
    } else {
        "sleeper".into()
    };
    let (cmd, p) = match rng.u32(0..22) {
        0 => ("status", json!({})),
        1 => ("status", json!({"name": name, "verbose": true})),
        2 => ("list", json!({"name": name})),
        3 => ("numwatchers", json!({})),
        4 => ("numprocesses", json!({"name": name})),
        5 => ("get", json!({"name": name, "keys": ["numprocesses", "cmd"]})),
        6 => ("options", json!({"name": name})),
        7 => ("globaloptions", json!({"option": "endpoint"})),
        8 => ("listsockets", json!({})),
        9 => ("stats", json!({"name": name})),
        10 => ("dstats", json!({})),
        11 => ("incr", json!({"name": name, "nb": 1})),
        12 => ("decr", json!({"name": name, "nb": 1})),
        13 => (
            "set",
            json!({"name": name, "options": {"numprocesses": 1, "warmup_delay": 0}}),
        ),
        14 => ("signal", json!({"name": name, "signum": "CONT"})),
        15 => ("kill", json!({"name": name, "signum": 9})),
        16 => ("start", json!({"name": name, "match": "glob"})),
        17 => ("stop", json!({"name": name})),
        18 => ("restart", json!({"name": name})),
        19 => ("reload", json!({"name": name, "graceful": true})),
        20 => ("logs", json!({"name": name, "lines": 10})),
        _ => ("listen", json!({})),
    };
    (cmd.to_string(), p.as_object().cloned().unwrap_or_default())
}

/// Belt and braces besides `singleton`: a scaling value in 5..=10,000 (the
/// daemon's limit) becomes 10,001, which must be refused.
fn defuse(p: &mut Map<String, Value>) {
    for (k, v) in p.iter_mut() {
        if k == "options" {
            if let Value::Object(o) = v {
                defuse(o);
                // `set` may change only keys that cannot start programs or
                // make the final stop wait: the rest is not parsing.
                o.retain(|k, _| {
                    !matches!(
                        k.as_str(),
                        "cmd"
                            | "args"
                            | "shell"
                            | "executable"
                            | "working_dir"
                            | "hooks"
                            | "uid"
                            | "gid"
                            | "graceful_timeout"
                            | "stop_signal"
                            | "rlimits"
                    )
                });
            }
        }
        if k == "nb" || k == "numprocesses" {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            if n.is_some_and(|n| (5.0..=10_000.0).contains(&n)) {
                *v = json!(10_001);
            }
        }
    }
    // A waiting command may legitimately wait for ever (a kill with a huge
    // graceful_timeout): the fuzzer wants a reply, so it never waits.
    p.remove("waiting");
}

/// One fuzzed message: its frames (for a DEALER peer).
fn fuzzed_message(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    let (mut cmd, mut p) = base_request(rng);
    let mut id = json!(format!("f{}", rng.u64(..)));
    let mut raw_props: Option<Value> = None;
    let mut extra: Map<String, Value> = Map::new();
    for _ in 0..rng.usize(0..4) {
        match rng.u32(0..10) {
            0 | 1 => {
                let keys: Vec<String> = p.keys().cloned().collect();
                if !keys.is_empty() {
                    let k = keys[rng.usize(0..keys.len())].clone();
                    p.insert(k, random_value(rng, 0));
                }
            }
            2 => {
                p.insert(random_string(rng, 10), random_value(rng, 0));
            }
            3 => {
                if let Some(k) = p.keys().next().cloned() {
                    p.remove(&k);
                }
            }
            4 => {
                cmd = match rng.u32(0..4) {
                    0 => random_string(rng, 20),
                    1 => cmd.to_uppercase(),
                    2 => format!("{cmd}\0"),
                    _ => String::new(),
                }
            }
            5 => id = random_value(rng, 0),
            6 => raw_props = Some(random_value(rng, 0)),
            7 => {
                extra.insert(
                    "msg_type".into(),
                    json!(["call", "CAST", "", "reply"][rng.usize(0..4)]),
                );
            }
            8 => {
                extra.insert(random_string(rng, 6), random_value(rng, 0));
            }
            _ => {
                p.insert("name".into(), json!("sleeper"));
            }
        }
    }
    defuse(&mut p);
    let mut obj = Map::new();
    obj.insert("command".into(), json!(cmd));
    obj.insert("properties".into(), raw_props.unwrap_or(Value::Object(p)));
    obj.insert("id".into(), id);
    obj.extend(extra);
    if obj.get("msg_type") == Some(&json!("cast")) {
        obj.remove("msg_type");
    }
    let mut body = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
    // Damage the bytes themselves now and then.
    match rng.u32(0..24) {
        0 => body.truncate(rng.usize(0..=body.len())),
        1 => {
            let i = rng.usize(0..=body.len());
            body.splice(i..i, [0xff, 0xfe, 0xc0, 0x80]);
        }
        2 => body = Vec::new(),
        3 => {
            let depth = rng.usize(100..200_000);
            body = [b"[".repeat(depth), b"]".repeat(depth)].concat();
        }
        4 => body = (0..rng.usize(0..600)).map(|_| rng.u8(..)).collect(),
        5 => {
            body = [
                b"{\"command\":\"status\",\"id\":\"".to_vec(),
                vec![b'a'; rng.usize(1 << 20..(1 << 20) + 4096)],
                b"\"}".to_vec(),
            ]
            .concat()
        }
        6 => body = b"null".to_vec(),
        7 => body = b"[\"status\"]".to_vec(),
        _ => {}
    }
    match rng.u32(0..10) {
        0 => vec![Vec::new(), body],
        1 => {
            let mut frames: Vec<Vec<u8>> = (0..rng.usize(1..6))
                .map(|_| (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect())
                .collect();
            frames.push(body);
            frames
        }
        _ => vec![body],
    }
}

#[test]
fn fuzz_requests_always_get_a_reply() {
    let mut f = start("fuzz_requests_always_get_a_reply");
    let inputs = procinfo::env_u64("RINGMASTER_FUZZ_INPUTS", 3000);
    let mut rng = fastrand::Rng::with_seed(f.seed);
    let pid = f.d.pid();
    let mut raw = Raw::handshake(&f.control, "DEALER", REPLY_TIMEOUT).expect("handshake");
    let (mut replies, mut errors) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    // RSS is compared with its value after a warm-up (the allocator's arenas
    // and the connection's read buffer grow to their working size first).
    let warmup = (inputs / 10).max(300).min(inputs);
    let mut rss0 = procinfo::rss_kib(pid);
    let mut series = vec![rss0];
    let t = Instant::now();
    for i in 0..inputs {
        let frames = fuzzed_message(&mut rng);
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let show = |f: &Vec<Vec<u8>>| {
            f.iter()
                .map(|x| String::from_utf8_lossy(&x[..x.len().min(300)]).into_owned())
                .collect::<Vec<_>>()
        };
        raw.send(&refs).unwrap_or_else(|e| {
            panic!(
                "seed {}: input {i}: send failed: {e}; {:?}",
                f.seed,
                show(&frames)
            )
        });
        let reply = raw.recv().unwrap_or_else(|e| {
            panic!(
                "seed {}: input {i}: no reply: {e}; sent {:?}",
                f.seed,
                show(&frames)
            )
        });
        assert_eq!(
            reply.len(),
            frames.len(),
            "seed {}: input {i}: envelope not echoed",
            f.seed
        );
        let v: Value = serde_json::from_slice(reply.last().expect("a frame"))
            .unwrap_or_else(|e| panic!("seed {}: input {i}: reply not JSON: {e}", f.seed));
        assert!(
            v["status"].is_string() && v["time"].is_number(),
            "seed {}: input {i}: {v}",
            f.seed
        );
        replies += 1;
        if v["status"] == "error" {
            *errors.entry(format!("errno {}", v["errno"])).or_default() += 1;
        }
        if i % 500 == 499 {
            f.assert_responsive(&format!("input {i}"));
            series.push(procinfo::rss_kib(pid));
            // The daemon logs every request at debug level: keep the test's
            // own memory bounded on long runs.
            f.d.drain_keep_last(2000);
        }
        if i + 1 == warmup {
            rss0 = procinfo::rss_kib(pid);
        }
    }
    // Non-waiting restarts/reloads/stops queue work in the watcher's mailbox
    // (about 13 KB each) that outlives their replies. A waiting `start`
    // queues behind them: once it answers, that backlog is done.
    raw.send(&[br#"{"command":"start","properties":{"name":"sleeper","waiting":true},"id":"drained"}"#])
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match raw.recv() {
            Ok(m)
                if m.last()
                    .is_some_and(|b| b.windows(9).any(|w| w == b"\"drained\"")) =>
            {
                break
            }
            Ok(_) => {}
            Err(e) if Instant::now() > deadline => panic!("seed {}: the backlog did not drain: {e}", f.seed),
            Err(_) => {}
        }
    }
    let rss1 = procinfo::rss_kib(pid);
    eprintln!(
        "FUZZ-SUMMARY {}",
        json!({"seed": f.seed, "inputs": inputs, "replies": replies, "errors": errors,
               "secs": t.elapsed().as_secs_f64(), "rss_kib_after_warmup": rss0, "rss_kib_after": rss1,
               "rss_kib_every_500": series})
    );
    assert!(
        rss1 <= rss0 + RSS_SLACK_KIB,
        "seed {}: RSS {rss0} KiB -> {rss1} KiB",
        f.seed
    );
    drop(raw);
    f.finish();
}

/// One hostile connection: what it sends, and whether it stays open while
/// the daemon is probed (an idle or half-open peer must not block others).
struct Hostile {
    name: &'static str,
    handshake: bool,
    bytes: Vec<u8>,
    /// The daemon must drop the connection (a decode error).
    dropped: bool,
}

fn long_header(flags: u8, len: u64) -> Vec<u8> {
    let mut h = vec![flags | LONG];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

fn hostile_cases() -> Vec<Hostile> {
    let h = |name, handshake, bytes, dropped| Hostile {
        name,
        handshake,
        bytes,
        dropped,
    };
    let mut greeting_v2 = zmtp::greeting();
    greeting_v2[10] = 2;
    let mut greeting_curve = zmtp::greeting();
    greeting_curve[12..17].copy_from_slice(b"CURVE");
    let mut huge_prop = vec![COMMAND, 30, 5];
    huge_prop.extend_from_slice(b"READY");
    huge_prop.extend_from_slice(b"\x0bSocket-Type\xff\xff\xff\xffDEAL");
    huge_prop.resize(32, 0);
    let many_empty: Vec<u8> = [[MORE, 0].repeat(10_000), vec![0, 0]].concat();
    vec![
        h("long frame of 2^40 bytes", true, long_header(0, 1 << 40), true),
        h(
            "long frame of 2^40 bytes, MORE",
            true,
            long_header(MORE, 1 << 40),
            true,
        ),
        h(
            "long frame of u64::MAX bytes",
            true,
            long_header(0, u64::MAX),
            true,
        ),
        h(
            "long frame just over 256 MiB",
            true,
            long_header(0, (256 << 20) + 1),
            true,
        ),
        h(
            "long command of 2^40 bytes",
            true,
            long_header(COMMAND, 1 << 40),
            true,
        ),
        h(
            "long frame of 256 MiB, 1 MiB sent, then closed",
            true,
            [long_header(0, 256 << 20), vec![b'x'; 1 << 20]].concat(),
            false,
        ),
        h("truncated long header", true, vec![LONG, 0, 0, 1], false),
        h("truncated short frame", true, vec![0, 200, b'{'], false),
        h("reserved flag bits", true, vec![0xf8, 3, b'{', b'}', b'x'], false),
        h(
            "command frame with garbage",
            true,
            vec![COMMAND, 5, 0xff, 1, 2, 3, 4],
            false,
        ),
        h("second READY", true, zmtp::ready("DEALER", None), false),
        h("10,000 empty frames in one message", true, many_empty, false),
        h("nothing at all (idle)", false, Vec::new(), false),
        h("half a greeting", false, zmtp::greeting()[..10].to_vec(), false),
        h("garbage greeting", false, vec![0x42; 64], false),
        h("greeting version 2.0", false, greeting_v2.to_vec(), false),
        h("greeting with CURVE", false, greeting_curve.to_vec(), false),
        h(
            "greeting then garbage command",
            false,
            [zmtp::greeting().to_vec(), vec![COMMAND, 3, 1, 2, 3]].concat(),
            false,
        ),
        h(
            "greeting then READY as PUB",
            false,
            [zmtp::greeting().to_vec(), zmtp::ready("PUB", None)].concat(),
            false,
        ),
        h(
            "greeting then READY with a 4 GiB property",
            false,
            [zmtp::greeting().to_vec(), huge_prop].concat(),
            false,
        ),
        h(
            "greeting then a 2^40 READY",
            false,
            [zmtp::greeting().to_vec(), long_header(COMMAND, 1 << 40)].concat(),
            false,
        ),
    ]
}

/// Runs every hostile case, then `extra` random raw connections, against
/// `addr` handshaking as `socket_type`.
fn hostile(f: &mut Fuzzed, addr: &str, socket_type: &str, extra: u64) {
    let pid = f.d.pid();
    let rss0 = procinfo::rss_kib(pid);
    for case in hostile_cases() {
        let mut raw = if case.handshake {
            Raw::handshake(addr, socket_type, REPLY_TIMEOUT)
        } else {
            Raw::connect(addr, REPLY_TIMEOUT)
        }
        .unwrap_or_else(|e| panic!("{}: connect {addr}: {e}", case.name));
        // The daemon may close first: a failed write is part of the game.
        let _ = raw.write(&case.bytes);
        if case.dropped {
            assert!(
                raw.closed_by_peer(PROMPT),
                "seed {}: {socket_type} {}: the connection was not dropped",
                f.seed,
                case.name
            );
        }
        // Probe while the hostile connection is still open.
        f.assert_responsive(&format!("{socket_type} {}", case.name));
        drop(raw);
        f.assert_responsive(&format!("{socket_type} {} (closed)", case.name));
    }
    let mut rng = fastrand::Rng::with_seed(f.seed ^ socket_type.len() as u64);
    for i in 0..extra {
        let handshake = rng.u32(0..4) != 0;
        let mut bytes = Vec::new();
        for _ in 0..rng.usize(1..8) {
            let flags = match rng.u32(0..4) {
                0 => rng.u8(..),
                _ => rng.u8(0..8),
            };
            if flags & LONG != 0 {
                let len = match rng.u32(0..3) {
                    0 => rng.u64(..),
                    1 => rng.u64(0..1 << 20),
                    _ => rng.u64((256 << 20) - 4..(256 << 20) + 4),
                };
                bytes.extend_from_slice(&long_header(flags, len));
            } else {
                bytes.push(flags);
                bytes.push(rng.u8(..));
            }
            bytes.extend((0..rng.usize(0..300)).map(|_| rng.u8(..)));
        }
        let raw = if handshake {
            Raw::handshake(addr, socket_type, REPLY_TIMEOUT)
        } else {
            Raw::connect(addr, REPLY_TIMEOUT)
        };
        let mut raw = raw.unwrap_or_else(|e| panic!("seed {}: random connection {i}: {e}", f.seed));
        let _ = raw.write(&bytes);
        drop(raw);
        if i % 25 == 24 {
            f.assert_responsive(&format!("{socket_type} random connection {i}"));
            f.d.drain_keep_last(2000);
        }
    }
    f.assert_responsive(&format!("{socket_type} random connections"));
    let rss1 = procinfo::rss_kib(pid);
    eprintln!(
        "FUZZ-RAW-SUMMARY {}",
        json!({"seed": f.seed, "endpoint": socket_type, "cases": hostile_cases().len(),
               "random_connections": extra, "rss_kib_before": rss0, "rss_kib_after": rss1})
    );
    assert!(
        rss1 <= rss0 + RSS_SLACK_KIB,
        "seed {}: RSS {rss0} KiB -> {rss1} KiB after hostile {socket_type} peers",
        f.seed
    );
}

#[test]
fn hostile_frames_on_the_control_endpoint() {
    let mut f = start("hostile_frames_on_the_control_endpoint");
    let extra = procinfo::env_u64("RINGMASTER_FUZZ_RAW", 300);
    let control = f.control.clone();
    hostile(&mut f, &control, "DEALER", extra);
    f.finish();
}

#[test]
fn hostile_frames_on_the_pubsub_endpoint() {
    let mut f = start("hostile_frames_on_the_pubsub_endpoint");
    let extra = procinfo::env_u64("RINGMASTER_FUZZ_RAW", 300);
    let pubsub = f.pubsub.clone();
    hostile(&mut f, &pubsub, "SUB", extra);
    // The publisher still serves a well-behaved subscriber.
    Raw::handshake(&pubsub, "SUB", PROMPT).expect("a SUB handshake after the hostile peers");
    f.finish();
}
