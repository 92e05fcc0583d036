//! circus.ini files: the reader follows Circus's StrictConfigParser, Circus's
//! own example and test configs convert to a document that `ConfigFile`
//! accepts (or are refused naming the unsupported option and its line), the
//! assertions of Circus's `tests/test_config.py` hold on the converted tables,
//! and a converted file runs under the daemon with the real circusctl.

mod common;
use common::*;
use ringmaster::config::circus_ini::{self, Converted, Diagnostic, Severity};
use ringmaster::config::ini::{self, Document, EnvMap, IniError};
use ringmaster::config::model::ConfigFile;
use ringmaster::config::{self, Format};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

fn data(name: &str) -> PathBuf {
    repo_root().join("tests/data/circus").join(name)
}

/// What circusd's `os.environ` holds in these tests (Circus's own tests set
/// the same variables).
fn env() -> EnvMap {
    [
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/home/tester"),
        ("USER", "tester"),
        ("GRAVITY", "down"),
        ("circus_stats_endpoint", "tcp://0.0.0.0:9876"),
        ("circus_statsd", "True"),
        ("circus_uid", "ubuntu"),
        ("circus_gid", "ubuntu"),
    ]
    .into_iter()
    .collect()
}

fn conv(path: &Path) -> Converted {
    circus_ini::convert_with_env(path, &env()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden(name: &str) -> Converted {
    conv(&data(name))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn watcher<'a>(c: &'a Converted, name: &str) -> &'a Table {
    c.table["watchers"][name]
        .as_table()
        .unwrap_or_else(|| panic!("no watcher {name}"))
}

fn socket<'a>(c: &'a Converted, name: &str) -> &'a Table {
    c.table["sockets"][name]
        .as_table()
        .unwrap_or_else(|| panic!("no socket {name}"))
}

fn s<'a>(t: &'a Table, key: &str) -> Option<&'a str> {
    t.get(key).and_then(Value::as_str)
}

fn find<'a>(c: &'a Converted, sev: Severity, needle: &str) -> &'a Diagnostic {
    c.diagnostics
        .iter()
        .find(|d| d.severity == sev && d.message.contains(needle))
        .unwrap_or_else(|| panic!("no {sev:?} containing {needle:?} in {:#?}", c.diagnostics))
}

fn errors(c: &Converted) -> Vec<&Diagnostic> {
    c.errors().collect()
}

