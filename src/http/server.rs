//! Binding the HTTP endpoint and serving it. [`prepare`] runs before any
//! watcher starts (so a refused configuration starts nothing), [`Prepared::serve`]
//! once the supervisor runs.

use super::auth::{self, Auth, Secrets, TokenSource};
use super::bridge::{Bridge, Changed, GetSnapshot, LogLine};
use super::events::{sse, Frame, Hub};
use super::{api, assets, health, metrics};
use crate::control::context::Ctx;
use actix::{Actor, Addr};
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, Context as _, Result};
use serde_json::json;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;

/// In the daemon's private runtime directory: where `ringmaster dashboard`
/// finds the address and the token (mode 0600).
pub(crate) const RUNTIME_FILE: &str = "http.json";
/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 4096;
/// Connections served at once at most.
const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    pub(crate) addr: SocketAddr,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) metrics_auth: bool,
}

/// What the handlers share.
pub(crate) struct Shared {
    pub(crate) bridge: Addr<Bridge>,
    pub(crate) hub: Hub,
    pub(crate) secrets: Secrets,
}

/// The endpoint, bound, with its secrets; nothing served yet.
pub(crate) struct Prepared {
    listener: TcpListener,
    addr: SocketAddr,
    secrets: Secrets,
    source: TokenSource,
}

/// Loads the token and binds. A non-loopback address needs a token the
/// operator chose: a generated one would sit in a file only this host reads,
/// but the page would be reachable by the whole network.
pub(crate) fn prepare(opts: &HttpOptions) -> Result<Prepared> {
    let (token, source) = auth::load(opts.token_file.as_deref())?;
    if !opts.addr.ip().is_loopback() && !source.configured() {
        bail!(
            "http_endpoint {} is not a loopback address: set http_token_file or \
             RINGMASTER_HTTP_TOKEN to choose the dashboard's token (or listen on 127.0.0.1)",
            opts.addr
        );
    }
    let listener =
        TcpListener::bind(opts.addr).with_context(|| format!("cannot bind http_endpoint {}", opts.addr))?;
    let addr = listener.local_addr().context("http_endpoint: no local address")?;
    let secrets = Secrets {
        token,
        csrf: auth::random_hex(16)?,
        cookie: format!("ringmaster_{}", addr.port()),
        metrics_auth: opts.metrics_auth,
    };
    Ok(Prepared {
        listener,
        addr,
        secrets,
        source,
    })
}

/// An error as JSON: `{"error": why}`.
pub(crate) fn fail(status: StatusCode, why: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": why }))
}

/// Why a request without the right token is refused.
pub(crate) struct Denied(Auth);

impl From<Denied> for HttpResponse {
    fn from(d: Denied) -> HttpResponse {
        match d.0 {
            Auth::Wrong => fail(StatusCode::UNAUTHORIZED, "wrong token"),
            _ => fail(
                StatusCode::UNAUTHORIZED,
                "a token is required: open the URL `ringmaster dashboard` prints, or send Authorization: Bearer",
            ),
        }
    }
}

/// The request carries the token (cookie or bearer), or why not.
pub(crate) fn guard(req: &HttpRequest, s: &Shared) -> Result<Auth, Denied> {
    match s.secrets.check(req) {
        a if a.ok() => Ok(a),
        a => Err(Denied(a)),
    }
}

/// For /metrics and the probes: open unless `http_metrics_auth`.
pub(crate) fn guard_open(req: &HttpRequest, s: &Shared) -> Result<(), Denied> {
    if s.secrets.metrics_auth {
        guard(req, s).map(|_| ())
    } else {
        Ok(())
    }
}

fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
}

fn page(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ))
        .body(body)
}

