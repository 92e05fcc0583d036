//! Before the point of no return: the new binary is run with the hidden
//! `upgrade-preflight` subcommand. It must start, load the running config
//! file and accept the snapshot's format version; its answer names the
//! version and binary it is.

use super::exec::{binary_id, write_memfd, VERSION};
use super::snapshot::STATE_VERSION;
use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// How long the new binary may take to answer.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Answer {
    pub version: String,
    pub binary_id: String,
    pub state_version: u32,
}

/// Runs `binary upgrade-preflight`; Err says why the upgrade cannot go on.
pub(crate) async fn run(binary: &Path, config: &Path) -> Result<Answer, String> {
    let out = write_memfd(b"").map_err(|e| format!("pre-flight: memfd: {e}"))?;
    let err = write_memfd(b"").map_err(|e| format!("pre-flight: memfd: {e}"))?;
    let file = |fd: &std::os::fd::OwnedFd| fd.try_clone().map(std::fs::File::from);
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("upgrade-preflight")
        .arg("--config")
        .arg(config)
        .arg("--state-version")
        .arg(STATE_VERSION.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(file(&out).map_err(|e| format!("pre-flight: {e}"))?)
        .stderr(file(&err).map_err(|e| format!("pre-flight: {e}"))?);
    let status = crate::reaper::run_command(&mut cmd, TIMEOUT)
        .await
        .map_err(|e| format!("pre-flight of {}: {e}", binary.display()))?;
    let text = |fd: &std::os::fd::OwnedFd| {
        String::from_utf8_lossy(&super::exec::read_memfd(fd.as_raw_fd()).unwrap_or_default())
            .trim()
            .to_string()
    };
    if status != crate::reaper::ExitStatus::Code(0) {
        let why = text(&err);
        let why = if why.is_empty() { text(&out) } else { why };
        return Err(format!(
            "pre-flight of {} failed ({status}): {}",
            binary.display(),
            if why.is_empty() { "no message" } else { &why }
        ));
    }
    let out = text(&out);
    let answer: Answer = serde_json::from_str(out.lines().last().unwrap_or_default()).map_err(|e| {
        format!(
            "pre-flight of {}: unexpected answer {out:?}: {e}",
            binary.display()
        )
    })?;
    if answer.state_version != STATE_VERSION {
        return Err(format!(
            "pre-flight of {}: it reads state version {}, this daemon writes {STATE_VERSION}",
            binary.display(),
            answer.state_version
        ));
    }
    Ok(answer)
}

/// The `upgrade-preflight` subcommand, in the new binary: Ok is the line
/// to print, Err why this binary cannot take over.
pub fn answer(config: &Path, state_version: u32) -> Result<String, String> {
    if state_version != STATE_VERSION {
        return Err(format!(
            "this binary ({VERSION}) reads state version {STATE_VERSION}, not {state_version}"
        ));
    }
    let _: Config = crate::config::load(config, None).map_err(|e| {
        format!(
            "cannot load {}: {}",
            config.display(),
            e.one_line_each().join("; ")
        )
    })?;
    serde_json::to_string(&Answer {
        version: VERSION.into(),
        binary_id: binary_id(),
        state_version: STATE_VERSION,
    })
    .map_err(|e| e.to_string())
}