/// The converted table must be a `ConfigFile`, and its text must read back
/// to the same table.
fn assert_valid(name: &str, c: &Converted) {
    for text in [circus_ini::to_toml_string(&c.table), c.to_toml_string()] {
        toml::from_str::<ConfigFile>(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        let back: Table = toml::from_str(&text).unwrap();
        assert_eq!(
            back, c.table,
            "{name}: the TOML text does not read back to the table\n{text}"
        );
    }
}

// ---------------------------------------------------------------- golden files

#[test]
fn every_circus_file_converts_to_a_config_file() {
    // Files whose features Ringmaster refuses, with the options named.
    let refused: &[(&str, &[&str])] = &[
        ("example1.ini", &["httpd"]),
        ("example5.ini", &["httpd"]),
        ("hooks.ini", &["has no cmd", "hooks.before_start"]),
        ("virtualenv.ini", &["virtualenv:"]),
        ("reload_base.ini", &["ResourceWatcher"]),
        ("env_everywhere.ini", &["bad.has.been.broken"]),
        ("plugin_watchdog.ini", &["WatchDog"]),
        (
            "uwsgi_lossless_reload.ini",
            &["hooks.after_spawn", "hooks.before_signal", "hooks.extended_stats"],
        ),
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(data(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ini"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "golden files missing: {files:?}");
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let c = conv(path);
        assert_valid(name, &c);
        let errs = errors(&c);
        let expected = refused
            .iter()
            .find(|(f, _)| *f == name)
            .map_or(&[][..], |(_, e)| *e);
        assert_eq!(errs.len(), expected.len(), "{name}: {errs:#?}");
        for want in expected {
            assert!(
                errs.iter().any(|d| d.message.contains(want)),
                "{name}: no error about {want}: {errs:#?}"
            );
        }
        for d in &c.diagnostics {
            assert!(d.location.line > 0, "{name}: {d}");
            assert!(c.files.contains(&d.location.file), "{name}: {d}");
        }
        // Every emitted watcher and socket knows its section.
        for group in ["watchers", "sockets"] {
            for key in c
                .table
                .get(group)
                .and_then(Value::as_table)
                .into_iter()
                .flat_map(|t| t.keys())
            {
                let path = circus_ini::key_path(&[group, key]);
                assert!(
                    c.provenance.contains_key(&path),
                    "{name}: no provenance for {path}"
                );
            }
        }
    }
}

#[test]
fn circus_files_without_errors_load_through_the_daemon_config() {
    // issue137 names a user that does not exist here; issue442 needs variables
    // that only the conversion tests set.
    for name in [
        "circus.ini",
        "copy_env.ini",
        "env_section.ini",
        "env_sensecase.ini",
        "example2.ini",
        "example3.ini",
        "example7.ini",
        "expand_vars.ini",
        "include.ini",
        "issue310.ini",
        "issue53.ini",
        "issue594.ini",
        "issue1088.ini",
        "max_age.ini",
        "multiple_wildcard.ini",
        "reuseport.ini",
        "simplesocket.ini",
    ] {
        let cfg = config::load(&data(name), Some(Format::Ini))
            .unwrap_or_else(|e| panic!("{name}: {}", e.one_line_each().join("\n")));
        // The printed TOML loads to the same watchers.
        let c = circus_ini::convert(&data(name)).unwrap();
        let again = config::load_toml_str(&data(name), &circus_ini::to_toml_string(&c.table)).unwrap();
        assert_eq!(again.watchers, cfg.watchers, "{name}");
    }
}

#[test]
fn circus_test_config_assertions_hold() {
    // test_include_wildcards / include_dir
    let c = golden("include.ini");
    let names: Vec<&String> = c.table["watchers"].as_table().unwrap().keys().collect();
    assert_eq!(names, ["bar", "barbaz", "foo", "foobar"]);
    assert_eq!(c.table["ringmaster"]["check_delay"].as_integer(), Some(2));

    // test_include_multiple_wildcards / test_override
    let c = golden("multiple_wildcard.ini");
    assert_eq!(c.table["watchers"].as_table().unwrap().len(), 3);
    assert_eq!(watcher(&c, "server")["env"]["INI"].as_str(), Some("private.ini"));
    assert_eq!(c.table["ringmaster"]["check_delay"].as_integer(), Some(555));
    let w = find(&c, Severity::Warning, "\"INI\" in [env:server] is already set");
    assert!(w
        .location
        .file
        .ends_with("multiple_wildcard/subsubdir1/barbaz.ini"));
    assert_eq!(w.location.line, 6);

    // test_empty_include
    let c = golden("empty_include.ini");
    let warns: Vec<usize> = c
        .warnings()
        .filter(|d| d.message.contains("matches no file"))
        .map(|d| d.location.line)
        .collect();
    assert_eq!(warns, [2, 3]);

    // test_env_section / test_watcher_env_var: $PATH stays for the daemon to expand.
    let c = golden("env_section.ini");
    assert_eq!(c.table["env"]["TEST1"].as_str(), Some("test1"));
    let (w1, w2) = (watcher(&c, "watcher1"), watcher(&c, "watcher2"));
    assert_eq!(w1["env"]["CAKE"].as_str(), Some("lie"));
    assert_eq!(w2["env"]["LIE"].as_str(), Some("cake"));
    for w in [w1, w2] {
        assert_eq!(w["env"]["PATH"].as_str(), Some("$PATH:/bin"));
        assert_eq!(w["env"]["TEST2"].as_str(), Some("test2"));
        assert_eq!(w["env"]["TEST3"].as_str(), Some("test3"));
    }

    // test_copy_env: only watcher2 inherits the daemon's environment.
    let c = golden("copy_env.ini");
    assert_eq!(watcher(&c, "watcher1")["copy_path"].as_bool(), Some(false));
    assert_eq!(watcher(&c, "watcher2")["copy_env"].as_bool(), Some(true));
    assert!(watcher(&c, "watcher2").get("copy_path").is_none());

    // test_env_casesense
    let c = golden("env_sensecase.ini");
    let env = watcher(&c, "webapp")["env"].as_table().unwrap();
    assert_eq!(s(env, "http_proxy"), Some("http://localhost:8080"));
    assert_eq!(s(env, "HTTPS_PROXY"), Some("http://localhost:8043"));
    assert_eq!(s(env, "FunKy_soUl"), Some("scorpio"));

    // test_variables_everywhere: [env:my_app] beats [env] beats os.environ.
    let c = golden("issue442.ini");
    assert_eq!(
        s(c.table["ringmaster"].as_table().unwrap(), "stats_endpoint"),
        Some("tcp://0.0.0.0:9876")
    );
    assert_eq!(c.table["ringmaster"]["statsd"].as_bool(), Some(true));
    assert_eq!(s(watcher(&c, "my_app"), "uid"), Some("tarek"));
    assert_eq!(s(watcher(&c, "my_app"), "gid"), Some("root"));

    // test_expand_vars
    let c = golden("expand_vars.ini");
    let out = watcher(&c, "echo")["stdout_stream"].as_table().unwrap();
    assert_eq!(s(out, "filename"), Some("/tmp/echo.log"));
    assert_eq!(out["max_bytes"].as_integer(), Some(10485760));

    // test_env_everywhere
    let c = golden("env_everywhere.ini");
    assert_eq!(
        s(c.table["ringmaster"].as_table().unwrap(), "endpoint"),
        Some("tcp://127.0.0.1:1234")
    );
    assert_eq!(s(socket(&c, "bad"), "path"), Some("/var/run/broken.sock"));
    assert_eq!(find(&c, Severity::Error, "bad.has.been.broken").location.line, 8);

    // test_issue567: os.environ reaches $(circus.env.X) without an [env] section.
    assert_eq!(
        s(watcher(&golden("issue567.ini"), "watcher1"), "cmd"),
        Some("down")
    );

    // test_watcher_stop_signal
    let c = golden("issue594.ini");
    assert_eq!(s(watcher(&c, "my_app"), "stop_signal"), Some("INT"));
    assert_eq!(watcher(&c, "my_app")["stop_children"].as_bool(), Some(true));

    // test_socket_so_reuseport_yes / _no
    let c = golden("reuseport.ini");
    assert_eq!(socket(&c, "reuseport")["so_reuseport"].as_bool(), Some(true));
    assert!(socket(&c, "noreuseport").get("so_reuseport").is_none());

    // test_check_delay, test_issue1088, test_issue395-style numbers
    assert_eq!(
        golden("issue1088.ini").table["watchers"]["my_app"]["graceful_timeout"].as_float(),
        Some(25.5)
    );
    let c = golden("issue1088.ini");
    find(&c, Severity::Warning, "check_delay has no effect");

    // test_empty_section: skipped, with a warning each.
    let c = golden("empty_section.ini");
    assert!(c.table.get("sockets").is_none());
    assert_eq!(
        c.warnings()
            .filter(|d| d.message.contains("empty section"))
            .count(),
        2
    );

    // test_virtualenv: refused at its line; the Python version alone is harmless.
    let c = golden("virtualenv.ini");
    let lines: Vec<usize> = c.errors().map(|d| d.location.line).collect();
    assert_eq!(lines, [5]);
    assert_eq!(find(&c, Severity::Warning, "virtualenv_py_ver").location.line, 6);

    // test_hooks
    let c = golden("hooks.ini");
    assert_eq!(find(&c, Severity::Error, "hooks.before_start").location.line, 3);
    assert!(
        c.table.get("watchers").is_none(),
        "a watcher without cmd is left out"
    );

    // issue53: `#` inside a value is not a comment.
    let c = golden("issue53.ini");
    assert_eq!(
        s(watcher(&c, "test"), "args"),
        Some("-q  # invalid option, makes bash exit non-zero")
    );
    assert_eq!(watcher(&c, "test")["numprocesses"].as_integer(), Some(100));
}

#[test]
fn circus_defaults_are_written_out() {
    let c = golden("circus.ini");
    let g = c.table["ringmaster"].as_table().unwrap();
    assert_eq!(s(g, "endpoint"), Some("tcp://127.0.0.1:5555"));
    assert_eq!(s(g, "pubsub_endpoint"), Some("tcp://127.0.0.1:5556"));
    assert_eq!(s(g, "pidfile"), Some("pidfile"));
    assert_eq!(s(g, "loglevel"), Some("debug"));
    assert!(
        g.get("stats_endpoint").is_none(),
        "stats stay off unless asked for"
    );

    let c = golden("issue310.ini");
    let sock = socket(&c, "web");
    assert_eq!(s(sock, "host"), Some("localhost"));
    assert_eq!(sock["port"].as_integer(), Some(8080));
    assert_eq!(sock["backlog"].as_integer(), Some(2048));
    assert_eq!(sock["nodelay"].as_bool(), Some(false));
    let w = watcher(&c, "web");
    assert_eq!(w["numprocesses"].as_integer(), Some(1));
    assert_eq!(w["graceful_timeout"].as_integer(), Some(30));
    assert_eq!(w["copy_path"].as_bool(), Some(false));
    // Run-time variables are left for the daemon.
    assert_eq!(s(w, "args"), Some("--fd $(circus.sockets.web)"));

    // A unix socket: family kept, Circus's default umask 8 written out, no host/port.
    let c = golden("example7.ini");
    let sock = socket(&c, "webapp");
    assert_eq!(s(sock, "family"), Some("AF_UNIX"));
    assert_eq!(sock["umask"].as_integer(), Some(8));
    assert!(sock.get("host").is_none() && sock.get("port").is_none());
    assert_eq!(find(&c, Severity::Warning, "PYTHONPATH").location.line, 10);

    // max_age keeps its variance; rlimits become the model's keys.
    let c = golden("max_age.ini");
    let w = watcher(&c, "dummy");
    assert_eq!(w["max_age_variance"].as_integer(), Some(5));
    assert_eq!(w["rlimit_nofile"].as_integer(), Some(300));
    assert_eq!(w["rlimit_nproc"].as_integer(), Some(10));

    // The flapping plugin and a watcher's flapping.* keys are replaced, not refused.
    let c = golden("example3.ini");
    assert!(!c.has_errors());
    find(
        &c,
        Severity::Warning,
        "restart policy replaces the flapping plugin",
    );
    let lines: Vec<usize> = c
        .warnings()
        .filter(|d| d.message.contains("flapping."))
        .map(|d| d.location.line)
        .collect();
    assert_eq!(lines, [11, 19, 20, 21]);

    // refresh_time is deprecated in Circus; the quoted time_format is kept verbatim.
    let c = golden("example2.ini");
    find(&c, Severity::Warning, "stdout_stream.refresh_time");
    let out = watcher(&c, "verbose")["stdout_stream"].as_table().unwrap();
    assert_eq!(s(out, "class"), Some("FileStream"));
    assert_eq!(s(out, "time_format"), Some("'%Y/%m/%d | %H:%M:%S'"));
}

// ---------------------------------------------------------------- the reader

fn read(text: &str) -> Result<Document, Vec<ini::SyntaxError>> {
    let mut doc = Document::default();
    let mut errors = Vec::new();
    doc.read_str(text, Path::new("mem.ini"), &mut errors);
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors)
    }
}

fn value<'a>(doc: &'a Document, section: &str, key: &str) -> Option<&'a str> {
    doc.get(section, key).map(|e| e.value.as_str())
}

