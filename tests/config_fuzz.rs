//! A config fuzzer: mutates the example configs (`config/`) and the Circus
//! test data (`tests/data/circus/`) and loads each mutant with the library's
//! `config::load`. Every input must give `Ok` or an error whose every entry
//! names the file and a line (and for TOML a column) inside the input, never
//! a panic, a stall, or a report out of proportion to the input.
//!
//! Seeded and bounded: `RINGMASTER_FUZZ_SEED` replays a run (the seed is
//! printed), `RINGMASTER_FUZZ_CASES` (default 3000) and
//! `RINGMASTER_FUZZ_SECS` (default 15) bound it. For a soak:
//! `RINGMASTER_FUZZ_CASES=100000 RINGMASTER_FUZZ_SECS=3600 cargo test --release --test config_fuzz -- --nocapture`

// `config::load`'s error is large by design (it carries a source excerpt).
#![allow(clippy::result_large_err)]

use ringmaster::config::{self, ConfigError, Format};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A single load slower than this is a bug (something super-linear).
const MAX_CASE_TIME: Duration = Duration::from_secs(5);

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The seed inputs: (name, format, bytes).
fn corpus() -> Vec<(String, Format, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["config", "tests/data/circus", "tests/data/circus/included"] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let format = match p.extension().and_then(|e| e.to_str()) {
                Some("toml") => Format::Toml,
                Some("ini") => Format::Ini,
                _ => continue,
            };
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p.display().to_string(), format, bytes));
        }
    }
    assert!(out.len() > 10, "the corpus is missing: {} files", out.len());
    out
}

const TOML_KEYS: &[&str] = &[
    "cmd",
    "args",
    "numprocesses",
    "uid",
    "gid",
    "umask",
    "rlimits",
    "rlimit_nofile",
    "env",
    "sockets",
    "use_sockets",
    "priority",
    "graceful_timeout",
    "warmup_delay",
    "stop_signal",
    "hooks",
    "ready",
    "restart",
    "max_surge",
    "max_unavailable",
    "stdout_stream",
    "path",
    "host",
    "port",
    "family",
    "type",
    "endpoint",
    "pubsub_endpoint",
    "stats_endpoint",
    "singleton",
    "max_age",
    "working_dir",
    "copy_env",
    "history_lines",
    "backlog",
];
const INI_KEYS: &[&str] = &[
    "cmd",
    "args",
    "numprocesses",
    "uid",
    "umask",
    "rlimit_nofile",
    "rlimit_core",
    "priority",
    "graceful_timeout",
    "warmup_delay",
    "stop_signal",
    "hooks.before_start",
    "path",
    "host",
    "port",
    "family",
    "type",
    "endpoint",
    "pubsub_endpoint",
    "stats_endpoint",
    "singleton",
    "max_age",
    "copy_env",
    "copy_path",
    "stdout_stream.class",
    "stdout_stream.filename",
    "include",
    "use",
    "statsd",
    "shell",
    "send_hup",
];
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "99999999999999999999999",
    "-9223372036854775809",
    "1e308",
    "nan",
    "inf",
    "4294967296",
    "65536",
    "\"\"",
    "\"x\"",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{cmd = \"x\", zz = 1}",
    "true",
    "\"unlimited\"",
    "\"tcp://127.0.0.1\"",
    "\"ipc://\"",
    "\"$(circus.sockets.WEB)\"",
    "\"\\u0000\"",
    "\"/tmp/sock\"",
    "1979-05-27T07:32:00Z",
    "\"0o777\"",
    "0x10",
    "'''\nx\n'''",
];
const ODD: &[&str] = &[
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "\0",
    "é",
    "𝔘",
    "\r",
    "\u{85}",
    "\u{2028}",
    "\t",
    "\\",
    "\"",
    "'",
    "[",
    "]",
    "=",
    ":",
    ";",
    "#",
    "$(",
    "((",
    "\u{fffd}",
    "\u{10ffff}",
];