/// `/`: the dashboard; `/?token=…` trades the token for the session cookie.
async fn index(req: HttpRequest, s: web::Data<Shared>) -> HttpResponse {
    if let Some(t) = query_token(&req) {
        if auth::same(&t, &s.secrets.token) {
            // Redirect so the token leaves the address bar and the history.
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/"))
                .insert_header((header::SET_COOKIE, s.secrets.set_cookie()))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::REFERRER_POLICY, "no-referrer"))
                .finish();
        }
        return page(
            StatusCode::UNAUTHORIZED,
            assets::login_page("That token is not valid."),
        );
    }
    match s.secrets.check(&req) {
        a if a.ok() => page(StatusCode::OK, assets::dashboard_page(&s.secrets.csrf)),
        Auth::Wrong => page(
            StatusCode::UNAUTHORIZED,
            assets::login_page("That token is not valid."),
        ),
        _ => page(
            StatusCode::UNAUTHORIZED,
            assets::login_page("Open the URL that `ringmaster dashboard` prints to sign in."),
        ),
    }
}

async fn scrape(req: HttpRequest, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = guard_open(&req, &s) {
        return r.into();
    }
    match s.bridge.send(GetSnapshot).await {
        Ok(snap) => HttpResponse::Ok()
            .content_type(metrics::CONTENT_TYPE)
            .body(metrics::render(&snap)),
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("daemon unavailable: {e}"),
        ),
    }
}

async fn events(req: HttpRequest, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = guard(&req, &s) {
        return r.into();
    }
    sse::events(s).await
}

async fn not_found() -> HttpResponse {
    fail(StatusCode::NOT_FOUND, "no such page")
}

impl Prepared {
    /// Serves on its own thread; the handlers reach the daemon through a
    /// [`Bridge`] started on this (the daemon's) event loop. Returns what
    /// to run at exit.
    pub(crate) fn serve(self, ctx: Ctx) -> Result<Box<dyn FnOnce()>> {
        let hub = Hub::new();
        let bridge = Bridge::new(ctx.clone(), hub.clone()).start();
        let (h, b) = (hub.clone(), bridge.clone());
        ctx.events.add_tap(Arc::new(move |topic: String, _| {
            if h.watched() && topic.starts_with("watcher.") {
                b.do_send(Changed);
            }
        }));
        let h = hub.clone();
        ctx.hub.add_publish_tap(Box::new(move |r| {
            if h.watched() {
                h.send(Frame::new("log", &LogLine::from_record(r)));
            }
        }));
        let token = self.secrets.token.clone();
        let shared = web::Data::new(Shared {
            bridge,
            hub,
            secrets: self.secrets,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .route("/", web::get().to(index))
                .route("/assets/{name}", web::get().to(assets::asset))
                .route("/metrics", web::get().to(scrape))
                .route("/healthz", web::get().to(health::healthz))
                .route("/readyz", web::get().to(health::readyz))
                .route("/api/state", web::get().to(api::state))
                .route("/api/logs", web::get().to(api::logs))
                .route("/api/events", web::get().to(events))
                .service(web::resource("/api/action").route(web::post().to(api::action)))
                .default_service(web::to(not_found))
        })
        .workers(1)
        .max_connections(MAX_CONNECTIONS)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(self.listener)
        .context("cannot serve http_endpoint")?
        .run();
        actix::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!("http endpoint stopped: {e}");
            }
        });
        let file = write_runtime_file(self.addr, &token, &self.source)?;
        tracing::info!(addr = %self.addr, url = %format!("http://{}/", self.addr), "http endpoint ready");
        Ok(Box::new(move || {
            let _ = std::fs::remove_file(&file);
        }))
    }
}

/// `http.json` (0600) in the private runtime directory: the address and the
/// token, for `ringmaster dashboard`.
fn write_runtime_file(addr: SocketAddr, token: &str, source: &TokenSource) -> Result<PathBuf> {
    let dir = crate::control::transport::default_runtime_dir();
    crate::control::transport::ensure_private_dir(&dir)?;
    let path = dir.join(RUNTIME_FILE);
    let source = match source {
        TokenSource::File(_) => "file",
        TokenSource::Env => "env",
        TokenSource::Generated => "generated",
    };
    let body = json!({
        "addr": addr.to_string(),
        "url": format!("http://{addr}/"),
        "token": token,
        "token_source": source,
        "pid": std::process::id(),
    });
    let tmp = dir.join(format!(".{RUNTIME_FILE}.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(format!("{body}\n").as_bytes())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