#[test]
fn reader_comments_and_inline_comments() {
    let doc = read(
        "# hash\n; semicolon\nrem a rem line\nREM\tupper case\n[s]\n\
         a = value ; comment\nb = value;not a comment\nc = a;b ; c\nd = # kept\ne = \"\"\nf: colon = kept\n\
         rem = a key, because rem= is one word\n",
    )
    .unwrap();
    assert_eq!(value(&doc, "s", "a"), Some("value"));
    assert_eq!(value(&doc, "s", "b"), Some("value;not a comment"));
    assert_eq!(
        value(&doc, "s", "c"),
        Some("a;b ; c"),
        "only the first ; is looked at"
    );
    assert_eq!(value(&doc, "s", "d"), Some("# kept"));
    assert_eq!(value(&doc, "s", "e"), Some(""));
    assert_eq!(value(&doc, "s", "f"), Some("colon = kept"));
    assert_eq!(
        value(&doc, "s", "rem"),
        None,
        "`rem = …` is a comment line in Circus"
    );
    let e = doc.get("s", "a").unwrap();
    assert_eq!((e.location.line, e.column), (6, 5));
}

#[test]
fn reader_continuations_duplicates_and_merged_sections() {
    let doc = read(
        "[s]\nargs = --a\n  --b\n\n\t# not a comment\nk = first\nk = second\n  tail of second\n\
         [t]\nx = 1\n[s]\nk = third\nnew = 1\n",
    )
    .unwrap();
    assert_eq!(value(&doc, "s", "args"), Some("--a\n--b\n# not a comment"));
    // Circus appends a duplicate's continuation to the first value (same list).
    assert_eq!(value(&doc, "s", "k"), Some("first\ntail of second"));
    assert_eq!(
        value(&doc, "s", "new"),
        Some("1"),
        "a repeated section extends the first"
    );
    let lines: Vec<usize> = doc.warnings.iter().map(|w| w.location.line).collect();
    assert_eq!(lines, [7, 12]);
    let names: Vec<&str> = doc.sections().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["s", "t"]);
    assert_eq!(doc.section("s").unwrap().location.line, 1);
}

