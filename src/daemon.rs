//! `ringmaster run`: load the config, bind the sockets, start the actor tree
//! and turn signals into messages to the root actor.

use crate::arbiter::{ArbiterActor, Hangup, Shutdown};
use crate::config::{self, Config, Format};
use crate::events::Events;
use crate::reaper::{self, Reaper};
use crate::sockets;
use actix::prelude::*;
use anyhow::{Context as _, Result};
use std::path::Path;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let res = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
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

/// Runs the daemon in the foreground; returns the process exit code.
pub fn run(cfg: Config) -> i32 {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if let Some(u) = cfg.global.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(u));
    }
    reaper::become_subreaper();
    let sys = System::new();
    let started = sys.block_on(start(cfg));
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
    code
}

async fn start(cfg: Config) -> Result<()> {
    Reaper::global().start().context("cannot watch SIGCHLD")?;
    let mut bound = Vec::new();
    for spec in &cfg.sockets {
        let b = sockets::bind(spec)
            .with_context(|| format!("cannot start: socket {:?} ({})", spec.name, describe(&spec.addr)))?;
        bound.push(b);
    }
    tracing::info!(config = %cfg.path.display(), pid = std::process::id(), "ringmaster starting");
    let events = Events::default();
    let root = ArbiterActor::create(cfg, bound, events).await;
    install_signals(root)?;
    Ok(())
}

fn describe(a: &crate::config::SocketAddrSpec) -> String {
    match a {
        crate::config::SocketAddrSpec::Inet { host, port, .. } => format!("{host}:{port}"),
        crate::config::SocketAddrSpec::Unix { path, .. } => path.display().to_string(),
    }
}

fn install_signals(root: Addr<ArbiterActor>) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut quit = signal(SignalKind::quit()).context("SIGQUIT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let r = root.clone();
    actix::spawn(async move {
        let mut stopping = false;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = quit.recv() => "SIGQUIT",
            };
            if !stopping {
                stopping = true;
                tracing::info!("{name} received: stopping gracefully (a second SIGINT kills at once)");
                r.do_send(Shutdown { immediate: false });
            } else if name == "SIGINT" {
                // Ctrl-C twice: the operator does not want to wait.
                tracing::warn!("SIGINT received again: killing everything now");
                r.do_send(Shutdown { immediate: true });
            } else {
                tracing::info!("{name} received again: already stopping");
            }
        }
    });
    actix::spawn(async move {
        while hup.recv().await.is_some() {
            root.do_send(Hangup);
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
