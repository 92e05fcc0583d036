//! `ringmaster run`: load the config, bind the sockets, start the actor tree
//! and turn signals into messages to the root actor.

use crate::config::{self, Config, Format};
use crate::containment;
use crate::control::context::{Ctx, Globals, Inner};
use crate::control::pubsub::Publisher;
use crate::control::transport::{self, ControlServer};
use crate::control::CommandDispatcher;
use crate::events::Events;
use crate::reaper::{self, Reaper};
use crate::sockets;
use crate::streams::LogHub;
use crate::supervisor::reload::ReloadConfig;
use crate::supervisor::Upgrade;
use crate::supervisor::{Closers, CriticalEnded, Shutdown, Supervisor};
use crate::systemd;
use crate::upgrade::{self, restore::Restoring};
use actix::prelude::*;
use anyhow::{Context as _, Result};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// The daemon's own log on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for a person; coloured only on a terminal.
    #[default]
    #[value(alias = "human")]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, fields) for log shippers.
    Json,
}

impl From<crate::streams::LogFormat> for LogFormat {
    fn from(f: crate::streams::LogFormat) -> Self {
        match f {
            crate::streams::LogFormat::Text => LogFormat::Text,
            crate::streams::LogFormat::Json => LogFormat::Json,
        }
    }
}

/// Colour only for a person at a terminal: a redirected log (a file, journald,
/// a pipe to a shipper) must not be full of escape sequences. `NO_COLOR` (any
/// non-empty value) turns it off on a terminal too.
fn use_ansi(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

pub fn init_logging(format: LogFormat, level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let ansi = use_ansi(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let res = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_ansi(false).flatten_event(true).try_init(),
    };
    if let Err(e) = res {
        eprintln!("ringmaster: cannot set up logging: {e}");
    }
}

/// Loads a config, printing a full report on error.
pub fn load_or_report(path: &Path, format: Option<Format>) -> Option<Config> {
    match config::load(path, format) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            None
        }
    }
}

/// Runs the daemon in the foreground; returns the process exit code: 0 after
/// a requested stop, 1 when it could not start or a `critical` watcher ended.
/// `init`: run as a container's init (automatic when our pid is 1).
pub fn run(cfg: Config, init: bool) -> i32 {
    // Before any thread exists: an upgrade's variables and the manager's
    // (which the next upgrade passes on), then the manager's handoff, which
    // edits the environment and must own the passed sockets before anything
    // else looks at inherited fds.
    upgrade::exec::remember_manager_env();
    let restoring = upgrade::restore::from_env();
    match &restoring {
        Some(r) => upgrade::set_started(r.snap.started),
        None => {
            upgrade::set_started(crate::watchers::now_f64());
            upgrade::exec::keep_self_exe();
        }
    }
    let handoff = systemd::take_handoff();
    crate::http::take_env_token();
    // Before any thread exists, so that every thread inherits it: the
    // signals we handle are blocked everywhere but on the signal thread
    // (started once the handlers exist; see `upgrade::signals`), and a mask
    // inherited from our parent (some CI runners and signalfd-based
    // supervisors block TERM/CHLD) is cleared. After an upgrade, signals the
    // previous image left pending wait for that thread.
    upgrade::signals::block_everywhere();
    if let Err(e) = upgrade::signals::count_deliveries() {
        tracing::error!("cannot handle signals: {e}");
        return 1;
    }
    // fds our parent left open without close-on-exec would reach every hook,
    // probe and child; the daemon uses no inherited fd but 0, 1 and 2.
    cloexec_inherited_fds();
    // While the daemon holds few fds: a spawn's cost grows with the number of
    // the channel's fd (see processes::spawn's child.rs).
    if let Err(e) = crate::processes::spawn::reserve_channels() {
        tracing::warn!("cannot reserve the spawn channels now ({e}); the first spawn will");
    }
    for w in cfg.warnings.iter().chain(&handoff.warnings) {
        tracing::warn!("{w}");
    }
    if let Some(u) = cfg.global.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(u));
    }
    if init || std::process::id() == 1 {
        if let Err(e) = crate::init::prepare() {
            tracing::error!("cannot run as init: {e}");
            return 1;
        }
    } else {
        reaper::become_subreaper();
    }
    if let Err(e) = containment::init(cfg.global.kill_mode) {
        tracing::error!("cannot start: {e}");
        return 1;
    }
    let sys = System::new();
    let started = sys.block_on(start(cfg, handoff, restoring.as_ref()));
    let started = match (started, restoring) {
        (Ok(()), Some(r)) => {
            r.finish();
            Ok(())
        }
        (Err(e), Some(r)) => r.fail(&format!("{e:#}")),
        (s, None) => s,
    };
    // The handlers exist: signals are taken from now on (those held across
    // an exec at once).
    let started =
        started.and_then(|()| upgrade::signals::start_thread().context("cannot start the signal thread"));
    let code = match started {
        Ok(()) => sys.run_with_code().unwrap_or_else(|e| {
            tracing::error!("event loop failed: {e}");
            1
        }),
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    };
    leave_nothing_behind();
    containment::teardown();
    code
}