#[test]
fn reader_syntax_errors_carry_file_and_line() {
    let errs = read("key = before any section\n[s]\nok = 1\nnot a key value line\n").unwrap_err();
    let lines: Vec<usize> = errs.iter().map(|e| e.location.line).collect();
    assert_eq!(lines, [1, 4]);
    assert!(
        errs[1]
            .to_string()
            .starts_with("mem.ini:4: expected `key = value`"),
        "{}",
        errs[1]
    );

    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.ini",
        "[circus]\nendpoint = x\n oops\n[watcher:w]\njust words\n",
    );
    match circus_ini::convert_with_env(&p, &env()) {
        Err(IniError::Syntax(errs)) => {
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].location, ini::Location::new(&p, 5));
        }
        other => panic!("{other:?}"),
    }
    match circus_ini::convert_with_env(&dir.path().join("missing.ini"), &env()) {
        Err(e @ IniError::Io { .. }) => assert!(e.to_string().contains("missing.ini")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn includes_extend_but_do_not_override() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "conf.d/a.ini",
        "[watcher:web]\ncmd = overridden\nnumprocesses = 7\nargs = --a\n  --b\n[watcher:extra]\ncmd = sleep 1\n\
         [circus]\ninclude = never-followed.ini\n",
    );
    write(dir.path(), "more/b.ini", "[env:web]\nFROM_DIR = yes\n");
    write(dir.path(), "more/.hidden.ini", "[watcher:hidden]\ncmd = x\n");
    let main = write(
        dir.path(),
        "circus.ini",
        "[circus]\ninclude = conf.d/*.ini nothing/*.ini\ninclude_dir = more\n[watcher:web]\ncmd = sleep 10\n",
    );
    let c = conv(&main);
    let web = watcher(&c, "web");
    assert_eq!(s(web, "cmd"), Some("sleep 10"), "the main file wins");
    assert_eq!(
        web["numprocesses"].as_integer(),
        Some(7),
        "an include extends the section"
    );
    assert_eq!(web["env"]["FROM_DIR"].as_str(), Some("yes"));
    assert!(c.table["watchers"].get("extra").is_some());
    assert!(
        c.table["watchers"].get("hidden").is_none(),
        "dot files are not globbed, as in Python"
    );
    assert_eq!(c.files.len(), 3);
    assert_eq!(
        c.provenance["watchers.web.numprocesses"].file,
        dir.path().join("conf.d/a.ini")
    );

    let a = dir.path().join("conf.d/a.ini");
    let w = find(&c, Severity::Warning, "\"cmd\" in [watcher:web] is already set");
    assert_eq!((w.location.file.clone(), w.location.line), (a.clone(), 2));
    assert_eq!(find(&c, Severity::Warning, "nothing/*.ini").location.line, 2);
    assert_eq!(
        s(web, "args"),
        Some("--a\n--b"),
        "continuation lines join with a newline"
    );
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);

    // Circus reads include keys from the main file only.
    let x = write(dir.path(), "x.ini", "[circus]\ninclude_dir = more\n");
    let c = conv(&write(dir.path(), "only.ini", "[circus]\ninclude = x.ini\n"));
    assert_eq!(
        find(&c, Severity::Warning, "not followed").location,
        ini::Location::new(&x, 2)
    );
    assert!(c.table.get("watchers").is_none());
}

