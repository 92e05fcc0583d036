//! `set`: change options of a running watcher. Keys and JSON types are
//! checked as Circus does; changes to what a process is (cmd, env, uid…)
//! gracefully reload the watcher, numprocesses just scales.
use super::Reply;
use super::{props, Props};
use crate::config::{Seconds, Signum};
use crate::control::context::Ctx;
use crate::control::protocol::{prop_bool, prop_required_str, CommandError};
use crate::supervisor::api::Update;
use crate::watchers::SpecEdit;
use serde_json::{json, Map, Value};

fn int(k: &str, v: &Value) -> Result<i64, CommandError> {
    v.as_i64()
        .ok_or_else(|| CommandError::message(format!("'{k}' isn't an integer")))
}
fn num(k: &str, v: &Value) -> Result<f64, CommandError> {
    v.as_f64()
        .ok_or_else(|| CommandError::message(format!("'{k}' isn't a number")))
}
fn boolean(k: &str, v: &Value) -> Result<bool, CommandError> {
    v.as_bool()
        .ok_or_else(|| CommandError::message(format!("'{k}' isn't a valid boolean")))
}
fn string(k: &str, v: &Value) -> Result<String, CommandError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| CommandError::message(format!("'{k}' isn't a string")))
}
fn dur(k: &str, v: &Value) -> Result<std::time::Duration, CommandError> {
    match v {
        Value::String(s) => Seconds::parse(s).map(Seconds::get).map_err(CommandError::message),
        _ => Seconds::from_f64(num(k, v)?)
            .map(Seconds::get)
            .map_err(CommandError::message),
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Set {
    pub name: String,
    /// Option names and JSON values, checked against the watcher's spec.
    pub options: Map<String, Value>,
    pub waiting: bool,
}

impl Props for Set {
    fn parse(p: &Map<String, Value>) -> Result<Self, CommandError> {
        let options = match p.get("options") {
            Some(Value::Object(o)) => o.clone(),
            None => return Err(CommandError::missing_property("options")),
            Some(_) => return Err(CommandError::message("'options' property should be an object")),
        };
        Ok(Set {
            name: prop_required_str(p, "name")?,
            options,
            waiting: prop_bool(p, "waiting")?.unwrap_or(false),
        })
    }
    fn props(&self) -> Map<String, Value> {
        props(&[
            ("name", json!(self.name)),
            ("options", Value::Object(self.options.clone())),
            ("waiting", json!(self.waiting)),
        ])
    }
}

pub async fn execute(ctx: Ctx, r: Set) -> Reply {
    let Set {
        name,
        options: opts,
        waiting,
    } = r;
    // Checked once here for a prompt error; applied by the watcher to its
    // current spec, so a concurrent change is not overwritten.
    let only_count = opts.keys().all(|k| k == "numprocesses");
    let check = opts.clone();
    let edit: SpecEdit = Box::new(move |spec| apply(spec, &check).map_err(|e| e.reason));
    let applied = ctx.call(Update { name, edit }).await?.wait().await;
    let done = match applied {
        Some(Ok(done)) => done,
        Some(Err(reason)) => return Err(CommandError::message(reason)),
        None => return Ok(Map::new()),
    };
    // As Circus, a change of numprocesses replies once the added processes are spawned.
    if waiting || only_count {
        if let Some(o) = done.wait().await {
            super::util::checked(o.into_info())?;
        }
    }
    Ok(Map::new())
}

/// Applies Circus's `set` options to `spec`; true when the processes must
/// be replaced (what a process is changed: cmd, env, …).
pub(crate) fn apply(
    spec: &mut crate::config::WatcherSpec,
    opts: &Map<String, Value>,
) -> Result<bool, CommandError> {
    let mut reload = false;
    let mut numprocesses = None;
    for (k, v) in opts {
        match k.as_str() {
            "numprocesses" => {
                let n = int(k, v)?;
                if n < 0 {
                    return Err(CommandError::message("'numprocesses' must not be negative"));
                }
                if spec.singleton && n > 1 {
                    return Err(CommandError::message(
                        "a singleton watcher runs at most one process",
                    ));
                }
                match u32::try_from(n) {
                    Ok(n) if n <= crate::watchers::MAX_PROCESSES => numprocesses = Some(n),
                    _ => {
                        return Err(CommandError::message(format!(
                            "'numprocesses' must be at most {}",
                            crate::watchers::MAX_PROCESSES
                        )))
                    }
                }
            }
            "warmup_delay" => spec.warmup_delay = dur(k, v)?,
            "graceful_timeout" => spec.graceful_timeout = dur(k, v)?,
            "max_age" => spec.max_age = dur(k, v)?,
            "max_age_variance" => spec.max_age_variance = dur(k, v)?,
            "max_retry" => spec.restart.max_retry = int(k, v)?,
            "stop_signal" => {
                spec.stop_signal = match v {
                    Value::String(s) => Signum::parse(s),
                    _ => Signum::from_number(int(k, v)? as i32),
                }
                .map_err(CommandError::message)?
            }
            "respawn" => spec.respawn = boolean(k, v)?,
            "send_hup" => spec.send_hup = boolean(k, v)?,
            "stop_children" => {
                boolean(k, v)?;
            }
            "priority" => spec.priority = int(k, v)?,
            "close_child_stdin" => spec.close_child_stdin = boolean(k, v)?,
            "close_child_stdout" => spec.close_child_stdout = boolean(k, v)?,
            "close_child_stderr" => spec.close_child_stderr = boolean(k, v)?,
            "cmd" => {
                spec.cmd = string(k, v)?;
                reload = true;
            }
            "args" => {
                spec.args = Some(match v {
                    Value::String(s) => crate::config::model::Args::Line(s.clone()),
                    Value::Array(a) => crate::config::model::Args::List(
                        a.iter().map(|x| string(k, x)).collect::<Result<_, _>>()?,
                    ),
                    _ => return Err(CommandError::message("'args' isn't a string")),
                });
                reload = true;
            }
            "working_dir" => {
                spec.working_dir = Some(string(k, v)?.into());
                reload = true;
            }
            "shell" => {
                spec.shell = boolean(k, v)?;
                reload = true;
            }
            "copy_env" => {
                spec.copy_env = boolean(k, v)?;
                reload = true;
            }
            "env" => {
                let o = v
                    .as_object()
                    .ok_or_else(|| CommandError::message("'env' isn't a valid object"))?;
                spec.env = o
                    .iter()
                    .map(|(a, b)| Ok((a.clone(), string(a, b)?)))
                    .collect::<Result<_, CommandError>>()?;
                reload = true;
            }
            "uid" | "gid" | "hooks" | "stdout_stream" | "stderr_stream" | "retry_in" => {
                return Err(CommandError::message(format!(
                    "'{k}' cannot be changed at run time yet"
                )));
            }
            other => return Err(CommandError::message(format!("unknown key '{other}'"))),
        }
    }
    if let Some(n) = numprocesses {
        spec.numprocesses = n;
    }
    if reload {
        check_command(spec)?;
    }
    if let Some(n) = numprocesses {
        spec.numprocesses = n;
    }
    if reload {
        check_command(spec)?;
    }
    Ok(reload)
}

/// What `add` and the config refuse, refused here too: a `set` that passed
/// would keep the bad command and fail the watcher at its next exit.
fn check_command(spec: &crate::config::WatcherSpec) -> Result<(), CommandError> {
    if let Some(problem) = crate::config::command_problem(&spec.cmd, spec.shell) {
        return Err(CommandError::message(problem));
    }
    if let Some(crate::config::model::Args::Line(a)) = &spec.args {
        if !spec.shell && shlex::split(a).is_none() {
            return Err(CommandError::message("'args' has unbalanced quotes"));
        }
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(CommandError::message(format!(
                "invalid env entry {k:?}: a name must be non-empty, without '=' or NUL"
            )));
        }
    }
    Ok(())
}
