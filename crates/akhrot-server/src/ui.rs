//! The web UI: static files embedded from `ui/`, and how a browser signs in.
//!
//! The UI holds no long-lived secret. A one-time sign-in link (`/ui/login?code=…`, printed by
//! `akhrot serve`, minted by `akhrot ui` or handed to the desktop window) is exchanged once for
//! an HttpOnly, SameSite=Strict session cookie; the code is then spent. Cookie-authenticated
//! requests must also carry `X-Akhrot-UI: 1` (a header no cross-site form or link can add), except
//! the event stream, which `EventSource` opens without custom headers (a GET with no effects).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Envelope, not_found, success, success_typed};
use crate::guard::AdminAuth;
use crate::models::admin::{SignedOut, UiLink};
use crate::state::AppState;
use crate::ui_session::LINK_TTL;

mod files {
    include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

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
        return not_found().into_response();
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

    #[test]
    fn every_ui_file_has_a_known_type() {
        for (path, _) in files::FILES {
            assert_ne!(content_type(path), "application/octet-stream", "{path}");
        }
    }
}
