//! The `ringmaster` command line: the daemon (`run`, `check`) and a client
//! for every control command (`status`, `incr`, `restart`, …) over the same
//! ZeroMQ channel circusctl uses.

mod client;
mod dashboard;
mod output;
mod top;

pub use client::run_client;
pub use dashboard::dashboard;
pub use top::{run_top, TopArgs};

use crate::config::Format;
use crate::daemon::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Ringmaster: a process and socket supervisor (the successor to Circus).
#[derive(Parser, Debug)]
#[command(name = "ringmaster", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options for talking to a running daemon.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Control endpoint (default: $RINGMASTER_ENDPOINT, then $CIRCUSCTL_ENDPOINT, then the daemon's default ipc socket).
    /// With `run`, the endpoint the daemon binds, overriding the config's.
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// Print the daemon's raw JSON reply.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for a reply.
    #[arg(long, global = true, default_value_t = 5.0)]
    pub timeout: f64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground until SIGTERM/SIGINT.
    Run {
        /// Config file (TOML, or a Circus ini file by extension).
        config: PathBuf,
        /// Config syntax; guessed from the extension when omitted.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Log level or filter (e.g. "debug"); default $RUST_LOG, then "info".
        #[arg(long)]
        log_level: Option<String>,
        /// The daemon's own log: text (coloured only on a terminal) or json
        /// (one object per line); default: the config's `log_format`, then text.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Run as a container's init (automatic when the pid is 1): orphans
        /// must come to us; exit code 1 when a `critical` watcher ends.
        #[arg(long)]
        init: bool,
        /// Serve the dashboard, /metrics and the health probes on this
        /// IP:PORT, overriding the config's http_endpoint.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// Validate a config file and print the resolved plan; exit 0 if valid, 1 if not.
    Check {
        config: PathBuf,
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Print the TOML equivalent of a Circus ini file (warnings on stderr).
    Convert { config: PathBuf },
    /// Print the web dashboard's login URL and open it in a browser.
    Dashboard {
        /// Only print the URL.
        #[arg(long)]
        no_browser: bool,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Internal: run by a daemon on the binary it is about to upgrade to.
    #[command(hide = true, name = "upgrade-preflight")]
    UpgradePreflight {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        state_version: u32,
    },
    /// Print the man page (roff).
    Man,
    /// Live view: watchers, processes with CPU/memory sparklines, the selected
    /// watcher's log; keys to start, stop, restart and scale (q quits).
    Top(TopArgs),
    #[command(flatten)]
    Control(ControlCommand),
}

#[derive(Subcommand, Debug)]
pub enum ControlCommand {
    /// Show watchers: state, processes, pids, uptime, restarts.
    Status { name: Option<String> },
    /// List watchers, or the pids of one watcher.
    List { name: Option<String> },
    /// Start a watcher (or all autostart watchers).
    Start(Target),
    /// Stop a watcher (or all); the daemon keeps running.
    Stop(Target),
    /// Stop then start a watcher (or all).
    Restart(Target),
    /// Replace a watcher's processes gracefully (or SIGHUP them with send_hup).
    Reload {
        name: Option<String>,
        /// Restart instead of a graceful reload.
        #[arg(long)]
        terminate: bool,
        #[arg(long)]
        sequential: bool,
        #[arg(long)]
        waiting: bool,
    },
    /// Add processes to a watcher.
    Incr(Scale),
    /// Remove processes from a watcher.
    Decr(Scale),
    /// Number of running processes (of one watcher, or all).
    Numprocesses { name: Option<String> },
    /// Number of watchers.
    Numwatchers,
    /// Send a signal to a watcher's processes.
    Signal {
        name: String,
        /// Signal name or number (HUP, SIGUSR1, 9…).
        signal: String,
        #[arg(long)]
        pid: Option<i64>,
        #[arg(long)]
        childpid: Option<i64>,
        /// Only the processes' children.
        #[arg(long)]
        children: bool,
        /// Also every descendant.
        #[arg(long)]
        recursive: bool,
    },
    /// Stop one process (or all) of a watcher; the watcher replaces it.
    Kill {
        name: String,
        #[arg(long)]
        pid: Option<i64>,
        #[arg(long)]
        signum: Option<String>,
        #[arg(long)]
        graceful_timeout: Option<f64>,
        #[arg(long)]
        waiting: bool,
    },
    /// CPU, memory and age of a watcher's processes (or all).
    Stats {
        name: Option<String>,
        /// One process (pid).
        #[arg(long)]
        process: Option<i64>,
    },
    /// CPU, memory and age of the daemon itself.
    Dstats,
    /// Read some options of a watcher.
    Get {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Change options of a watcher: `set web numprocesses 4 graceful_timeout 10`.
    Set {
        name: String,
        /// KEY VALUE pairs.
        #[arg(required = true, num_args = 2..)]
        pairs: Vec<String>,
        #[arg(long)]
        waiting: bool,
    },
    /// Every option of a watcher.
    Options { name: String },
    /// The daemon's endpoints and global options.
    Globaloptions { option: Option<String> },
    /// Add a watcher: `add NAME CMD...`.
    Add {
        name: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
        #[arg(long)]
        start: bool,
        #[arg(long)]
        waiting: bool,
    },
    /// Remove a watcher (stopping its processes unless --nostop).
    Rm {
        name: String,
        #[arg(long)]
        nostop: bool,
        #[arg(long)]
        waiting: bool,
    },
    /// The daemon's sockets.
    Listsockets,
    /// Print live events (`watcher.<name>.<event>` topics; all by default).
    Listen {
        /// Topic prefixes, e.g. watcher.web.
        topics: Vec<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Re-read the config file and apply what changed (print the plan only with --dry-run).
    #[command(name = "reload-config", visible_alias = "reloadconfig")]
    Reloadconfig {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        waiting: bool,
    },
    /// Print a watcher's recent output, then follow it live with -f.
    Logs {
        name: String,
        /// stdout or stderr (default: both).
        #[arg(long)]
        stream: Option<String>,
        /// Lines of history to print.
        #[arg(short = 'n', long = "lines", default_value_t = 100)]
        lines: i64,
        /// Only lines newer than this (e.g. 10m, 30s, 1h).
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new lines as they are written.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Reopen every log file (after logrotate moved them); same as SIGUSR1.
    Reopen,
    /// Execute a new binary in place (same as SIGUSR2): same pid, every process kept.
    Upgrade {
        /// The new binary (default: the running binary's path).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// How long to wait for the new binary's reply, in seconds.
        #[arg(long, default_value_t = 60.0)]
        wait: f64,
    },
    /// Stop every watcher and exit the daemon.
    Quit {
        #[arg(long)]
        waiting: bool,
    },
}

#[derive(Args, Debug)]
pub struct Target {
    pub name: Option<String>,
    /// Reply only when done.
    #[arg(long)]
    pub waiting: bool,
    /// How NAME is matched: glob, regex or simple.
    #[arg(long = "match", default_value = "glob")]
    pub match_: String,
}

#[derive(Args, Debug)]
pub struct Scale {
    pub name: String,
    #[arg(default_value_t = 1)]
    pub nb: i64,
    #[arg(long)]
    pub waiting: bool,
}
