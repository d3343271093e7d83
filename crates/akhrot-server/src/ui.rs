//! The web UI: static files embedded from `ui/`, and how a browser signs in.
//!
//! The UI holds no long-lived secret. A one-time sign-in link (`/ui/login?code=…`, printed by
//! `akhrot serve`, minted by `akhrot ui` or handed to the desktop window) is exchanged once for
//! an HttpOnly, SameSite=Strict session cookie; the code is then spent. Cookie-authenticated
//! requests must also carry `X-Akhrot-UI: 1` (a header no cross-site form or link can add), except
//! the event stream, which `EventSource` opens without custom headers (a GET with no effects).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{Envelope, success, success_typed};
use crate::guard::AdminAuth;
use crate::models::admin::{SignedOut, UiLink};

mod files {
    include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));
}

/// How long a sign-in link works if nobody opens it.
pub const LINK_TTL: Duration = Duration::from_secs(60 * 60);
/// A UI session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 60 * 60);
/// At most this many signed-in browsers; the least recently used is signed out first.
const MAX_SESSIONS: usize = 32;
/// At most this many unspent links.
const MAX_LINKS: usize = 32;

/// The header every cookie-authenticated UI request carries.
pub const UI_HEADER: &str = "x-akhrot-ui";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

type Digest32 = [u8; 32];

fn digest(s: &str) -> Digest32 {
    Sha256::digest(s.as_bytes()).into()
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(b.as_mut());
    hex::encode(b.as_ref())
}

/// Unspent sign-in codes and signed-in browsers, by the SHA-256 of their secret (the secrets
/// themselves are never kept).
pub struct UiAuth {
    cookie_name: String,
    links: Mutex<HashMap<Digest32, Instant>>,
    sessions: Mutex<HashMap<Digest32, Instant>>,
}

impl UiAuth {
    pub fn new(port: u16) -> Self {
        Self {
            // Cookies ignore ports: owners on other ports of 127.0.0.1 must not see each other's.
            cookie_name: format!("akhrot_ui_{port}"),
            links: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A new one-time sign-in code.
    pub fn new_code(&self) -> String {
        let code = random_hex();
        let now = Instant::now();
        let mut links = lock(&self.links);
        links.retain(|_, made| now.duration_since(*made) < LINK_TTL);
        evict_oldest(&mut links, MAX_LINKS);
        links.insert(digest(&code), now);
        code
    }

    /// Spends a code: `Some(session secret)` once, `None` ever after (or when it never was).
    fn redeem(&self, code: &str) -> Option<String> {
        let made = lock(&self.links).remove(&digest(code))?;
        if made.elapsed() >= LINK_TTL {
            return None;
        }
        let session = random_hex();
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, seen| now.duration_since(*seen) < SESSION_IDLE);
        evict_oldest(&mut sessions, MAX_SESSIONS);
        sessions.insert(digest(&session), now);
        Some(session)
    }

    /// Whether the request's cookie names a live session (and keeps it alive).
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some(secret) = self.cookie(headers) else {
            return false;
        };
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(&digest(secret)) {
            Some(seen) if seen.elapsed() < SESSION_IDLE => {
                *seen = Instant::now();
                true
            }
            Some(_) => {
                sessions.remove(&digest(secret));
                false
            }
            None => false,
        }
    }

    fn end(&self, headers: &HeaderMap) {
        if let Some(secret) = self.cookie(headers) {
            lock(&self.sessions).remove(&digest(secret));
        }
    }

    fn cookie<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.cookie_name)
            .map(|(_, v)| v)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn evict_oldest(map: &mut HashMap<Digest32, Instant>, max: usize) {
    while map.len() >= max {
        let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) else {
            break;
        };
        map.remove(&oldest);
    }
}

