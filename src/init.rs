//! Running as the init of a container (pid 1, or `ringmaster run --init`).
//!
//! Most of what an init must do the daemon does anyway: the reaper
//! `waitpid(-1)`s on every SIGCHLD, so orphans re-parented to us are reaped;
//! SIGTERM/SIGINT/SIGHUP/SIGUSR1 are handled as usual; a shutdown ends
//! within `shutdown_timeout`; the exit code says whether a `critical`
//! watcher failed. What is specific to init is set up here.

use anyhow::{Context, Result};

/// Sets the process up as an init: outside pid 1 orphans must come to us,
/// so being a child subreaper is required, not best effort; job-control
/// stops from a terminal (SIGTTIN/SIGTTOU/SIGTSTP) would freeze every
/// process of the container, so they are ignored.
pub(crate) fn prepare() -> Result<()> {
    if std::process::id() != 1 {
        nix::sys::prctl::set_child_subreaper(true).context("cannot become child subreaper")?;
    }
    for sig in [
        nix::sys::signal::Signal::SIGTTIN,
        nix::sys::signal::Signal::SIGTTOU,
        nix::sys::signal::Signal::SIGTSTP,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) }
            .with_context(|| format!("cannot ignore {sig}"))?;
    }
    tracing::info!(
        pid = std::process::id(),
        "running as init: orphans are reaped, exit code reports critical failures"
    );
    Ok(())
}
