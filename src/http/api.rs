//! The dashboard's JSON API: `GET /api/state`, `GET /api/logs`, and
//! `POST /api/action` (the only request that changes anything).

use super::auth::Auth;
use super::bridge::{Action, GetLogs, GetSnapshot, RunAction};
use super::server::{fail, guard, Shared};
use crate::config::Signum;
use crate::supervisor::ApiError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// Lines `/api/logs` returns at most.
const MAX_LINES: usize = 5000;
/// Processes one incr/decr may add or remove.
const MAX_STEP: u32 = 1000;

pub(crate) fn api_error(e: ApiError) -> HttpResponse {
    let status = match &e {
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::AlreadyExists(_) => StatusCode::CONFLICT,
        ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
        ApiError::Os(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    fail(status, &e.to_string())
}

pub(crate) async fn state(req: HttpRequest, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = guard(&req, &s) {
        return r.into();
    }
    match s.bridge.send(GetSnapshot).await {
        Ok(snap) => HttpResponse::Ok().json(snap),
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("daemon unavailable: {e}"),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsQuery {
    watcher: String,
    lines: Option<usize>,
}

pub(crate) async fn logs(req: HttpRequest, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = guard(&req, &s) {
        return r.into();
    }
    let q = match web::Query::<LogsQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return fail(StatusCode::BAD_REQUEST, &format!("bad query: {e}")),
    };
    let lines = q.lines.unwrap_or(500).min(MAX_LINES);
    match s
        .bridge
        .send(GetLogs {
            watcher: q.watcher,
            lines,
        })
        .await
    {
        Ok(Ok(l)) => HttpResponse::Ok().json(l),
        Ok(Err(e)) => api_error(e),
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("daemon unavailable: {e}"),
        ),
    }
}

/// `POST /api/action`'s body.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// start, stop, restart, reload, incr, decr, signal.
    action: String,
    /// One watcher; absent or null: all.
    watcher: Option<String>,
    /// incr/decr: how many (default 1).
    n: Option<u32>,
    /// signal: a name or number (TERM, SIGHUP, 9).
    signal: Option<String>,
}

/// The typed action a body asks for, or why it is refused.
pub(crate) fn parse_action(b: &ActionBody) -> Result<Action, String> {
    let n = b.n.unwrap_or(1);
    if b.n.is_some() && !matches!(b.action.as_str(), "incr" | "decr") {
        return Err(format!("'n' is for incr and decr, not {}", b.action));
    }
    if b.signal.is_some() && b.action != "signal" {
        return Err(format!("'signal' is for the signal action, not {}", b.action));
    }
    Ok(match b.action.as_str() {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "restart" => Action::Restart,
        "reload" => Action::Reload,
        "incr" | "decr" if n == 0 || n > MAX_STEP => {
            return Err(format!("n must be between 1 and {MAX_STEP}, not {n}"))
        }
        "incr" => Action::Incr(n),
        "decr" => Action::Decr(n),
        "signal" => {
            let sig = b.signal.as_deref().ok_or("signal: missing 'signal'")?;
            Action::Signal(Signum::parse(sig)?)
        }
        other => {
            return Err(format!(
                "unknown action {other:?} (start, stop, restart, reload, incr, decr, signal)"
            ))
        }
    })
}

pub(crate) async fn action(req: HttpRequest, body: web::Bytes, s: web::Data<Shared>) -> HttpResponse {
    let auth = match guard(&req, &s) {
        Ok(a) => a,
        Err(r) => return r.into(),
    };
    if let Err(why) = s.secrets.check_change(&req, auth) {
        return fail(StatusCode::FORBIDDEN, why);
    }
    debug_assert!(auth != Auth::Missing);
    let b: ActionBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_REQUEST, &format!("bad request body: {e}")),
    };
    let action = match parse_action(&b) {
        Ok(a) => a,
        Err(e) => return fail(StatusCode::BAD_REQUEST, &e),
    };
    tracing::info!(action = ?action, watcher = ?b.watcher, "dashboard action");
    match s
        .bridge
        .send(RunAction {
            action,
            watcher: b.watcher,
        })
        .await
    {
        Ok(Ok(v)) => HttpResponse::Accepted().json(v),
        Ok(Err(e)) => api_error(e),
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("daemon unavailable: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(j: serde_json::Value) -> Result<Action, String> {
        parse_action(&serde_json::from_value(j).map_err(|e| e.to_string())?)
    }

    #[test]
    fn actions_parse_or_say_why_not() {
        assert_eq!(
            body(json!({"action": "restart", "watcher": "web"})),
            Ok(Action::Restart)
        );
        assert_eq!(body(json!({"action": "incr", "n": 3})), Ok(Action::Incr(3)));
        assert_eq!(
            body(json!({"action": "signal", "signal": "HUP"})),
            Ok(Action::Signal(Signum::HUP))
        );
        assert!(body(json!({"action": "incr", "n": 0})).is_err());
        assert!(body(json!({"action": "incr", "n": 1000000})).is_err());
        assert!(body(json!({"action": "signal", "signal": "NOPE"})).is_err());
        assert!(body(json!({"action": "signal"})).is_err());
        assert!(body(json!({"action": "explode"})).is_err());
        assert!(body(json!({"action": "stop", "n": 2})).is_err());
        assert!(body(json!({"action": "stop", "extra": 1})).is_err());
    }
}
