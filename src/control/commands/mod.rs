//! One module per control command: its typed request (`Props`, shared with
//! the CLI) and `execute(ctx, request)` returning the reply's fields. Names,
//! properties, reply fields and errno values are Circus's (docs/control.md).

pub mod add;
pub mod decr;
pub mod dstats;
pub mod get;
pub mod globaloptions;
pub mod incr;
pub mod kill;
pub mod list;
pub mod listen;
pub mod listsockets;
pub mod logs;
pub mod numprocesses;
pub mod numwatchers;
pub mod options;
pub mod quit;
pub mod reload;
pub mod reloadconfig;
pub mod reopen;
pub mod restart;
pub mod rm;
pub mod set;
pub mod signal;
pub mod start;
pub mod stats;
pub mod status;
pub mod stop;
pub mod upgrade;
pub mod util;

use super::context::Ctx;
use super::protocol::CommandError;
use futures::future::LocalBoxFuture;
use serde_json::{Map, Value};

pub type Reply = Result<Map<String, Value>, CommandError>;

/// A command's typed request: parsed from a request's properties by the
/// daemon, built by the CLI and turned into properties to send.
pub trait Props: Sized {
    /// Circus's property names and error messages (errno 3 for a missing
    /// or mistyped property).
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError>;
    fn props(&self) -> Map<String, Value>;
}

/// Properties from pairs, leaving out the absent (null) ones.
pub fn props(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `Props` for a command that takes no properties.
macro_rules! no_properties {
    ($t:ident) => {
        impl super::Props for $t {
            fn parse(
                _: &serde_json::Map<String, serde_json::Value>,
            ) -> Result<Self, crate::control::protocol::CommandError> {
                Ok($t)
            }
            fn props(&self) -> serde_json::Map<String, serde_json::Value> {
                serde_json::Map::new()
            }
        }
    };
}
use no_properties;

/// SIGUSR1 / `reopen`: reopen every log file (after logrotate).
pub fn reopen_logs(ctx: &Ctx) {
    ctx.hub.reopen_all();
}

/// The command set, spelled once: name, module, typed request.
macro_rules! commands {
    ($($name:literal => $module:ident :: $req:ident as $variant:ident),* $(,)?) => {
        /// Every command name, for `ringmaster` completion and docs.
        pub const COMMANDS: &[&str] = &[$($name),*];

        /// A control request, typed: what the CLI sends and the daemon runs.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $($variant($module::$req)),*
        }

        impl Request {
            /// Parses a request's command and properties; an unknown command is errno 2.
            pub fn parse(command: &str, p: &Map<String, Value>) -> Result<Request, CommandError> {
                match command {
                    $($name => Ok(Request::$variant(<$module::$req as Props>::parse(p)?)),)*
                    other => Err(CommandError::unknown_command(other)),
                }
            }

            pub fn command(&self) -> &'static str {
                match self {
                    $(Request::$variant(_) => $name),*
                }
            }

            pub fn props(&self) -> Map<String, Value> {
                match self {
                    $(Request::$variant(r) => r.props()),*
                }
            }
        }

        /// Runs a request on its command module.
        pub fn run(ctx: Ctx, req: Request) -> LocalBoxFuture<'static, Reply> {
            match req {
                $(Request::$variant(r) => Box::pin($module::execute(ctx, r))),*
            }
        }
    };
}

commands! {
    "add" => add::Add as Add,
    "decr" => decr::Decr as Decr,
    "dstats" => dstats::Dstats as Dstats,
    "get" => get::Get as Get,
    "globaloptions" => globaloptions::Globaloptions as Globaloptions,
    "incr" => incr::Incr as Incr,
    "kill" => kill::Kill as Kill,
    "list" => list::List as List,
    "listen" => listen::Listen as Listen,
    "listsockets" => listsockets::Listsockets as Listsockets,
    "logs" => logs::Logs as Logs,
    "numprocesses" => numprocesses::Numprocesses as Numprocesses,
    "numwatchers" => numwatchers::Numwatchers as Numwatchers,
    "options" => options::Options as Options,
    "quit" => quit::Quit as Quit,
    "reload" => reload::Reload as Reload,
    "reloadconfig" => reloadconfig::Reloadconfig as Reloadconfig,
    "reopen" => reopen::Reopen as Reopen,
    "restart" => restart::Restart as Restart,
    "rm" => rm::Rm as Rm,
    "set" => set::Set as Set,
    "signal" => signal::SignalRequest as Signal,
    "start" => start::Start as Start,
    "stats" => stats::Stats as Stats,
    "status" => status::Status as Status,
    "stop" => stop::Stop as Stop,
    "upgrade" => upgrade::Upgrade as Upgrade,
}

/// Parses and runs one request from the control channel.
pub fn dispatch(ctx: Ctx, req: super::protocol::Request) -> LocalBoxFuture<'static, Reply> {
    use crate::http::counters::{control_request, RequestStatus};
    match Request::parse(&req.command, &req.properties) {
        Ok(r) => {
            let command = r.command();
            let reply = run(ctx, r);
            Box::pin(async move {
                let reply = reply.await;
                let status = if reply.is_ok() {
                    RequestStatus::Ok
                } else {
                    RequestStatus::Error
                };
                control_request(command, status);
                reply
            })
        }
        Err(e) => {
            control_request("invalid", RequestStatus::Error);
            Box::pin(async move { Err(e) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Signum;

    /// What the CLI sends is what the daemon reads back.
    #[test]
    fn every_typed_request_survives_its_properties() {
        let samples = vec![
            Request::Start(util::Target {
                name: Some("web*".into()),
                match_: Some("glob".into()),
                waiting: true,
            }),
            Request::Reload(reload::Reload {
                name: Some("web".into()),
                graceful: false,
                sequential: true,
                waiting: true,
            }),
            Request::Incr(decr::ScaleBy {
                name: "web".into(),
                nb: 3,
                waiting: false,
            }),
            Request::Signal(signal::SignalRequest {
                name: "web".into(),
                signum: Signum::HUP,
                pid: Some(42),
                childpid: None,
                children: true,
                recursive: false,
            }),
            Request::Kill(kill::Kill {
                name: "web".into(),
                pid: None,
                signum: Some(Signum::KILL),
                graceful_timeout: Some(1.5),
                waiting: true,
            }),
            Request::Add(add::Add {
                name: "w".into(),
                cmd: "sleep 10".into(),
                args: Some(serde_json::json!(["1"])),
                options: props(&[("numprocesses", serde_json::json!(2))]),
                start: true,
                waiting: false,
            }),
            Request::Logs(logs::Logs {
                name: "web".into(),
                stream: Some("stderr".into()),
                lines: Some(5),
                since: Some(60.0),
                follow: true,
            }),
            Request::Dstats(dstats::Dstats),
            Request::Quit(quit::Quit { waiting: true }),
        ];
        for r in samples {
            let back = Request::parse(r.command(), &r.props()).expect("parses");
            assert_eq!(back, r);
        }
        assert_eq!(COMMANDS.len(), 27);
        let e = Request::parse("nope", &Map::new()).unwrap_err();
        assert_eq!(e, CommandError::unknown_command("nope"));
    }
}
