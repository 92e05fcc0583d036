//! `add`: create a watcher from `name`, `cmd`, `args` and `options` (the same
//! keys and validation as the config file), optionally starting it.
use super::util::{checked, one};
use super::Reply;
use super::{props, Props};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_required_str, CommandError};
use crate::supervisor::api::AddWatcher;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Add {
    pub name: String,
    pub cmd: String,
    /// A string or a list.
    pub args: Option<Value>,
    /// The config file's watcher keys.
    pub options: Map<String, Value>,
    pub start: bool,
    pub waiting: bool,
}

impl Props for Add {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        let options = match p.get("options") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(_) => return Err(CommandError::message("'options' property should be an object")),
        };
        let args = match p.get("args") {
            None | Some(Value::Null) => None,
            Some(a @ (Value::String(_) | Value::Array(_))) => Some(a.clone()),
            Some(_) => return Err(CommandError::message("'args' should be a string or a list")),
        };
        Ok(Add {
            name: prop_required_str(p, "name")?,
            cmd: prop_required_str(p, "cmd")?,
            args,
            options,
            start: prop_bool(p, "start")?.unwrap_or(false),
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        let options = (!self.options.is_empty()).then(|| Value::Object(self.options.clone()));
        props(&[
            ("name", json!(self.name)),
            ("cmd", json!(self.cmd)),
            ("args", json!(self.args)),
            ("options", json!(options)),
            ("start", json!(self.start)),
            ("waiting", json!(self.waiting)),
        ])
    }
}

pub async fn execute(ctx: Ctx, r: Add) -> Reply {
    let Add {
        name,
        cmd,
        args,
        mut options,
        start,
        waiting,
    } = r;
    options.insert("cmd".into(), json!(cmd));
    if let Some(a) = args {
        options.insert("args".into(), a);
    }
    let done = ctx.call(AddWatcher { name, options, start }).await?;
    if !(start && waiting) {
        return Ok(Map::new());
    }
    match done.wait().await.flatten() {
        Some(o) => Ok(one("info", checked(o.into_info())?.json(false))),
        None => Ok(Map::new()),
    }
}
