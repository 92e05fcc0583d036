//! The dashboard's page, script and style, embedded in the binary (no CDN:
//! it works offline and behind a firewall).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("index.html");
const LOGIN: &str = include_str!("login.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");
const ICON_SVG: &str = include_str!("icon.svg");

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The dashboard, with this run's CSRF token for the page's POSTs.
pub(crate) fn dashboard_page(csrf: &str) -> String {
    INDEX
        .replace("{{csrf}}", &escape(csrf))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
}

/// The page shown without a valid token: `why`, and nothing about the daemon.
pub(crate) fn login_page(why: &str) -> String {
    LOGIN.replace("{{why}}", &escape(why))
}

/// `/assets/{name}`: the static files (they hold no secret).
pub(crate) async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, kind) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "icon.svg" => (ICON_SVG, "image/svg+xml"),
        _ => return super::server::fail(actix_web::http::StatusCode::NOT_FOUND, "no such asset"),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}
