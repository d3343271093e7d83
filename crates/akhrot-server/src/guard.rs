//! Loopback hygiene and authentication.
//!
//! Every request passes [`hygiene`]: its `Host` must name this listener (DNS rebinding), a
//! browser request must come from this origin (no web page may drive the API); [`require_json`]:
//! writes must be JSON (except through `/proxy/`, which forwards any body). Bodies are read by
//! [`JsonBody`] with a size cap, and malformed JSON is a `BAD_REQUEST`. [`AgentAuth`] and
//! [`AdminAuth`] check the two kinds of credential.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use akhrot_core::vault::Agent;

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// Request bodies larger than this are refused.
pub const MAX_BODY: usize = 64 * 1024;

/// Host and Origin checks, and the security headers of every answer.
pub async fn hygiene(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    // Method and path only (queries may carry codes and states), and only when debug logging is on.
    let log = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (req.method().clone(), req.uri().path().to_owned()));
    let resp = match buffer_small_body(req).await {
        Err(resp) => resp,
        Ok(req) => match check_request(&state, req.method(), req.uri(), req.headers()) {
            Err(e) => refuse_unread(req, e).await,
            Ok(()) => next.run(req).await,
        },
    };
    if let Some((method, path)) = log {
        tracing::debug!(
            %method,
            path = %crate::error::printable(&path),
            status = resp.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    with_security_headers(resp)
}

fn check_request(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let path = uri.path();
    let allowed = |host: &str| {
        state
            .allowed_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host))
    };
    // Exactly one `Host` (RFC 9112 §3.2: more than one is a bad request), naming this listener;
    // and an absolute-form target (`GET http://evil.example/…`), whose authority is the host
    // the request is for and wins over `Host` (§3.2.2), must name it too.
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next().and_then(|h| h.to_str().ok()).unwrap_or("");
    let one_host = hosts.next().is_none();
    let authority_ok = uri.authority().is_none_or(|a| allowed(a.as_str()));
    if !one_host || !allowed(host) || !authority_ok {
        return Err(ApiError::new(
            Code::ForbiddenHost,
            format!(
                "this API answers only requests addressed to 127.0.0.1:{0}, localhost:{0} or [::1]:{0}",
                state.port
            ),
        ));
    }
    // Every `Origin` (a browser sends one; a second must not hide a foreign first or last).
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state
            .allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin))
        {
            return Err(ApiError::new(
                Code::ForbiddenHost,
                "cross-site browser requests are refused: web pages cannot use this API",
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
        && !is_page_visit(method, path, headers)
    {
        return Err(ApiError::new(
            Code::ForbiddenHost,
            "cross-site browser requests are refused: web pages cannot use this API",
        ));
    }
    Ok(())
}

/// Writes must be JSON (no cross-site form can send that), except proxied calls, which carry
/// whatever body the provider's API takes (forms, uploads, JSON). A route layer: it runs only
/// once the route and its method matched, so a wrong method is a 405 with `Allow`, never this 400.
pub async fn require_json(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && !req.uri().path().starts_with("/proxy/")
        && !is_json(req.headers())
    {
        let e =
            ApiError::bad_request("send the body as JSON with `Content-Type: application/json`");
        return refuse_unread(req, e).await;
    }
    next.run(req).await
}

/// Reads a body of known size up to [`MAX_BODY`] before anything else, so that whatever refuses
/// the request without reading it (a bad agent key, a foreign `Origin`) leaves the connection
/// usable: hyper closes a keep-alive connection whose request body was not read, and a client
/// reusing it then sees "server disconnected". Larger and chunked bodies still stream.
async fn buffer_small_body(req: Request) -> Result<Request, Response> {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if !matches!(len, Some(n) if n > 0 && n <= MAX_BODY) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Err(_) => Err(ApiError::bad_request("the request body could not be read").into_response()),
    }
}

/// Answers `e` to a request whose body nobody read: reads (and drops) up to [`MAX_BODY`] of it
/// first, for at most a second, so the connection stays usable for the client's next request
/// instead of being closed under it (a client reusing it then sees "server disconnected").
async fn refuse_unread(req: Request, e: ApiError) -> Response {
    let drain = axum::body::to_bytes(req.into_body(), MAX_BODY);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    e.into_response()
}

/// A person's browser arriving at one of the pages meant for people from elsewhere: the
/// provider sending them back to `/oauth/callback` (cross-site, or same-site for a loopback
/// provider), or a link to the UI. These are top-level GET navigations, which no page can read
/// the answer of; the callback is checked by its single-use `state`, and the UI's data still
/// needs a session.
fn is_page_visit(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    *method == Method::GET
        && headers
            .get("sec-fetch-mode")
            .is_some_and(|m| m.as_bytes() == b"navigate")
        && (path == "/oauth/callback" || path == "/" || path == "/ui" || path.starts_with("/ui/"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn with_security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// A JSON body, at most [`MAX_BODY`] bytes; any problem is a `BAD_REQUEST` in the envelope.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let too_large = || {
            ApiError::bad_request(format!("the request body is larger than {MAX_BODY} bytes"))
                .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
        };
        // A declared length over the cap is refused at once, not after waiting for (or reading)
        // that much: a client announcing gigabytes gets its answer without sending them.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            // Read (and drop) what arrives within a second, so the client sees this answer
            // rather than a reset connection.
            let drain = axum::body::to_bytes(req.into_body(), MAX_BODY);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| too_large())?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "the request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(json_error_message(&e)))
    }
}

