//! The state an upgrade hands to the next image: a versioned JSON document
//! in a memfd. Fds listed here are open in the next image (close-on-exec
//! cleared just before the exec); everything else is rebuilt from the config.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The snapshot format this binary writes and reads. A binary refuses (in
/// its pre-flight) a state version it does not know.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub state_version: u32,
    /// The image that wrote it: `version` and `binary_id`.
    pub from_version: String,
    pub from_binary: String,
    pub config_path: PathBuf,
    /// Unix time the daemon first started (kept across upgrades).
    pub started: f64,
    /// Listening sockets by `[sockets.NAME]`.
    pub sockets: Vec<SocketFd>,
    /// Control, pubsub and stats listeners, in the order the daemon binds them.
    pub listeners: Vec<ListenerFd>,
    pub watchers: Vec<WatcherSnap>,
    /// The children's NOTIFY_SOCKET (abstract address), bound again by the next image.
    #[serde(default)]
    pub notify_address: Option<String>,
    /// Unix time the snapshot was written (the next image logs how long the exec and restore took).
    #[serde(default)]
    pub written: f64,
    #[serde(default)]
    pub carry: DaemonCarry,
    /// Established control connections and their pending requests.
    #[serde(default)]
    pub control: super::connections::ControlCarry,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SocketFd {
    pub name: String,
    pub fd: i32,
    /// A UNIX socket file the daemon created (unlinked at its final shutdown).
    pub created_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ListenerFd {
    /// `N:endpoint`: the N-th endpoint bound, as configured.
    pub key: String,
    pub fd: i32,
    pub unix: bool,
}

/// What a watcher was doing; a rollout in progress is resumed, a stop is
/// begun again (see docs/operations.md, "Upgrade in place").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WatcherMode {
    /// Processes wanted (starting, active).
    Active,
    /// A rolling replacement was in progress: the next image rolls the
    /// slots it had not replaced yet (`WatcherSnap::rollout`).
    Rolling,
    Stopping,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WatcherSnap {
    pub name: String,
    pub mode: WatcherMode,
    pub numprocesses: u32,
    pub slots: Vec<SlotSnap>,
    /// Slots taken out (scale-down, rollout) whose process is still stopping.
    pub retiring: Vec<SlotSnap>,
    /// The `logs` history (oldest first).
    #[serde(default)]
    pub history: Vec<HistoryLine>,
    /// With mode `Rolling`: how far the rollout got (the next image resumes it).
    #[serde(default)]
    pub rollout: Option<RolloutSnap>,
}

/// A rollout in progress at the exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RolloutSnap {
    /// Slots (`slot_id`) the rollout added: already rolled, kept as they are.
    pub rolled: Vec<u64>,
    /// One at a time, old first (`reload --sequential`).
    pub sequential: bool,
}

/// One kept line of output (not UTF-8: replaced characters).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HistoryLine {
    pub time: f64,
    pub pid: u32,
    pub wid: u32,
    pub stderr: bool,
    pub line: String,
}

impl HistoryLine {
    pub(crate) fn of(r: &crate::streams::LogRecord) -> HistoryLine {
        HistoryLine {
            time: r
                .time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            pid: r.pid,
            wid: r.wid,
            stderr: r.stream == crate::streams::StreamKind::Stderr,
            line: String::from_utf8_lossy(&r.line).into_owned(),
        }
    }

    pub(crate) fn record(&self, watcher: &str) -> crate::streams::LogRecord {
        crate::streams::LogRecord {
            time: std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(self.time.max(0.0)),
            watcher: watcher.into(),
            pid: self.pid,
            wid: self.wid,
            stream: if self.stderr {
                crate::streams::StreamKind::Stderr
            } else {
                crate::streams::StreamKind::Stdout
            },
            line: bytes::Bytes::from(self.line.clone().into_bytes()),
            piece: crate::streams::Piece::Whole,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SlotMode {
    Running,
    /// Told to stop, waiting for it to exit (the stop signal was sent).
    Stopping,
    /// The leader exited, others of its group remain (they are killed).
    Draining,
    /// Waiting to spawn again after quick failures.
    Backoff,
    /// Never started yet (a start spread by `warmup_delay`): started by the next image.
    Idle,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SlotSnap {
    pub wid: u32,
    pub slot_id: u64,
    pub mode: SlotMode,
    pub pid: Option<i32>,
    /// The pid's start time (clock ticks since boot, /proc/PID/stat field
    /// 22): a pid reused by another process during the exec is not adopted.
    pub pid_start: Option<u64>,
    pub spawns: u32,
    pub failures: u32,
    pub ready: bool,
    pub started_wall: Option<f64>,
    pub uptime_ms: u64,
    pub argv: Vec<String>,
    pub stdout_fd: Option<i32>,
    pub stderr_fd: Option<i32>,
    pub status_text: Option<String>,
    /// The slot's stdout/stderr capture ids in this image, by which the
    /// fds above are filled in once the captures parked their pipes.
    #[serde(skip)]
    pub captures: [Option<u64>; 2],
    #[serde(default)]
    pub carry: SlotCarry,
}

/// What a slot goes on with after the exec instead of starting over.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SlotCarry {
    /// The unfinished line of each parked pipe (stdout, stderr).
    #[serde(default)]
    pub tails: [crate::streams::PipeTail; 2],
    /// When `max_age` replaces the process, on [`monotonic_ns`]'s clock.
    #[serde(default)]
    pub max_age_at: Option<u64>,
    /// When the watchdog expires unless pinged, likewise.
    #[serde(default)]
    pub watchdog_at: Option<u64>,
}

/// What the daemon goes on with after the exec (besides its watchers).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DaemonCarry {
    /// The last `seq` published per log topic, so followers see one numbering.
    #[serde(default)]
    pub log_seqs: Vec<LogSeq>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogSeq {
    pub watcher: String,
    pub stream: crate::streams::StreamKind,
    pub seq: u64,
}

/// CLOCK_MONOTONIC in ns: the clock of `Instant`, which an exec keeps (one
/// process, one boot), so deadlines written with it stay right across it.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// `at` as a [`monotonic_ns`] deadline.
pub(crate) fn deadline_ns(at: std::time::Instant) -> u64 {
    let left = at.saturating_duration_since(std::time::Instant::now());
    monotonic_ns().saturating_add(left.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// Time left until a [`monotonic_ns`] deadline (zero once past).
pub(crate) fn time_left(at_ns: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(at_ns.saturating_sub(monotonic_ns()))
}

impl Snapshot {
    /// Every fd the next image must find open.
    pub(crate) fn fds(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.sockets.iter().map(|s| s.fd).collect();
        v.extend(self.listeners.iter().map(|l| l.fd));
        v.extend(self.control.fds());
        for w in &self.watchers {
            for s in w.slots.iter().chain(&w.retiring) {
                v.extend(s.stdout_fd);
                v.extend(s.stderr_fd);
            }
        }
        v
    }
}

/// The start time of `pid` (field 22 of /proc/PID/stat), if it exists.
pub(crate) fn pid_start(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_keeps_its_distance() {
        let at = std::time::Instant::now() + std::time::Duration::from_secs(100);
        let left = time_left(deadline_ns(at));
        assert!(left <= std::time::Duration::from_secs(100) && left > std::time::Duration::from_secs(99));
        assert_eq!(
            time_left(deadline_ns(std::time::Instant::now())),
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id() as i32;
        let a = pid_start(me).expect("start time");
        assert_eq!(pid_start(me), Some(a));
        assert_eq!(pid_start(i32::MAX), None);
    }
}
