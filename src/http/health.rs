//! `/healthz`: the daemon's event loop answers. `/readyz`: every autostart
//! watcher is active with all its processes running and ready.

use super::bridge::{GetSnapshot, Ping, Snapshot};
use super::server::{guard_open, Shared};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use std::time::Duration;

/// Past this, a probe reports the daemon as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

async fn snapshot(s: &Shared) -> Result<Snapshot, HttpResponse> {
    match tokio::time::timeout(ANSWER_WITHIN, s.bridge.send(GetSnapshot)).await {
        Ok(Ok(snap)) => Ok(snap),
        _ => Err(HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "reason": "the daemon's event loop did not answer",
        }))),
    }
}

pub(crate) async fn healthz(req: HttpRequest, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = guard_open(&req, &s) {
        return r.into();
    }
    match tokio::time::timeout(ANSWER_WITHIN, s.bridge.send(Ping)).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ok"})),
        _ => HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "reason": "the daemon's event loop did not answer",
        })),
    }
}

/// Why the daemon is not ready; empty when it is.
pub(crate) fn not_ready(snap: &Snapshot) -> Vec<String> {
    let mut why = Vec::new();
    for w in snap.watchers.iter().filter(|w| w.autostart) {
        if w.state != "active" && w.state != "reloading" {
            why.push(format!("{}: {}", w.name, w.state));
        } else if w.ready() < w.desired as usize {
            why.push(format!(
                "{}: {} of {} processes ready",
                w.name,
                w.ready(),
                w.desired
            ));
        }
    }
    why
}

pub(crate) async fn readyz(req: HttpRequest, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = guard_open(&req, &s) {
        return r.into();
    }
    let snap = match snapshot(&s).await {
        Ok(snap) => snap,
        Err(r) => return r,
    };
    let why = not_ready(&snap);
    if why.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not ready", "reasons": why}))
    }
}