// ---------------------------------------------------------------- conversion

#[test]
fn env_sections_patterns_and_substitution() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "env.ini",
        "[env]\nhome = /from-env-section\nPORT = 7000\nGREETING = hi $(CIRCUS.ENV.user)\n\
         [watcher:api]\ncmd = serve --home $(circus.env.HOME) --port $(circus.env.port) --log $(circus.env.LOGDIR) $(circus.wid)\n\
         numprocesses = $(circus.env.PORT)\n\
         [watcher:b]\ncmd = b\n[watcher:other]\ncmd = o\n\
         [env:a*,b]\nLOGDIR = /var/log/ab\nP = $PATH:/opt/bin\n\
         [env:api]\nLOGDIR = /var/log/api\nNOPE = $NOT_SET_ANYWHERE\n\
         [env:nobody]\nX = 1\n",
    );
    let c = conv(&p);
    let g = c.table["env"].as_table().unwrap();
    assert_eq!(
        s(g, "GREETING"),
        Some("hi tester"),
        "[env] expands against os.environ, any case"
    );
    let api = watcher(&c, "api");
    // [env] beats os.environ, [env:api] beats [env:a*,b]; names fold to lower case.
    assert_eq!(
        s(api, "cmd"),
        Some("serve --home /from-env-section --port 7000 --log /var/log/api $(circus.wid)")
    );
    assert_eq!(api["numprocesses"].as_integer(), Some(7000));
    assert_eq!(s(api["env"].as_table().unwrap(), "LOGDIR"), Some("/var/log/api"));
    // $UPPER in env values is the daemon's job at spawn (as Circus did at load).
    assert_eq!(s(api["env"].as_table().unwrap(), "P"), Some("$PATH:/opt/bin"));
    let b = watcher(&c, "b");
    assert_eq!(s(b["env"].as_table().unwrap(), "LOGDIR"), Some("/var/log/ab"));
    assert!(watcher(&c, "other").get("env").is_none());
    assert_eq!(c.provenance["watchers.api.env.LOGDIR"].line, 16);

    let unset = find(&c, Severity::Warning, "$NOT_SET_ANYWHERE is not set");
    assert_eq!(unset.location.line, 17);
    assert_eq!(
        find(&c, Severity::Warning, "[env:nobody] matches no watcher")
            .location
            .line,
        18
    );
    assert!(!c.has_errors());
}