/// A serde error as a message that never echoes a submitted value.
pub fn json_error_message(e: &serde_json::Error) -> String {
    let raw = e.to_string();
    let mut clean = String::with_capacity(raw.len());
    let mut in_quotes = false;
    for c in raw.chars() {
        if c == '"' {
            if !in_quotes {
                clean.push_str("\"…\"");
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            clean.push(c);
        }
    }
    let kind = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
        _ => "invalid request",
    };
    format!("{kind}: {clean}")
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An agent, authenticated by its key and within its rate limit.
pub struct AgentAuth(pub Agent);

impl FromRequestParts<Arc<AppState>> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(key) = bearer(parts) else {
            return Err(ApiError::new(
                Code::Unauthorized,
                "send your agent key as `Authorization: Bearer akhrot_…`; the user creates one with `akhrot keys create --name <agent>`",
            ));
        };
        let Some(agent) = state.vault.authenticate(key) else {
            return Err(ApiError::new(
                Code::Unauthorized,
                "this agent key is not valid (malformed, unknown or revoked); ask the user for a new one",
            ));
        };
        if let Err(wait) = state.limiter.check(&agent.id) {
            let mut e = ApiError::new(
                Code::RateLimited,
                format!(
                    "agent `{}` is sending requests too fast; retry in {wait} s",
                    agent.name
                ),
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
        Ok(AgentAuth(agent))
    }
}

/// The user's own UI or CLI, holding the admin credential.
pub struct AdminAuth;

impl FromRequestParts<Arc<AppState>> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(presented) = bearer(parts) {
            let expected = state.admin_token.expose().as_bytes();
            if presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected))
            {
                return Ok(AdminAuth);
            }
        } else if (parts.headers.contains_key(crate::ui_session::UI_HEADER)
            || parts.uri.path() == "/admin/events")
            && state.ui.check(&parts.headers)
        {
            // The user's browser, signed in through a one-time link (see `ui`).
            return Ok(AdminAuth);
        }
        Err(ApiError::new(
            Code::Unauthorized,
            "this route needs the admin credential of the running owner (agent keys are refused here); use the `akhrot` command or the Akhrot window",
        ))
    }
}

/// `?account=` on the routes that take one.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// Which connected account, when there are several (its label, at most 200 characters).
    #[param(max_length = 200)]
    pub account: Option<String>,
}

impl AccountQuery {
    /// The account asked for, bounded like the `account` of a JSON body.
    pub fn account(&self) -> Result<Option<&str>, ApiError> {
        match self.account.as_deref() {
            Some(a) if a.chars().count() > 200 => Err(ApiError::bad_request(
                "`account` is longer than 200 characters",
            )),
            a => Ok(a),
        }
    }
}

/// Path parameters; a malformed path is a `BAD_REQUEST` in the envelope (not axum's plain text).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(_) => Err(ApiError::bad_request(
                "malformed path: each segment must be valid UTF-8 once percent-decoded",
            )),
        }
    }
}

/// Query parameters; a malformed query is a `BAD_REQUEST` in the envelope that never echoes it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|_| {
                ApiError::bad_request(
                    "malformed query string (a parameter given twice, or not valid UTF-8 once percent-decoded)",
                )
            })
    }
}

/// An optional string field of a JSON body (kept as `Value` so a wrong type is a clear
/// `BAD_REQUEST`, not a serde message echoing the value).
pub fn string_field(
    v: Option<serde_json::Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.chars().count() <= max => Ok(Some(s)),
        Some(serde_json::Value::String(_)) => Err(ApiError::bad_request(format!(
            "`{name}` is longer than {max} characters"
        ))),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a string"))),
    }
}