/// One random edit of `b`.
fn mutate(rng: &mut fastrand::Rng, b: &mut Vec<u8>, format: Format, corpus: &[(String, Format, Vec<u8>)]) {
    let lines = |b: &[u8]| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &c) in b.iter().enumerate() {
            if c == b'\n' {
                out.push((start, i + 1));
                start = i + 1;
            }
        }
        if start < b.len() {
            out.push((start, b.len()));
        }
        out
    };
    let at = |rng: &mut fastrand::Rng, b: &[u8]| rng.usize(..=b.len());
    match rng.u8(..11) {
        0 if !b.is_empty() => {
            let i = rng.usize(..b.len());
            b[i] ^= 1 << rng.u8(..8);
        }
        1 => {
            let n = at(rng, b);
            b.truncate(n);
        }
        2 => {
            let ls = lines(b);
            if !ls.is_empty() {
                let (s, e) = ls[rng.usize(..ls.len())];
                let line = b[s..e].to_vec();
                let most = if rng.u8(..10) == 0 { 2000 } else { 3 };
                let n = rng.usize(1..=most);
                for _ in 0..n {
                    b.splice(e..e, line.iter().copied());
                }
            }
        }
        3 => {
            let ls = lines(b);
            if !ls.is_empty() {
                let (s, e) = ls[rng.usize(..ls.len())];
                b.drain(s..e);
            }
        }
        4 | 5 => {
            let keys = if format == Format::Toml {
                TOML_KEYS
            } else {
                INI_KEYS
            };
            let key = keys[rng.usize(..keys.len())];
            let value = VALUES[rng.usize(..VALUES.len())];
            let line = format!("{key} = {value}\n");
            let ls = lines(b);
            let pos = if ls.is_empty() {
                0
            } else {
                ls[rng.usize(..ls.len())].1
            };
            b.splice(pos..pos, line.bytes());
        }
        6 => {
            // A number made huge, negative or fractional.
            let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
            if let Some(&i) = digits.get(rng.usize(..digits.len().max(1))) {
                let rep = [
                    "99999999999999999999",
                    "-1",
                    "0",
                    "4294967295",
                    "1.5",
                    "-0",
                    "1e400",
                ];
                let r = rep[rng.usize(..rep.len())];
                b.splice(i..i + 1, r.bytes());
            }
        }
        7 => {
            let depth = rng.usize(1..3000);
            let (open, close) = if rng.bool() { ("[", "]") } else { ("{a = ", "}") };
            let mut text = String::from("deep = ");
            text.push_str(&open.repeat(depth));
            if open == "{a = " {
                text.push('1');
            }
            text.push_str(&close.repeat(depth));
            text.push('\n');
            let pos = at(rng, b);
            b.splice(pos..pos, text.bytes());
        }
        8 => {
            let odd = ODD[rng.usize(..ODD.len())];
            let pos = at(rng, b);
            b.splice(pos..pos, odd.bytes());
        }
        9 => {
            // A line from another file of the same format.
            let same: Vec<_> = corpus.iter().filter(|(_, f, _)| *f == format).collect();
            let (_, _, other) = same[rng.usize(..same.len())];
            let ls = lines(other);
            if !ls.is_empty() {
                let (s, e) = ls[rng.usize(..ls.len())];
                let pos = lines(b).first().map_or(0, |_| at(rng, b));
                b.splice(pos..pos, other[s..e].iter().copied());
            }
        }
        _ => {
            // A section header, odd or repeated.
            let names = [
                "watcher:",
                "socket:",
                "env:",
                "watchers.",
                "sockets.",
                "circus",
                "ringmaster",
            ];
            let name = names[rng.usize(..names.len())];
            let odd = ODD[rng.usize(..ODD.len())];
            let text = format!("\n[{name}{odd}x]\n");
            let pos = at(rng, b);
            b.splice(pos..pos, text.bytes());
        }
    }
}

