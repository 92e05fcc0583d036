//! `upgrade` (and SIGUSR2): execute a new binary in place, keeping every
//! process (see `crate::upgrade`). The reply is sent by the current image,
//! just before the exec, with the version and binary the new image will
//! report: the connection that asked does not survive the exec, so the CLI
//! waits for the new image to answer `globaloptions` with that binary.
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_str, CommandError};
use crate::supervisor::Upgrade as Request;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upgrade {
    /// The new binary; default: the path of the running one.
    pub binary: Option<String>,
}

impl Props for Upgrade {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Upgrade {
            binary: prop_str(p, "binary")?,
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("binary", json!(self.binary))])
    }
}

pub async fn execute(ctx: Ctx, r: Upgrade) -> Reply {
    let up = ctx
        .root
        .send(Request {
            binary: r.binary.map(Into::into),
        })
        .await
        .map_err(|e| CommandError::command(format!("supervisor unavailable: {e}")))?
        .map_err(CommandError::message)?;
    let mut m = Map::new();
    m.insert("pid".into(), json!(std::process::id()));
    m.insert("from".into(), json!(up.from));
    m.insert("to".into(), json!(up.to));
    // The reply is queued before this task yields again; the exec follows.
    let _ = up.go.send(());
    Ok(m)
}
