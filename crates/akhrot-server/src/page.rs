//! Small self-contained HTML pages for people (OAuth callback, UI sign-in), never for agents.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A page with `title` and a body given as HTML (callers escape what they insert with [`esc`]).
pub fn html(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{t} · Akhrot</title><style>body{{font:16px system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 1em;color:#222}}\
         h1{{font-size:1.4em}}code{{background:#eee;padding:.1em .3em;border-radius:4px}}\
         @media(prefers-color-scheme:dark){{body{{background:#111;color:#ddd}}code{{background:#333}}}}</style></head>\
         <body><h1>{t}</h1><p>{body_html}</p></body></html>",
        t = esc(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    resp
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
