//! `upgrade` (and SIGUSR2): execute a new binary in place, keeping every
//! process (see `crate::upgrade`). The connection that asked stays open
//! across the exec and the new image replies on it ([`resumed`]), with its
//! own version and binary: a reply means the new image runs.
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
    // The next image answers: this request is carried across the exec.
    crate::control::carry::mark(crate::control::carry::Awaiting::Upgrade { from: json!(up.from) });
    let _ = up.go.send(());
    std::future::pending().await
}

/// The reply to a carried `upgrade`, from the image that restored: `to` is
/// this image (the previous binary again if the new one could not restore).
pub fn resumed(from: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("pid".into(), json!(std::process::id()));
    m.insert("from".into(), from);
    m.insert(
        "to".into(),
        json!(crate::upgrade::preflight::Answer {
            version: crate::upgrade::VERSION.into(),
            binary_id: crate::upgrade::binary_id(),
            state_version: crate::upgrade::snapshot::STATE_VERSION,
        }),
    );
    m.insert("fallback".into(), json!(crate::upgrade::fell_back()));
    m
}
