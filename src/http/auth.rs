//! Who may use the dashboard: one secret token, from `http_token_file`, or
//! `$RINGMASTER_HTTP_TOKEN`, or generated at start. A browser brings it once
//! in the login URL (`/?token=…`) and trades it for an HttpOnly, SameSite
//! cookie; scripts send `Authorization: Bearer …`. Requests that change
//! something are POSTs that must carry the page's CSRF token in a header
//! (when authenticated by the cookie) and, when the browser says where
//! they come from, an `Origin` of this very endpoint.

use actix_web::http::header;
use actix_web::HttpRequest;
use anyhow::{bail, Context as _, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const ENV: &str = "RINGMASTER_HTTP_TOKEN";
/// A configured token shorter than this is refused: it could be guessed.
const MIN_LEN: usize = 16;
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Where the token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    File(PathBuf),
    Env,
    Generated,
}

impl TokenSource {
    /// A token the operator chose (a non-loopback bind needs one).
    pub(crate) fn configured(&self) -> bool {
        !matches!(self, TokenSource::Generated)
    }
}

static ENV_TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// Reads `$RINGMASTER_HTTP_TOKEN` and removes it from our environment, so
/// no child inherits it. Call before any thread starts.
pub(crate) fn take_env_token() {
    let v = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    if v.is_some() {
        std::env::remove_var(ENV);
    }
    let _ = ENV_TOKEN.set(v.map(|v| v.trim().to_string()));
}

fn env_token() -> Option<String> {
    ENV_TOKEN
        .get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.trim().is_empty()))
        .clone()
}

/// `n` random bytes from the kernel, as hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token and where it came from: the file, else the environment, else a new one.
pub(crate) fn load(file: Option<&Path>) -> Result<(String, TokenSource)> {
    let (token, source) = if let Some(f) = file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("http_token_file: cannot read {}", f.display()))?;
        (t.trim().to_string(), TokenSource::File(f.to_path_buf()))
    } else if let Some(t) = env_token() {
        (t, TokenSource::Env)
    } else {
        return Ok((random_hex(24)?, TokenSource::Generated));
    };
    let what = match &source {
        TokenSource::File(f) => format!("the token in {}", f.display()),
        _ => format!("${ENV}"),
    };
    if token.len() < MIN_LEN {
        bail!("{what} is too short: use at least {MIN_LEN} characters");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("{what} must be printable ASCII without spaces");
    }
    Ok((token, source))
}

/// Compares in time independent of where the strings differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The secrets of one daemon run.
pub(crate) struct Secrets {
    pub(crate) token: String,
    /// Sent in the page, required back in [`CSRF_HEADER`] (per daemon run).
    pub(crate) csrf: String,
    /// Per port, so two daemons on one host keep their own cookie.
    pub(crate) cookie: String,
    /// Whether /metrics, /healthz and /readyz need the token too.
    pub(crate) metrics_auth: bool,
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    Cookie,
    Bearer,
    /// No credential at all.
    Missing,
    /// A credential, but not the token.
    Wrong,
}

impl Auth {
    pub(crate) fn ok(self) -> bool {
        matches!(self, Auth::Cookie | Auth::Bearer)
    }
}

fn cookie_value<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Secrets {
    pub(crate) fn check(&self, req: &HttpRequest) -> Auth {
        if let Some(h) = req.headers().get(header::AUTHORIZATION) {
            return match h.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
                Some(t) if same(t.trim(), &self.token) => Auth::Bearer,
                _ => Auth::Wrong,
            };
        }
        match cookie_value(req, &self.cookie) {
            Some(c) if same(c, &self.token) => Auth::Cookie,
            Some(_) => Auth::Wrong,
            None => Auth::Missing,
        }
    }

    /// The cookie that replaces `?token=` (HttpOnly: the page's scripts never see it).
    pub(crate) fn set_cookie(&self) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie, self.token
        )
    }

    /// Checks a state-changing request authenticated as `auth`; the error
    /// says why it is refused.
    pub(crate) fn check_change(&self, req: &HttpRequest, auth: Auth) -> Result<(), &'static str> {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
            let expected = host.map(|h| format!("http://{h}"));
            if origin.to_str().ok() != expected.as_deref() {
                return Err("cross-origin request refused (Origin is not this endpoint)");
            }
        }
        if auth == Auth::Cookie {
            let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            match sent {
                Some(t) if same(t, &self.csrf) => {}
                Some(_) => return Err("wrong CSRF token"),
                None => return Err("missing CSRF token (X-CSRF-Token header)"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn secrets() -> Secrets {
        Secrets {
            token: "t0k3n-t0k3n-t0k3n".into(),
            csrf: "c5rf".into(),
            cookie: "ringmaster_9770".into(),
            metrics_auth: false,
        }
    }

    #[test]
    fn credentials() {
        let s = secrets();
        let r = TestRequest::default()
            .insert_header(("Cookie", "a=b; ringmaster_9770=t0k3n-t0k3n-t0k3n"))
            .to_http_request();
        assert_eq!(s.check(&r), Auth::Cookie);
        let r = TestRequest::default()
            .insert_header(("Cookie", "ringmaster_9770=nope"))
            .to_http_request();
        assert_eq!(s.check(&r), Auth::Wrong);
        let r = TestRequest::default()
            .insert_header(("Authorization", "Bearer t0k3n-t0k3n-t0k3n"))
            .to_http_request();
        assert_eq!(s.check(&r), Auth::Bearer);
        assert_eq!(s.check(&TestRequest::default().to_http_request()), Auth::Missing);
    }

    #[test]
    fn changes_need_csrf_and_same_origin() {
        let s = secrets();
        let base = || TestRequest::default().insert_header(("Host", "127.0.0.1:9770"));
        assert!(s.check_change(&base().to_http_request(), Auth::Cookie).is_err());
        let ok = base().insert_header((CSRF_HEADER, "c5rf")).to_http_request();
        assert!(s.check_change(&ok, Auth::Cookie).is_ok());
        let evil = base()
            .insert_header((CSRF_HEADER, "c5rf"))
            .insert_header(("Origin", "http://evil.example"))
            .to_http_request();
        assert!(s.check_change(&evil, Auth::Cookie).is_err());
        assert!(s.check_change(&base().to_http_request(), Auth::Bearer).is_ok());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