/// Why an error report is not acceptable for `input` loaded from `path`.
fn bad_report(e: &ConfigError, path: &Path, format: Format, input: &[u8]) -> Option<String> {
    let file = path.display().to_string();
    let newlines = input.iter().filter(|&&c| c == b'\n').count();
    // The ini reader also ends lines at a lone \r (Python's universal newlines).
    let max_line = match format {
        Format::Toml => newlines + 1,
        Format::Ini => newlines + input.iter().filter(|&&c| c == b'\r').count() + 1,
    };
    for err in e.all() {
        let loc = err.location.as_str();
        let Some(rest) = loc.strip_prefix(&file) else {
            // An included file the mutant pulled in; it must still be located.
            if loc.rsplit(':').next().is_some_and(|l| l.parse::<usize>().is_ok()) {
                continue;
            }
            return Some(format!("location {loc:?} is not in {file}"));
        };
        if rest.is_empty() && err.message.contains("more error") {
            continue;
        }
        let mut parts = rest.strip_prefix(':').unwrap_or("").split(':');
        let line = parts.next().and_then(|l| l.parse::<usize>().ok());
        let col = parts.next().and_then(|c| c.parse::<usize>().ok());
        let Some(line) = line.filter(|&l| l >= 1 && l <= max_line) else {
            return Some(format!(
                "location {loc:?} has no line within 1..={max_line}: {}",
                err.message
            ));
        };
        if format == Format::Toml {
            let Some(col) = col else {
                return Some(format!("location {loc:?} has no column: {}", err.message));
            };
            let text = String::from_utf8_lossy(input);
            let width = text.split('\n').nth(line - 1).map_or(0, |l| l.chars().count());
            if col < 1 || col > width + 1 {
                return Some(format!(
                    "column {col} outside line {line} ({width} chars): {}",
                    err.message
                ));
            }
        }
    }
    let rendered = format!("{:?}", miette::Report::new(clone_report(e)));
    let limit = 64 * 1024 + 4 * input.len();
    if rendered.len() > limit {
        return Some(format!(
            "report of {} bytes for {} input bytes",
            rendered.len(),
            input.len()
        ));
    }
    None
}

/// `miette::Report` takes ownership; rebuild a report with the same lines.
fn clone_report(e: &ConfigError) -> ConfigError {
    ConfigError::many(
        e.all()
            .into_iter()
            .map(|x| ConfigError::plain(x.location.clone(), x.bare_message()))
            .collect(),
    )
    .unwrap_or_else(|| ConfigError::plain("?", "?"))
}

#[test]
fn config_fuzz() {
    let seed = std::env::var("RINGMASTER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let cases = env_num("RINGMASTER_FUZZ_CASES", 3000);
    let budget = Duration::from_secs(env_num("RINGMASTER_FUZZ_SECS", 15));
    println!("config_fuzz: seed {seed} (replay with RINGMASTER_FUZZ_SEED={seed}), up to {cases} cases in {budget:?}");
    let corpus = corpus();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let (mut ok, mut refused, mut ran) = (0u64, 0u64, 0u64);
    let mut slowest = (Duration::ZERO, 0u64);
    // Silence the default hook: a panic is reported below with its input.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    for case in 0..cases {
        if started.elapsed() > budget {
            break;
        }
        let (name, format, seed_bytes) = &corpus[rng.usize(..corpus.len())];
        let mut input = seed_bytes.clone();
        for _ in 0..rng.usize(1..=4) {
            mutate(&mut rng, &mut input, *format, &corpus);
        }
        let ext = if *format == Format::Toml { "toml" } else { "ini" };
        let path = dir.path().join(format!("case.{ext}"));
        std::fs::write(&path, &input).expect("write case");
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| config::load(&path, Some(*format))));
        let took = t.elapsed();
        ran += 1;
        if took > slowest.0 {
            slowest = (took, case);
        }
        let problem = match &result {
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(Ok(_)) => {
                ok += 1;
                None
            }
            Ok(Err(e)) => {
                refused += 1;
                bad_report(e, &path, *format, &input)
            }
        };
        let problem = problem.or_else(|| (took > MAX_CASE_TIME).then(|| format!("took {took:?}")));
        if let Some(p) = problem {
            let keep = std::env::temp_dir().join(format!("ringmaster-fuzz-{seed}-{case}.{ext}"));
            let _ = std::fs::write(&keep, &input);
            failure = Some(format!(
                "case {case} (seed {seed}, mutant of {name}, saved as {}): {p}",
                keep.display()
            ));
            break;
        }
    }
    std::panic::set_hook(hook);
    println!(
        "config_fuzz: {ran} cases in {:?} ({ok} accepted, {refused} refused); slowest {:?} (case {})",
        started.elapsed(),
        slowest.0,
        slowest.1
    );
    if let Some(f) = failure {
        panic!("{f}");
    }
    assert!(ran >= 100.min(cases), "only {ran} cases ran within {budget:?}");
}