#[test]
fn bad_values_are_errors_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.ini",
        "[circus]\nstatsd = maybe\numask = 9\n\
         [watcher:w]\ncmd = sleep 1\ncopy_env = sometimes\nnumprocesses = -1\ngraceful_timeout = soon\n\
         stop_signal = SIGNOPE\nrlimit_bogus = 1\nsingleton = yes\n\
         [watcher:x]\ncmd = sleep 1\nsingleton = true\nnumprocesses = 3\n\
         [socket:s]\nport = 70000\nfamily = AF_IPX\n",
    );
    let c = conv(&p);
    let got: Vec<(usize, &str)> = c
        .errors()
        .map(|d| (d.location.line, d.message.as_str()))
        .collect();
    let want = [
        (
            2,
            "[circus] statsd: \"maybe\" is not a boolean (expected yes/true/on/1 or no/false/off/0)",
        ),
        (3, "umask"),
        (6, "copy_env: \"sometimes\" is not a boolean"),
        (7, "numprocesses"),
        (8, "graceful_timeout"),
        (9, "SIGNOPE"),
        (10, "RLIMIT_BOGUS"),
        (15, "a singleton watcher cannot have 3 processes"),
        (17, "port"),
        (18, "AF_IPX"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((line, msg), (wline, wmsg)) in got.iter().zip(want) {
        assert_eq!(*line, wline, "{msg}");
        assert!(msg.contains(wmsg), "line {line}: {msg:?} lacks {wmsg:?}");
    }
    let shown = c.errors().next().unwrap().to_string();
    assert!(
        shown.starts_with(&format!("{}:2: error: [circus] statsd", p.display())),
        "{shown}"
    );
    // What is left is still a valid document.
    assert_valid("bad.ini", &c);
}

#[test]
fn unsupported_options_are_reported_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "unsupported.ini",
        "[circus]\nhttpd = true\nloggerconfig = logging.yaml\ndebug_gc = false\nstream_backend = thread\n\
         multicast_endpoint = udp://237.219.251.97:12027\nfancy = 1\n\
         [watcher:w]\ncmd = sleep 1\nhooks.before_start = my.hooks.check\non_demand = true\nstdin_socket = s\n\
         virtualenv = /venv\ncheck_flapping = true\nflapping.max_retry = 3\nenv = X=1\nmystery = 1\n\
         copy_path = true\nstdout_stream.class = my.module.Stream\nargs = $WID\n\
         [plugin:flap]\nuse = circus.plugins.flapping.Flapping\n\
         [plugin:stats]\nuse = circus.plugins.statsd.StatsdEmitter\n\
         [socket:s]\nproto = tcp\nwhatever = 1\n[Watcher:typo]\ncmd = x\n",
    );
    let c = conv(&p);
    let errs: Vec<(usize, String)> = c.errors().map(|d| (d.location.line, d.message.clone())).collect();
    let err_lines: Vec<usize> = errs.iter().map(|e| e.0).collect();
    // httpd, loggerconfig, hooks, on_demand, stdin_socket, virtualenv,
    // copy_path without copy_env, a Python stream class, a Python plugin.
    assert_eq!(err_lines, [2, 3, 10, 11, 12, 13, 18, 19, 24], "{errs:#?}");
    let warns: Vec<usize> = c.warnings().map(|d| d.location.line).collect();
    // debug_gc, stream_backend, multicast_endpoint, fancy, check_flapping,
    // flapping.max_retry, env, mystery, $WID, the flapping plugin, proto,
    // an unknown socket key, an unknown section.
    assert_eq!(
        warns,
        [4, 5, 6, 7, 14, 15, 16, 17, 20, 22, 26, 27, 28],
        "{:#?}",
        c.diagnostics
    );
    assert!(find(&c, Severity::Warning, "mystery")
        .message
        .contains("unknown option ignored"));
    assert!(find(&c, Severity::Warning, "[Watcher:typo]")
        .message
        .contains("case-sensitively"));
    assert_valid("unsupported.ini", &c);
}

