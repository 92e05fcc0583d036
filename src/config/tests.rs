//! Unit tests of loading and validation.

use super::*;

fn load_str(s: &str) -> Result<Config, ConfigError> {
    load_toml_str(Path::new("test.toml"), s)
}

#[test]
fn minimal_watcher() {
    let c = load_str("[watchers.a]\ncmd = \"sleep 10\"\n").unwrap();
    assert_eq!(c.watchers[0].numprocesses, 1);
    assert_eq!(c.watchers[0].graceful_timeout, Duration::from_secs(30));
}

#[test]
fn type_error_has_line_and_key() {
    let e = load_str("[watchers.a]\ncmd = \"x\"\nnumprocesses = \"four\"\n").unwrap_err();
    assert_eq!(e.location, "test.toml:3:16", "{e:?}");
    assert!(e.message.contains("watchers.a.numprocesses"), "{}", e.message);
}

#[test]
fn unknown_key_is_an_error() {
    let e = load_str("[watchers.a]\ncmd = \"x\"\nnumprocess = 2\n").unwrap_err();
    assert!(e.location.starts_with("test.toml:3:"), "{}", e.location);
    assert!(e.message.contains("numprocess"), "{}", e.message);
}

#[test]
fn socket_reference_checked() {
    let e = load_str("[watchers.a]\ncmd = \"x --fd $(circus.sockets.web)\"\n").unwrap_err();
    assert!(e.message.contains("\"web\""), "{}", e.message);
    let c =
        load_str("[sockets.web]\nport = 0\n[watchers.a]\ncmd = \"x --fd $(circus.sockets.web)\"\n").unwrap();
    assert_eq!(c.watchers[0].sockets, vec!["web".to_string()]);
}

#[test]
fn durations_and_signals() {
    let c = load_str("[watchers.a]\ncmd = \"x\"\ngraceful_timeout = \"500ms\"\nstop_signal = \"INT\"\nwarmup_delay = 0.25\n").unwrap();
    let w = &c.watchers[0];
    assert_eq!(w.graceful_timeout, Duration::from_millis(500));
    assert_eq!(w.stop_signal, Signum(libc::SIGINT));
    assert_eq!(w.warmup_delay, Duration::from_millis(250));
}

#[test]
fn add_options_are_capped_and_take_unlimited_rlimits() {
    let opts = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let e = watcher_from_json(
        "w",
        opts(serde_json::json!({"cmd": "sleep 1", "numprocesses": 10_001})),
        &BTreeMap::new(),
        &[],
    )
    .unwrap_err();
    assert!(e.contains("more than the limit of 10000"), "{e}");
    let w = watcher_from_json(
        "w",
        opts(serde_json::json!({"cmd": "sleep 1", "rlimit_nofile": -1, "rlimit_locks": -1})),
        &BTreeMap::new(),
        &[],
    )
    .unwrap();
    assert!(w.rlimits.iter().all(|r| r.value.is_none()), "{:?}", w.rlimits);
    assert_eq!(w.rlimits.len(), 2);
}

#[test]
fn several_errors_reported_together() {
    let e =
        load_str("[watchers.a]\ncmd = \"\"\n[watchers.b]\ncmd = \"x\"\nsingleton = true\nnumprocesses = 3\n")
            .unwrap_err();
    assert_eq!(e.one_line_each().len(), 2, "{:?}", e.one_line_each());
}

#[test]
fn shutdown_timeout_and_critical() {
    let c = load_str("[watchers.a]\ncmd = \"x\"\n").unwrap();
    assert_eq!(c.global.shutdown_timeout, Duration::from_secs(30));
    assert!(!c.watchers[0].critical);
    let c = load_str("[ringmaster]\nshutdown_timeout = \"5s\"\n[watchers.a]\ncmd = \"x\"\ncritical = true\n")
        .unwrap();
    assert_eq!(c.global.shutdown_timeout, Duration::from_secs(5));
    assert!(c.watchers[0].critical);
}

#[test]
fn http_keys() {
    let c = load_str("[watchers.a]\ncmd = \"x\"\n").unwrap();
    assert_eq!(c.global.http_endpoint, None);
    let c = load_str(
        "[ringmaster]\nhttp_endpoint = \"127.0.0.1:9770\"\nhttp_token_file = \"tok\"\nhttp_metrics_auth = true\n",
    )
    .unwrap();
    assert_eq!(c.global.http_endpoint, Some("127.0.0.1:9770".parse().unwrap()));
    assert!(c.global.http_metrics_auth);
    assert_eq!(c.global.http_token_file.as_deref(), Some(Path::new("tok")));
    let e = load_str("[ringmaster]\nhttp_endpoint = \"localhost\"\n").unwrap_err();
    assert_eq!(e.location, "test.toml:2:17", "{e:?}");
    assert!(e.message.contains("http_endpoint"), "{}", e.message);
}