/// The sign-in link for a fresh code.
pub fn login_url(state: &AppState) -> String {
    format!("{}/ui/login?code={}", state.base_url, state.ui.new_code())
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

pub async fn root() -> Response {
    redirect("/ui/")
}

pub async fn index() -> Response {
    file_response("index.html")
}

pub async fn file(Path(path): Path<String>) -> Response {
    file_response(&path)
}

fn file_response(path: &str) -> Response {
    let Some((_, bytes)) = files::FILES.iter().find(|(p, _)| *p == path) else {
        return crate::admin::not_found().into_response();
    };
    let mut resp = (StatusCode::OK, *bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    code: Option<String>,
}

/// Spends a one-time code for a session cookie and goes to the UI.
pub async fn login(State(state): State<Arc<AppState>>, Query(q): Query<LoginQuery>) -> Response {
    let session = q
        .code
        .as_deref()
        .filter(|c| c.len() == 64)
        .and_then(|c| state.ui.redeem(c));
    let Some(session) = session else {
        return crate::page::html(
            StatusCode::FORBIDDEN,
            "This sign-in link does not work",
            "It was already used, has expired (links last an hour), or did not come from this \
             Akhrot. Run <code>akhrot ui</code> in a terminal for a fresh one.",
        );
    };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict",
        state.ui.cookie_name
    );
    let mut resp = redirect("/ui/");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[utoipa::path(
    post,
    path = "/admin/logout",
    tag = "admin",
    operation_id = "logout",
    security(("adminCredential" = [])),
    summary = "Sign the web UI out",
    description = "Ends this browser's web UI session.",
    responses(
        (status = 200, description = "Signed out.", body = Envelope<SignedOut>),
    )
)]
/// Signs this browser out (the cookie's session ends at once).
pub async fn logout(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    headers: HeaderMap,
) -> Response {
    state.ui.end(&headers);
    let mut resp = success_typed(SignedOut { signed_out: true });
    let expire = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        state.ui.cookie_name
    );
    if let Ok(v) = HeaderValue::from_str(&expire) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Whether this browser is signed in: the UI asks before anything else, so a signed-out window
/// shows how to sign in without a failed request in its console.
pub async fn session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    success(json!({ "signedIn": state.ui.check(&headers) }))
}

#[utoipa::path(
    post,
    path = "/admin/ui-link",
    tag = "admin",
    operation_id = "newUiLink",
    security(("adminCredential" = [])),
    summary = "A web UI sign-in link",
    description = "A fresh one-time sign-in link to the web UI (`akhrot ui`, the desktop window).",
    responses(
        (status = 200, description = "The link.", body = Envelope<UiLink>),
    )
)]
/// A fresh one-time sign-in link (for `akhrot ui` and the desktop window).
pub async fn new_link(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success_typed(UiLink {
        url: login_url(&state),
        expires_in_secs: LINK_TTL.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {name}={value}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_code_is_spent_once_and_makes_one_session() {
        let ui = UiAuth::new(1234);
        let code = ui.new_code();
        let session = ui.redeem(&code).expect("first use works");
        assert!(ui.redeem(&code).is_none(), "second use fails");
        assert!(ui.redeem(&random_hex()).is_none(), "unknown code fails");
        assert!(ui.check(&with_cookie("akhrot_ui_1234", &session)));
        assert!(
            !ui.check(&with_cookie("akhrot_ui_9999", &session)),
            "other port's cookie"
        );
        assert!(!ui.check(&with_cookie("akhrot_ui_1234", &random_hex())));
        ui.end(&with_cookie("akhrot_ui_1234", &session));
        assert!(
            !ui.check(&with_cookie("akhrot_ui_1234", &session)),
            "signed out"
        );
    }

    #[test]
    fn links_and_sessions_are_bounded() {
        let ui = UiAuth::new(1);
        let codes: Vec<String> = (0..MAX_LINKS + 5).map(|_| ui.new_code()).collect();
        assert!(lock(&ui.links).len() <= MAX_LINKS);
        assert!(
            ui.redeem(codes.last().unwrap()).is_some(),
            "newest survives"
        );
        for _ in 0..MAX_SESSIONS + 5 {
            let c = ui.new_code();
            ui.redeem(&c).unwrap();
        }
        assert!(lock(&ui.sessions).len() <= MAX_SESSIONS);
    }

    #[test]
    fn every_ui_file_has_a_known_type() {
        for (path, _) in files::FILES {
            assert_ne!(content_type(path), "application/octet-stream", "{path}");
        }
    }
}