#[test]
fn sockets_keep_circus_quirks() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "sockets.ini",
        "[socket:Web]\nhost = 0.0.0.0\nport = 0\n\
         [socket:unix]\npath = /tmp/x.sock\numask = 022\nreplace = yes\n\
         [socket:dgram]\ntype = sock_dgram\nfamily = af_inet6\nhost = ::1\nport = 9\n",
    );
    let c = conv(&p);
    assert_eq!(
        socket(&c, "web")["port"].as_integer(),
        Some(0),
        "names are lower-cased"
    );
    let unix = socket(&c, "unix");
    // Circus read `022` as decimal 22 (= 0o026); that is what it applied.
    assert_eq!(unix["umask"].as_integer(), Some(22));
    assert_eq!(unix["replace"].as_bool(), Some(true));
    let w = find(&c, Severity::Warning, "decimal");
    assert_eq!(w.location.line, 6);
    let dgram = socket(&c, "dgram");
    assert_eq!(s(dgram, "type"), Some("SOCK_DGRAM"));
    assert_eq!(s(dgram, "family"), Some("AF_INET6"));
    assert!(
        dgram.get("nodelay").is_none(),
        "TCP_NODELAY is for stream sockets"
    );
    assert_valid("sockets.ini", &c);
}

#[test]
fn streams_follow_circus_classes() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "streams.ini",
        "[watcher:a]\ncmd = a\nstdout_stream.class = circus.stream.FileStream\nstdout_stream.filename = /tmp/a.log\n\
         stdout_stream.max_bytes = 1_000\nstdout_stream.backup_count = 2\nstdout_stream.color = red\n\
         stderr_stream.class = TimedRotatingFileStream\nstderr_stream.filename = /tmp/a.err\n\
         stderr_stream.rotate_when = midnight\nstderr_stream.utc = false\nstderr_stream.max_bytes = 5\n\
         [watcher:b]\ncmd = b\nstdout_stream.class = FancyStdoutStream\nstdout_stream.color = mauve\n\
         stderr_stream.class = TimedRotatingFileStream\nstderr_stream.filename = /tmp/b.err\n\
         [watcher:c]\ncmd = c\nstdout_stream.max_bytes = 10\nstderr_stream.class = QueueStream\n",
    );
    let c = conv(&p);
    let out = watcher(&c, "a")["stdout_stream"].as_table().unwrap();
    assert_eq!(s(out, "class"), Some("FileStream"));
    assert_eq!(out["max_bytes"].as_integer(), Some(1000));
    assert!(out.get("color").is_none(), "FileStream ignores color");
    let err = watcher(&c, "a")["stderr_stream"].as_table().unwrap();
    assert_eq!(s(err, "rotate_when"), Some("MIDNIGHT"));
    assert_eq!(
        err["utc"].as_bool(),
        Some(true),
        "Circus: bool(\"false\") is True"
    );
    assert!(
        err.get("max_bytes").is_none(),
        "TimedRotatingFileStream ignores max_bytes"
    );
    let warned: Vec<usize> = c.warnings().map(|d| d.location.line).collect();
    assert_eq!(warned, [7, 10, 11, 12, 16], "{:#?}", c.diagnostics);
    assert!(watcher(&c, "b")["stdout_stream"].get("color").is_none());
    let errs: Vec<usize> = c.errors().map(|d| d.location.line).collect();
    // TimedRotatingFileStream without rotate_when; no class or filename; QueueStream.
    assert_eq!(errs, [17, 21, 22], "{:#?}", c.diagnostics);
    assert_valid("streams.ini", &c);
}

