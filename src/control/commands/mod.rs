//! One module per control command, each `execute(ctx, props)` returning the
//! reply's fields. Names, properties, reply fields and errno values are
//! Circus's (see docs/control.md).

mod add;
mod decr;
mod dstats;
mod get;
mod globaloptions;
mod incr;
mod kill;
mod list;
mod listen;
mod listsockets;
mod logs;
mod numprocesses;
mod numwatchers;
mod options;
mod quit;
mod reload;
mod reloadconfig;
mod reopen;
mod restart;
mod rm;
mod set;
mod signal;
mod start;
pub mod stats;
mod status;
mod stop;
pub mod util;

use super::context::Ctx;
use super::protocol::{CommandError, Request};
use futures::future::LocalBoxFuture;
use serde_json::{Map, Value};

pub type Reply = Result<Map<String, Value>, CommandError>;

/// SIGUSR1 / `reopen`: reopen every log file (after logrotate).
pub fn reopen_logs(ctx: &Ctx) {
    ctx.hub.reopen_all();
}

/// Every command name, for `ringmaster` completion and docs.
pub const COMMANDS: &[&str] = &[
    "add",
    "decr",
    "dstats",
    "get",
    "globaloptions",
    "incr",
    "kill",
    "list",
    "listen",
    "listsockets",
    "logs",
    "numprocesses",
    "numwatchers",
    "options",
    "quit",
    "reload",
    "reloadconfig",
    "reopen",
    "restart",
    "rm",
    "set",
    "signal",
    "start",
    "stats",
    "status",
    "stop",
];

pub fn dispatch(ctx: Ctx, req: Request) -> LocalBoxFuture<'static, Reply> {
    let p = req.properties;
    match req.command.as_str() {
        "add" => Box::pin(add::execute(ctx, p)),
        "decr" => Box::pin(decr::execute(ctx, p)),
        "dstats" => Box::pin(dstats::execute(ctx, p)),
        "get" => Box::pin(get::execute(ctx, p)),
        "globaloptions" => Box::pin(globaloptions::execute(ctx, p)),
        "incr" => Box::pin(incr::execute(ctx, p)),
        "kill" => Box::pin(kill::execute(ctx, p)),
        "list" => Box::pin(list::execute(ctx, p)),
        "listen" => Box::pin(listen::execute(ctx, p)),
        "listsockets" => Box::pin(listsockets::execute(ctx, p)),
        "logs" => Box::pin(logs::execute(ctx, p)),
        "numprocesses" => Box::pin(numprocesses::execute(ctx, p)),
        "numwatchers" => Box::pin(numwatchers::execute(ctx, p)),
        "options" => Box::pin(options::execute(ctx, p)),
        "quit" => Box::pin(quit::execute(ctx, p)),
        "reload" => Box::pin(reload::execute(ctx, p)),
        "reloadconfig" => Box::pin(reloadconfig::execute(ctx, p)),
        "reopen" => Box::pin(reopen::execute(ctx, p)),
        "restart" => Box::pin(restart::execute(ctx, p)),
        "rm" => Box::pin(rm::execute(ctx, p)),
        "set" => Box::pin(set::execute(ctx, p)),
        "signal" => Box::pin(signal::execute(ctx, p)),
        "start" => Box::pin(start::execute(ctx, p)),
        "stats" => Box::pin(stats::execute(ctx, p)),
        "status" => Box::pin(status::execute(ctx, p)),
        "stop" => Box::pin(stop::execute(ctx, p)),
        other => {
            let e = CommandError::unknown_command(other);
            Box::pin(async move { Err(e) })
        }
    }
}