/// Marks every fd ≥ 3 close-on-exec (close_range, or one by one on old kernels).
fn cloexec_inherited_fds() {
    // SAFETY: plain syscalls on fd numbers; nothing is closed.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        tracing::warn!("cannot list inherited fds; they stay open in children");
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= 3)
        .collect();
    for fd in fds {
        // SAFETY: as above.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

async fn start(cfg: Config, handoff: systemd::Handoff, restoring: Option<&Restoring>) -> Result<()> {
    if restoring.is_some() {
        // Exits during the exec are zombies: keep their statuses for the adopting slots.
        Reaper::global().hold();
    }
    Reaper::global().start().context("cannot watch SIGCHLD")?;
    upgrade::listeners::enable();
    if let Some(r) = restoring {
        r.install_listeners()
            .context("upgrade: control and pubsub listeners")?;
    }
    let mut passed = handoff.listen;
    let mut bound = Vec::new();
    for spec in &cfg.sockets {
        // Socket activation: the manager's socket of the same name is used as is.
        let b = match (
            passed.remove(&spec.name),
            restoring.and_then(|r| r.socket(&spec.name)),
        ) {
            (_, Some((fd, created))) => {
                let fd = fd.with_context(|| format!("upgrade: socket {:?}", spec.name))?;
                let mut b = sockets::adopt(spec, fd).context("upgrade")?;
                b.created_path = created;
                b
            }
            (Some(fd), None) => sockets::adopt(spec, fd).context("cannot start")?,
            (None, None) => sockets::bind(spec).with_context(|| {
                format!("cannot start: socket {:?} ({})", spec.name, describe(&spec.addr))
            })?,
        };
        bound.push(b);
    }
    for name in passed.keys() {
        tracing::warn!(socket = %name, "the service manager passed socket {name:?}, but no [sockets.{name}] is configured: closed");
    }
    drop(passed);
    tracing::info!(config = %cfg.path.display(), pid = std::process::id(), "ringmaster starting");

    let endpoint = cfg
        .global
        .endpoint
        .clone()
        .unwrap_or_else(transport::default_endpoint);
    let pubsub_endpoint = cfg
        .global
        .pubsub_endpoint
        .clone()
        .unwrap_or_else(transport::default_pubsub_endpoint);
    let mut server = ControlServer::bind(&endpoint)
        .await
        .with_context(|| format!("cannot start: control endpoint {endpoint}"))?;
    let publisher = Publisher::bind(&pubsub_endpoint)
        .await
        .with_context(|| format!("cannot start: pubsub endpoint {pubsub_endpoint}"))?;
    if let Some(owner) = &cfg.global.endpoint_owner {
        chown_endpoints(owner, &[&endpoint, &pubsub_endpoint])?;
    }
    let http = match cfg.global.http_endpoint {
        Some(addr) => Some(
            crate::http::prepare(&crate::http::HttpOptions {
                addr,
                token_file: cfg.global.http_token_file.clone(),
                metrics_auth: cfg.global.http_metrics_auth,
            })
            .context("cannot start")?,
        ),
        None => None,
    };
    let events = Events::default();
    let p = publisher.clone();
    events.set_sink(Arc::new(move |topic, payload| p.publish(topic, &payload)));

    let hub = LogHub::start(cfg.global.history_lines).context("cannot start the log thread")?;
    let p = publisher.clone();
    let follows = Arc::new(crate::control::follows::LogFollows::new(cfg.global.publish_logs));
    let wanted = follows.clone();
    hub.set_publish_hook(Box::new(move |r| {
        if !wanted.wanted(&r.watcher) {
            return;
        }
        // `seq` lets a follower see how many lines it missed (PUB drops for slow readers).
        let seq = crate::streams::seq::next(&r.watcher, r.stream);
        let t = r
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // Topics name a watcher in lower case, as events do and followers subscribe.
        p.publish(
            format!("logs.{}.{}", r.watcher.to_lowercase(), r.stream.as_str()),
            &serde_json::json!({"time": t, "pid": r.pid, "wid": r.wid, "stream": r.stream.as_str(),
                "line": String::from_utf8_lossy(&r.line), "seq": seq}),
        );
    }));
    let closers = Rc::new(RefCell::new(Closers::default()));
    let config = Rc::new(RefCell::new(cfg.clone()));
    let supervisor = match restoring {
        Some(r) => {
            let s = Supervisor::restored(
                config.clone(),
                bound,
                events.clone(),
                hub.clone(),
                closers.clone(),
                r,
            )
            .context("upgrade");
            // Every process of the snapshot has its owner now.
            Reaper::global().release();
            s?
        }
        None => Supervisor::new(
            config.clone(),
            bound,
            events.clone(),
            hub.clone(),
            closers.clone(),
        )
        .context("cannot start")?,
    }
    .with_notifier(handoff.notifier, handoff.watchdog);
    let (registry, sockets) = supervisor.registries();
    let globals = Globals {
        endpoint: server.endpoints().first().cloned().unwrap_or(endpoint),
        pubsub_endpoint: publisher.endpoints().first().cloned().unwrap_or(pubsub_endpoint),
        stats_endpoint: cfg.global.stats_endpoint.clone(),
        check_delay: cfg.global.check_delay.map(|d| d.as_secs_f64()),
    };
    tracing::info!(endpoint = %globals.endpoint, pubsub = %globals.pubsub_endpoint, "control channel ready");
    let (cfg_stats, statsd) = (cfg.global.stats_endpoint.clone(), cfg.global.statsd);
    let root = supervisor.start();
    let critical = root.clone();
    events.set_critical_hook(Arc::new(move |watcher, why| {
        critical.do_send(CriticalEnded { watcher, why })
    }));
    let ctx = Ctx(Rc::new(Inner {
        root: root.clone(),
        registry,
        sockets,
        globals,
        events,
        started: std::time::SystemTime::now(),
        hub: hub.clone(),
        follows,
        config,
    }));
    let stats_endpoint = match (&cfg_stats, statsd) {
        (Some(e), _) => Some(e.clone()),
        (None, true) => Some(transport::default_stats_endpoint()),
        (None, false) => None,
    };
    let stats_publisher = match stats_endpoint {
        Some(e) => {
            let p = Publisher::bind(&e)
                .await
                .with_context(|| format!("cannot start: stats endpoint {e}"))?;
            tracing::info!(endpoint = %e, "publishing stats");
            crate::control::stats_stream::spawn(ctx.clone(), p.clone());
            Some(p)
        }
        None => None,
    };
    if let Some(http) = http {
        let remove = http.serve(ctx.clone()).context("cannot start")?;
        closers.borrow_mut().on_exit.push(remove);
    }
    let hub_for_close = hub.clone();
    let carried = match restoring {
        Some(r) => {
            server
                .adopt(&r.snap.control.connections, |c| r.control_conn(c))
                .await;
            r.snap.control.requests.clone()
        }
        None => Vec::new(),
    };
    let handle = server.run_resuming(CommandDispatcher(ctx.clone()), carried);
    {
        let mut c = closers.borrow_mut();
        c.control = Some(handle);
        c.logs = Some(hub_for_close);
        c.publishers.push(publisher);
        c.publishers.extend(stats_publisher);
    }
    install_signals(root, ctx)?;
    Ok(())
}

fn chown_endpoints(owner: &str, endpoints: &[&str]) -> Result<()> {
    let user = nix::unistd::User::from_name(owner)
        .with_context(|| format!("endpoint_owner {owner:?}"))?
        .with_context(|| format!("endpoint_owner: no such user {owner:?}"))?;
    for e in endpoints {
        if let Some(path) = e.strip_prefix("ipc://") {
            nix::unistd::chown(path, Some(user.uid), None)
                .with_context(|| format!("cannot chown {path} to {owner}"))?;
        }
    }
    Ok(())
}

fn describe(a: &crate::config::SocketAddrSpec) -> String {
    match a {
        crate::config::SocketAddrSpec::Inet { host, port, .. } => format!("{host}:{port}"),
        crate::config::SocketAddrSpec::Unix { path, .. } => path.display().to_string(),
    }
}

fn install_signals(root: Addr<Supervisor>, ctx: Ctx) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut quit = signal(SignalKind::quit()).context("SIGQUIT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let hup_root = root.clone();
    let r = root.clone();
    actix::spawn(async move {
        let mut stopping = false;
        loop {
            let (name, sig) = tokio::select! {
                _ = term.recv() => ("SIGTERM", libc::SIGTERM),
                _ = int.recv() => ("SIGINT", libc::SIGINT),
                _ = quit.recv() => ("SIGQUIT", libc::SIGQUIT),
            };
            let seen = upgrade::signals::seen(sig);
            // Acted on once the root has handled the stop (an upgrade's exec
            // before that passes the signal on to the new binary).
            let shutdown = |immediate| {
                let sent = r.send(Shutdown { immediate });
                actix::spawn(async move {
                    if sent.await.is_ok() {
                        upgrade::signals::acted(sig, seen);
                    }
                });
            };
            if !stopping {
                stopping = true;
                tracing::info!("{name} received: stopping gracefully (a second SIGINT kills at once)");
                shutdown(false);
            } else if name == "SIGINT" {
                // Ctrl-C twice: the operator does not want to wait.
                tracing::warn!("SIGINT received again: killing everything now");
                shutdown(true);
            } else {
                tracing::info!("{name} received again: already stopping");
                upgrade::signals::acted(sig, seen);
            }
        }
    });
    let mut usr2 = signal(SignalKind::user_defined2()).context("SIGUSR2 handler")?;
    let up_root = root.clone();
    actix::spawn(async move {
        while usr2.recv().await.is_some() {
            // Acted on at once: a SIGUSR2 during its own upgrade is not passed on.
            upgrade::signals::acted(libc::SIGUSR2, upgrade::signals::seen(libc::SIGUSR2));
            tracing::info!("SIGUSR2 received: upgrading in place");
            match up_root.send(Upgrade { binary: None }).await {
                Ok(Ok(u)) => {
                    let _ = u.go.send(());
                }
                Ok(Err(e)) => tracing::error!("not upgraded: {e}"),
                Err(e) => tracing::error!("not upgraded: supervisor unavailable: {e}"),
            }
        }
    });
    let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
    actix::spawn(async move {
        while usr1.recv().await.is_some() {
            let seen = upgrade::signals::seen(libc::SIGUSR1);
            tracing::info!("SIGUSR1 received: reopening log files");
            crate::control::commands::reopen_logs(&ctx);
            upgrade::signals::acted(libc::SIGUSR1, seen);
        }
    });

    actix::spawn(async move {
        while hup.recv().await.is_some() {
            let seen = upgrade::signals::seen(libc::SIGHUP);
            tracing::info!("SIGHUP received: reloading the configuration file");
            let sent = hup_root.send(ReloadConfig { dry_run: false }).await;
            // The root took the reload (an upgrade's exec before that passes the signal on).
            upgrade::signals::acted(libc::SIGHUP, seen);
            match sent {
                Ok(Ok((plan, done))) => {
                    let errors = done.wait().await.unwrap_or_default();
                    if errors.is_empty() {
                        tracing::info!("configuration reloaded: {plan}");
                    } else {
                        tracing::error!("configuration reloaded ({plan}), but: {}", errors.join("; "));
                    }
                }
                Ok(Err(e)) => tracing::error!("configuration not reloaded, nothing changed: {e}"),
                Err(e) => tracing::error!("configuration not reloaded: supervisor unavailable: {e}"),
            }
        }
    });
    Ok(())
}

/// After the event loop: kill and reap whatever is still our child
/// (processes that left their group, orphans handed to us as subreaper).
fn leave_nothing_behind() {
    for _ in 0..50 {
        let kids = reaper::direct_children();
        if kids.is_empty() {
            return;
        }
        for pid in &kids {
            tracing::warn!(pid, "killing leftover child at exit");
            // SAFETY: plain syscall on our own child.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        for pid in kids {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::use_ansi;

    /// The vendored zeromq parses endpoints by hand instead of with two
    /// regexes (vendor/zeromq/RINGMASTER-PATCH.md): what the regexes
    /// accepted or refused, it must too.
    #[test]
    fn endpoints_parse_as_the_zeromq_regexes_did() {
        use std::str::FromStr;
        use zeromq::{Endpoint, Host};
        let transport = regex::Regex::new(r"^([[:lower:]]+)://(.+)$").unwrap();
        let host_port = regex::Regex::new(r"^(.+):([0-9]+)$").unwrap();
        for s in [
            "tcp://127.0.0.1:5555",
            "tcp://[::1]:5555",
            "tcp://localhost:0",
            "tcp://a:b:7",
            "ipc:///tmp/ringmaster.sock",
            "ipc://relative/path",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:",
            "tcp://:5555",
            "tcp://h:5555\n",
            "tcp://h:5\n5",
            "TCP://h:1",
            "tc1://h:1",
            "://h:1",
            "tcp:/h:1",
            "tcp://",
            "ipc://",
            "udp://h:1",
            "tcp://h:99999",
            "tcp://h:+5",
        ] {
            let by_regex = transport.captures(s).and_then(|c| match &c[1] {
                "tcp" => host_port
                    .captures(&c[2])
                    .and_then(|hp| Some((hp[1].parse::<Host>().ok()?, hp[2].parse::<u16>().ok()?)))
                    .map(|(h, p)| Endpoint::Tcp(h, p)),
                "ipc" => Some(Endpoint::Ipc(Some(c[2].into()))),
                _ => None,
            });
            assert_eq!(Endpoint::from_str(s).ok(), by_regex, "{s:?}");
        }
        assert_eq!(
            Endpoint::from_str("tcp://127.0.0.1:5555").ok(),
            Some(Endpoint::Tcp(Host::Ipv4([127, 0, 0, 1].into()), 5555))
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_ansi(true, None));
        assert!(use_ansi(true, Some("".into())));
        assert!(!use_ansi(true, Some("1".into())));
        assert!(!use_ansi(false, None));
    }
}
