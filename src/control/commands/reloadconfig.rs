//! `reloadconfig` (and `ringmaster reload-config`): re-read the config file
//! and apply only what changed (see `crate::supervisor::reload`). With
//! `dry_run`, only the plan is returned. An invalid file changes nothing and
//! the reply names the file, line and key. The reply comes once the plan
//! has been applied.
use super::util::one;
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, CommandError};
use crate::supervisor::reload::ReloadConfig;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reloadconfig {
    pub dry_run: bool,
    pub waiting: bool,
}

impl Props for Reloadconfig {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        Ok(Reloadconfig {
            dry_run: prop_bool(p, "dry_run")?.unwrap_or(false),
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[("dry_run", json!(self.dry_run)), ("waiting", json!(self.waiting))])
    }
}

pub async fn execute(ctx: Ctx, Reloadconfig { dry_run, .. }: Reloadconfig) -> Reply {
    let (plan, done) = ctx
        .root
        .send(ReloadConfig { dry_run })
        .await
        .map_err(|e| CommandError::command(format!("supervisor unavailable: {e}")))??;
    let errors = done.wait().await.unwrap_or_default();
    if !errors.is_empty() {
        return Err(CommandError::bad_msg_data(format!(
            "configuration applied, but: {}",
            errors.join("; ")
        )));
    }
    let mut m = one("plan", plan.to_json());
    m.insert("summary".into(), json!(plan.to_string()));
    Ok(m)
}