#[test]
fn toml_output_is_readable_and_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "order.ini",
        "[watcher:zeta]\ncmd = z\n[socket:sock]\nport = 1\n[watcher:alpha]\ncmd = a\nargs = x\n  y\n\
         [watcher:my.app]\ncmd = m\n[env:zeta]\nA = 1\n",
    );
    let c = conv(&p);
    let text = c.to_toml_string();
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(
        headers,
        [
            "[ringmaster]",
            "[sockets.sock]",
            "[watchers.zeta]",
            "[watchers.zeta.env]",
            "[watchers.alpha]",
            "[watchers.\"my.app\"]"
        ]
    );
    let sorted: Vec<String> = circus_ini::to_toml_string(&c.table)
        .lines()
        .filter(|l| l.starts_with("[watchers."))
        .map(String::from)
        .collect();
    assert_eq!(
        sorted,
        [
            "[watchers.alpha]",
            "[watchers.\"my.app\"]",
            "[watchers.zeta]",
            "[watchers.zeta.env]"
        ]
    );
    assert!(text.contains("[watchers.alpha]\ncmd = \"a\"\nargs = "), "{text}");
    assert_eq!(c.provenance["watchers.\"my.app\".cmd"].line, 10);
    assert_valid("order.ini", &c);
}

// ------------------------------------------------- through the daemon's config

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
fn circus_defaults_reach_the_daemon_config() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "s.ini",
        "[socket:s]\nbacklog = 10\n[watcher:w]\ncmd = sleep 1\nuse_sockets = 1\n",
    );
    let c = config::load(&p, Some(Format::Ini)).unwrap();
    assert_eq!(c.global.endpoint.as_deref(), Some("tcp://127.0.0.1:5555"));
    match &c.sockets[0].addr {
        config::SocketAddrSpec::Inet { host, port, .. } => {
            assert_eq!((host.as_str(), *port), ("localhost", 8080))
        }
        other => panic!("{other:?}"),
    }
    // A non-copy_env watcher gets no PATH, as in Circus.
    assert!(c.watchers.iter().all(|w| w.copy_env || !w.copy_path));
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
