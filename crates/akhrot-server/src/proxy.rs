//! `ANY /proxy/{provider}/{path…}`: the agent calls a provider's API through Akhrot and never
//! holds the credential.
//!
//! The target is the chosen service's base URL from the catalog (rendered with the
//! connection's public values) plus the path and query the agent sent; its host must be one of
//! the provider's own catalog hosts (no open proxy). `.`/`..` segments are refused in every
//! spelling. The credential is injected as the catalog's `inject` data says. Redirects are never
//! followed (a 3xx goes back to the agent as it is, so the credential never crosses to another
//! host). Bodies stream both ways; a request body up to [`RETRY_BODY_MAX`] is kept so that an
//! upstream 401 on an OAuth connection can be retried once after a refresh.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use zeroize::Zeroize;

use akhrot_core::audit::{Action, Entry, Outcome};
use akhrot_core::catalog::{AuthType, Origin, Provider, Service};
use akhrot_core::vault::{ConnectionInfo, Credentials};

use crate::error::{ApiError, Code, printable};
use crate::guard::AgentAuth;
use crate::proxy_path::{check_path, pct_decode};
use crate::state::AppState;

/// Request bodies up to this size are kept for one retry after a refresh; larger ones stream.
pub const RETRY_BODY_MAX: usize = 1024 * 1024;

/// The proxy's HTTP client: redirects never followed, bounded connect and idle read times.
pub fn client(provider_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(provider_timeout.min(Duration::from_secs(10)))
        .read_timeout(provider_timeout.max(Duration::from_secs(60)))
        .build()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not build the proxy's HTTP client; using defaults");
            reqwest::Client::new()
        })
}

/// Request headers never passed upstream: the agent's own credentials and browser context,
/// hop-by-hop headers, and Akhrot's own.
fn drop_request_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization"
            | "cookie"
            | "origin"
            | "referer"
            | "host"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
            | "forwarded"
            | "via"
    ) || n.starts_with("sec-")
        || n.starts_with("proxy-")
        || n.starts_with("x-akhrot-")
        || n.starts_with("x-forwarded-")
}

/// Answer headers never passed back: cookies (they would land on the loopback origin),
/// hop-by-hop headers, and the provider's own CSP (replaced by `sandbox`).
fn drop_response_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "set-cookie"
            | "set-cookie2"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-security-policy"
            | "content-security-policy-report-only"
    ) || n.starts_with("proxy-")
}

/// Header names listed in `Connection:` are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Letters, digits, `.`, `-`, `_`, `~` only (URL-unreserved), and not `.`/`..`.
fn is_plain(v: &str) -> bool {
    !v.is_empty()
        && v != "."
        && v != ".."
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~'))
}

/// `scheme, host, port` of a URL, lowercased, with the scheme's default port.
fn origin_of(u: &url::Url) -> Option<(String, String, u16)> {
    Some((
        u.scheme().to_ascii_lowercase(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?,
    ))
}

/// The hosts the catalog lists for a provider: every service's base URL, plus the OAuth and
/// userinfo hosts of a provider defined or changed in `providers.d`.
pub fn allowed_targets(
    p: &Provider,
    known: &BTreeMap<String, String>,
) -> Vec<(String, String, u16)> {
    let mut urls: Vec<&str> = p
        .services
        .iter()
        .filter_map(|s| s.base_url.as_deref())
        .collect();
    if p.origin != Origin::BuiltIn {
        urls.extend(
            [&p.authorize_url, &p.token_url, &p.userinfo_url]
                .into_iter()
                .filter_map(|u| u.as_deref()),
        );
    }
    urls.into_iter()
        .filter_map(|u| crate::render::fill_strict(u, known).ok())
        .filter_map(|u| url::Url::parse(&u).ok())
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .filter_map(|u| origin_of(&u))
        .collect()
}

/// `host` or `host:port` as the agent would write it.
fn host_label(u: &url::Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

/// What the prompt shows: method and URL, with only the names of query parameters.
fn request_label(method: &Method, u: &url::Url) -> String {
    let mut s = format!("{method} {}{}", u.origin().ascii_serialization(), u.path());
    let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
    if !keys.is_empty() {
        s.push('?');
        s.push_str(&keys.join("&"));
    }
    s
}

/// Values the `inject` templates may name; wiped when dropped.
struct Known(BTreeMap<String, String>);

impl Drop for Known {
    fn drop(&mut self) {
        for v in self.0.values_mut() {
            v.zeroize();
        }
    }
}

fn known_values(p: &Provider, conn: &ConnectionInfo, creds: &Credentials) -> Known {
    let mut m = conn.public_fields.clone();
    for (k, v) in creds {
        m.insert(k.clone(), v.expose().to_owned());
    }
    let token = p
        .token_field()
        .and_then(|f| creds.get(&f.name))
        .or_else(|| creds.get("accessToken"))
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    m.insert("accessToken".into(), token);
    Known(m)
}

/// The credential as headers and query parameters, per the catalog.
struct Injection {
    headers: Vec<(HeaderName, HeaderValue)>,
    query: Vec<(String, String)>,
    /// The access token used (to tell the broker which token a 401 refused).
    token: zeroize::Zeroizing<String>,
}

fn inject(p: &Provider, known: &Known) -> Result<Injection, ApiError> {
    let missing = |name: String| {
        ApiError::bad_request(format!(
            "the {} connection has no value `{name}`, which its credential placement needs; the user can re-add it with `akhrot add {}`",
            p.name, p.code
        ))
    };
    let bad_value = || {
        ApiError::bad_request(format!(
            "the stored {} credential cannot be sent in an HTTP header",
            p.name
        ))
    };
    let mut headers = Vec::new();
    for (k, v) in p.inject.effective_headers() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad_value())?;
        let mut value =
            zeroize::Zeroizing::new(crate::render::fill_strict(&v, &known.0).map_err(missing)?);
        let mut hv = HeaderValue::from_str(&value).map_err(|_| bad_value())?;
        value.zeroize();
        hv.set_sensitive(true);
        headers.push((name, hv));
    }
    if let Some([u, pw]) = &p.inject.basic {
        use base64::Engine;
        let user = crate::render::fill_strict(u, &known.0).map_err(missing)?;
        let pass = crate::render::fill_strict(pw, &known.0).map_err(missing)?;
        let pair = zeroize::Zeroizing::new(format!("{user}:{pass}"));
        let enc = zeroize::Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        ));
        let mut hv = HeaderValue::from_str(&enc).map_err(|_| bad_value())?;
        hv.set_sensitive(true);
        headers.push((header::AUTHORIZATION, hv));
        let (mut user, mut pass) = (user, pass);
        user.zeroize();
        pass.zeroize();
    }
    let mut query = Vec::new();
    for (k, v) in &p.inject.query {
        query.push((
            k.clone(),
            crate::render::fill_strict(v, &known.0).map_err(missing)?,
        ));
    }
    Ok(Injection {
        headers,
        query,
        token: zeroize::Zeroizing::new(known.0.get("accessToken").cloned().unwrap_or_default()),
    })
}

/// The request body: kept whole when small (so it can be sent twice), else streamed.
enum Payload {
    Kept(Bytes),
    Streamed(Body),
}

async fn read_payload(body: Body, declared: Option<u64>) -> Result<Payload, ApiError> {
    if declared.is_some_and(|n| n > RETRY_BODY_MAX as u64) {
        return Ok(Payload::Streamed(body));
    }
    let mut stream = body.into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        match stream.next().await {
            None => break,
            Some(Ok(c)) => {
                total += c.len();
                chunks.push(c);
                if total > RETRY_BODY_MAX {
                    let head = futures_util::stream::iter(
                        chunks.into_iter().map(Ok::<Bytes, axum::Error>),
                    );
                    return Ok(Payload::Streamed(Body::from_stream(head.chain(stream))));
                }
            }
            Some(Err(_)) => {
                return Err(ApiError::bad_request(
                    "the request body could not be read to the end",
                ));
            }
        }
    }
    let mut all = Vec::with_capacity(total);
    for c in chunks {
        all.extend_from_slice(&c);
    }
    Ok(Payload::Kept(Bytes::from(all)))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The agent's query without Akhrot's own parameters, and those parameters.
struct SplitQuery {
    kept: Vec<String>,
    account: Option<String>,
    service: Option<String>,
}

fn split_query(q: Option<&str>) -> SplitQuery {
    let mut out = SplitQuery {
        kept: Vec::new(),
        account: None,
        service: None,
    };
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = pct_decode(&k.replace('+', " "));
        if key.starts_with("akhrot_") {
            let v = pct_decode(&v.replace('+', " "));
            match key.as_str() {
                "akhrot_account" => out.account = Some(v).filter(|s| !s.is_empty()),
                "akhrot_service" => out.service = Some(v).filter(|s| !s.is_empty()),
                _ => {}
            }
        } else {
            out.kept.push(pair.to_owned());
        }
    }
    out
}

fn choose_service<'a>(
    p: &'a Provider,
    wanted: Option<&str>,
    known: &BTreeMap<String, String>,
) -> Result<&'a Service, ApiError> {
    let with_base: Vec<&Service> = p.services.iter().filter(|s| s.base_url.is_some()).collect();
    let codes = || {
        with_base
            .iter()
            .map(|s| s.code.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(w) = wanted {
        return with_base
            .iter()
            .find(|s| s.code == w)
            .copied()
            .ok_or_else(|| {
                // Like `GET /ai/context/{provider}/{service}` for an unknown service.
                ApiError::new(
                    Code::NotFound,
                    format!(
                        "{} has no service `{}` with an API base URL; its services are: {}",
                        p.name,
                        printable(w),
                        codes()
                    ),
                )
            });
    }
    let mut distinct: Vec<String> = with_base
        .iter()
        .filter_map(|s| crate::render::base_url(s, known))
        .collect();
    distinct.sort();
    distinct.dedup();
    match (with_base.first(), distinct.len()) {
        (None, _) => Err(ApiError::bad_request(format!(
            "the catalog lists no API base URL for {}, so there is nothing to proxy to; use POST /tokens/fetch",
            p.name
        ))),
        (Some(s), 1) => Ok(s),
        _ => Err(ApiError::bad_request(format!(
            "{} has several APIs on different base URLs: choose one with the header `X-Akhrot-Service: <code>` (or `?akhrot_service=<code>`); codes: {}",
            p.name,
            codes()
        ))),
    }
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer_addr): ConnectInfo<SocketAddr>,
    AgentAuth(agent): AgentAuth,
    req: Request,
) -> Response {
    match forward(&state, &agent, peer_addr, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Forwards one agent request (its URI path starting with `/proxy/{provider}`) and answers with
/// the provider's answer, or an error in the contract's envelope. The MCP server's proxy tool can
/// call this with a request it builds; the caller has authenticated `agent`.
///
/// The steps, in order: [`parse_target`] (where the call goes, checked against the catalog),
/// [`authorize`] (pause, policy, the user's answer), [`credentials`] (fresh from the broker),
/// [`build_upstream`] (the headers and body that travel), [`send_with_refresh`] (one retry after
/// a refresh when an OAuth provider refuses the token) and [`pass_back`] (the answer, masked).
pub(crate) async fn forward(
    state: &AppState,
    agent: &akhrot_core::vault::Agent,
    peer_addr: SocketAddr,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let target = parse_target(state, &parts)?;
    let log = authorize(state, agent, &target, peer_addr).await?;
    let (conn, creds) = credentials(state, &target, &log).await?;
    let upstream = build_upstream(&parts, body, &target).await?;
    let sent = send_with_refresh(state, &target, &log, conn, creds, upstream).await?;
    pass_back(state, &target, &log, sent)
}

/// Where a proxied call goes, from the agent's request, checked against the catalog.
struct Target {
    method: Method,
    provider: Arc<Provider>,
    account: Option<String>,
    reason: Option<String>,
    /// The chosen service's fixed headers, rendered.
    service_headers: Vec<(HeaderName, HeaderValue)>,
    url: url::Url,
    host: String,
}

/// The methods the proxy forwards.
fn check_method(method: &Method) -> Result<(), ApiError> {
    if matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    ) {
        return Ok(());
    }
    let mut e = ApiError::new(
        Code::MethodNotAllowed,
        "the proxy forwards GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS only",
    );
    e.allow = Some("GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS");
    Err(e)
}

/// The provider, account, service and target URL of a proxied call; refuses what the proxy
/// cannot carry, a malformed path, and any host the catalog does not list for the provider.
fn parse_target(state: &AppState, parts: &Parts) -> Result<Target, ApiError> {
    let method = parts.method.clone();
    check_method(&method)?;
    let raw = parts.uri.path();
    let after = raw.strip_prefix("/proxy/").unwrap_or("");
    let (code, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let p = state.provider(code)?;
    if p.auth == AuthType::Mtproto {
        return Err(ApiError::bad_request(format!(
            "{} speaks MTProto, not HTTP, so the proxy cannot carry its calls; use POST /tokens/fetch and an MTProto client",
            p.name
        )));
    }
    if p.inject.digest.is_some() {
        return Err(ApiError::bad_request(format!(
            "{} uses HTTP Digest authentication, which the proxy cannot do (each request needs the server's challenge); use POST /tokens/fetch",
            p.name
        )));
    }
    let q = split_query(parts.uri.query());
    let account = header_str(&parts.headers, "x-akhrot-account").or(q.account);
    let service = header_str(&parts.headers, "x-akhrot-service").or(q.service);
    let reason = header_str(&parts.headers, "x-akhrot-reason");
    if account.as_ref().is_some_and(|a| a.chars().count() > 200) {
        return Err(ApiError::bad_request(
            "the account is longer than 200 characters",
        ));
    }
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::bad_request(
            "`X-Akhrot-Reason` is longer than 500 characters",
        ));
    }
    state
        .vault
        .require_connection(&p.code, account.as_deref())?;
    let public = state
        .vault
        .find_connection(&p.code, account.as_deref())
        .map(|c| c.public_fields)
        .unwrap_or_default();
    // Values that go into a base URL must be plain names (no `/`, `@`, `?`, `:`): they may not
    // move the request to another host or path.
    let public: BTreeMap<String, String> =
        public.into_iter().filter(|(_, v)| is_plain(v)).collect();
    // The client's settings (GitLab's server, Microsoft's tenant) were checked when set, and
    // move the base URLs and so the allow-list with them.
    let settings = if p.settings.is_empty() {
        BTreeMap::new()
    } else {
        state.vault.client_settings(&p.code)?
    };
    let public = p.placeholder_values(&public, &settings);
    let s = choose_service(&p, service.as_deref(), &public)?;
    check_path(rest)?;
    let base = s
        .base_url
        .as_deref()
        .map(|b| crate::render::fill_strict(b, &public))
        .transpose()
        .map_err(|name| {
            ApiError::bad_request(format!(
                "the {} base URL needs the connection's `{name}`, which it does not have (or not as a plain name of letters, digits, `.`, `-`, `_`); the user can re-add the connection with it",
                p.name
            ))
        })?
        .unwrap_or_default();
    let mut target = format!("{}{}", base.trim_end_matches('/'), rest);
    if !q.kept.is_empty() {
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str(&q.kept.join("&"));
    }
    let url = url::Url::parse(&target)
        .map_err(|_| ApiError::bad_request("the proxied path does not make a valid URL"))?;
    let allowed = allowed_targets(&p, &public);
    if !origin_of(&url).is_some_and(|o| allowed.contains(&o)) {
        return Err(ApiError::new(
            Code::ForbiddenHost,
            format!(
                "the proxy reaches only the hosts the catalog lists for {}; `{}` is not one of them",
                p.name,
                printable(&host_label(&url))
            ),
        ));
    }
    let service_headers = service_headers(state, &p, s, &public)?;
    let host = host_label(&url);
    Ok(Target {
        method,
        provider: p,
        account,
        reason,
        service_headers,
        url,
        host,
    })
}

/// A service's fixed headers (Twitch's `Client-Id = "{clientId}"`), filled from the
/// connection's public values and, for an OAuth provider, the OAuth client's `clientId`. A
/// header that cannot be filled refuses the call (`BAD_REQUEST`) rather than going out
/// without it: the provider would refuse the call anyway, with a less helpful answer.
fn service_headers(
    state: &AppState,
    p: &Provider,
    s: &Service,
    public: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    if s.headers.is_empty() {
        return Ok(Vec::new());
    }
    let mut known = public.clone();
    // The OAuth client is read only for a header that names it (Twitch's `Client-Id`), not on
    // every proxied call of a provider with fixed headers (GitHub's `Accept`).
    if p.auth == AuthType::Oauth2
        && s.headers.values().any(|v| v.contains("{clientId}"))
        && let Ok(Some(client)) = state.vault.oauth_client_info(&p.code)
    {
        known.insert("clientId".into(), client.client_id);
    }
    let mut out = Vec::new();
    for (k, v) in &s.headers {
        let value = crate::render::fill_strict(v, &known).map_err(|name| {
            ApiError::bad_request(format!(
                "the {} service `{}` sends the header `{k}`, which needs the value `{name}`; {}",
                p.name,
                s.code,
                if p.auth == AuthType::Oauth2 && name == "clientId" {
                    format!(
                        "it is the OAuth client's id: set it with `akhrot clients set {} --client-id <ID> --client-secret-stdin`",
                        p.code
                    )
                } else {
                    format!(
                        "the connection has no such value; the user can re-add it with `akhrot add {}`",
                        p.code
                    )
                }
            ))
        })?;
        let bad = || {
            ApiError::bad_request(format!(
                "the {} service `{}` header `{k}` does not make a valid HTTP header",
                p.name, s.code
            ))
        };
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(&value).map_err(|_| bad())?;
        out.push((name, value));
    }
    Ok(out)
}

/// Writes a granted call's audit entries (action `proxy`), with the agent and its peer.
struct CallLog<'a> {
    agent: &'a akhrot_core::vault::Agent,
    provider: &'a str,
    account: Option<&'a str>,
    peer: Option<serde_json::Value>,
    /// `METHOD host/path`, the opening of every entry's detail.
    what: String,
}

impl CallLog<'_> {
    fn record(
        &self,
        state: &AppState,
        outcome: Outcome,
        detail: String,
        conn_account: Option<&str>,
    ) {
        state.audit.record(
            Entry::new(Action::Proxy, outcome)
                .agent(&self.agent.id, &self.agent.name)
                .provider(self.provider)
                .account(conn_account.or(self.account))
                .detail(detail)
                .peer(self.peer.clone()),
        );
    }
}

/// Pause, the agent's policy and (under `ask`) the user's answer, for this very request.
async fn authorize<'a>(
    state: &AppState,
    agent: &'a akhrot_core::vault::Agent,
    target: &'a Target,
    peer_addr: SocketAddr,
) -> Result<CallLog<'a>, ApiError> {
    let label = request_label(&target.method, &target.url);
    let granted = crate::access::authorize(
        state,
        agent,
        &target.provider,
        target.account.as_deref(),
        target.reason.clone(),
        Some(label.clone()),
        peer_addr,
    )
    .await?;
    Ok(CallLog {
        agent,
        provider: &target.provider.code,
        account: target.account.as_deref(),
        peer: granted.peer,
        what: format!("{} {}{}", target.method, target.host, target.url.path()),
    })
}

/// The connection's credentials, refreshed first when they are about to expire.
async fn credentials(
    state: &AppState,
    target: &Target,
    log: &CallLog<'_>,
) -> Result<(Arc<ConnectionInfo>, Credentials), ApiError> {
    match state
        .broker
        .fresh_credentials(&target.provider, target.account.as_deref())
        .await
    {
        Ok(v) => Ok(v),
        Err(e) => {
            let e = ApiError::from(e);
            log.record(
                state,
                Outcome::Error,
                format!("{}: {}", log.what, e.code.as_str()),
                None,
            );
            Err(e)
        }
    }
}

/// What travels upstream besides the credential: the headers and the body.
struct Upstream {
    headers: HeaderMap,
    payload: Payload,
}

/// The agent's headers, minus what must not travel, plus the service's fixed headers; and the
/// body, kept when small enough to be sent twice.
async fn build_upstream(parts: &Parts, body: Body, target: &Target) -> Result<Upstream, ApiError> {
    let listed = connection_listed(&parts.headers);
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if drop_request_header(k.as_str()) || listed.iter().any(|l| l == k.as_str()) {
            continue;
        }
        headers.append(k.clone(), v.clone());
    }
    // The answer is searched for the credential before it is passed on (see `redact`), which
    // needs it uncompressed.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    for (name, value) in &target.service_headers {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let payload = read_payload(body, declared).await?;
    let wants_length = matches!(target.method, Method::POST | Method::PUT | Method::PATCH);
    if let Payload::Kept(b) = &payload {
        // Sent with its exact length by the client; an empty body on a method that usually has
        // one still says `Content-Length: 0` (servers may insist on a length).
        headers.remove(header::CONTENT_LENGTH);
        if b.is_empty() && wants_length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
    }
    Ok(Upstream { headers, payload })
}

/// Starts one upstream request with the credential injected; also gives the access token used.
fn send_once(
    state: &AppState,
    target: &Target,
    headers: &HeaderMap,
    creds: &Credentials,
    conn: &ConnectionInfo,
    body: Option<reqwest::Body>,
) -> Result<
    (
        impl Future<Output = reqwest::Result<reqwest::Response>> + use<>,
        zeroize::Zeroizing<String>,
    ),
    ApiError,
> {
    let known = known_values(&target.provider, conn, creds);
    let inj = inject(&target.provider, &known)?;
    let mut u = target.url.clone();
    if !inj.query.is_empty() {
        let mut qp = u.query_pairs_mut();
        for (k, v) in &inj.query {
            qp.append_pair(k, v);
        }
    }
    let mut headers = headers.clone();
    for (k, v) in inj.headers {
        headers.insert(k, v);
    }
    let mut rb = state
        .proxy_http
        .request(target.method.clone(), u)
        .headers(headers);
    if let Some(body) = body {
        rb = rb.body(body);
    }
    Ok((rb.send(), inj.token))
}

/// `PROVIDER_ERROR` for a provider that did not answer (`None`: not in time).
fn upstream_error(host: &str, timeout: Duration, e: Option<reqwest::Error>) -> ApiError {
    let why = match e {
        None => format!("did not answer within {} s", timeout.as_secs()),
        Some(e) if e.is_connect() => "could not be reached (connection failed)".to_owned(),
        Some(e) if e.is_timeout() => "took too long to answer".to_owned(),
        Some(_) => "failed before answering".to_owned(),
    };
    ApiError::new(
        Code::ProviderError,
        format!("{host} {why}; try again later"),
    )
}

/// The provider's answer, with what [`pass_back`] needs to write it out.
struct Sent {
    resp: reqwest::Response,
    /// The connection's account the call used.
    conn_account: String,
    /// Every secret that was sent, to be masked in the answer.
    secrets: crate::redact::Secrets,
    /// Said in the audit detail: a retry after a refresh, or why there was none.
    note: &'static str,
}

/// Sends the request; when an OAuth provider answers 401 and the body was kept, refreshes the
/// token and sends it once more.
async fn send_with_refresh(
    state: &AppState,
    target: &Target,
    log: &CallLog<'_>,
    conn: Arc<ConnectionInfo>,
    creds: Credentials,
    upstream: Upstream,
) -> Result<Sent, ApiError> {
    let p = &target.provider;
    let what = &log.what;
    let timeout = state.provider_timeout;
    let Upstream { headers, payload } = upstream;
    let (first_body, kept, uploaded_rx) = first_body(payload);
    let mut secrets = crate::redact::Secrets::default();
    add_secrets(&mut secrets, p, &conn, &creds);
    let (fut, used) = send_once(state, target, &headers, &creds, &conn, first_body)?;
    let first = tokio::select! {
        r = fut => Ok(r),
        () = async {
            let _ = uploaded_rx.await;
            tokio::time::sleep(timeout).await;
        } => Err(()),
    };
    let mut resp = match first {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let e = upstream_error(&target.host, timeout, Some(e));
            log.record(
                state,
                Outcome::Status(502),
                format!("{what} -> 502"),
                Some(&conn.account),
            );
            return Err(e);
        }
        Err(_) => {
            log.record(
                state,
                Outcome::Status(502),
                format!("{what} -> 502"),
                Some(&conn.account),
            );
            return Err(upstream_error(&target.host, timeout, None));
        }
    };
    let mut note = "";
    if resp.status() == StatusCode::UNAUTHORIZED
        && p.auth == AuthType::Oauth2
        && let Some(kept) = &kept
    {
        let retry = Retry {
            headers: &headers,
            conn: &conn,
            refused: &used,
            body: kept,
        };
        match retry_after_refresh(state, target, log, retry, &mut secrets).await? {
            Ok(r) => {
                resp = r;
                note = " (retried after a refresh)";
            }
            Err(why) => note = why,
        }
    }
    drop(used);
    Ok(Sent {
        resp,
        conn_account: conn.account.clone(),
        secrets,
        note,
    })
}

/// The body to send first, the kept copy for a retry (small bodies only), and a signal that
/// the agent's body has been read to its end: a large upload may take longer than the provider
/// timeout, so for a streamed body the clock for the answer's headers starts then.
fn first_body(
    payload: Payload,
) -> (
    Option<reqwest::Body>,
    Option<Bytes>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (uploaded_tx, uploaded_rx) = tokio::sync::oneshot::channel::<()>();
    match payload {
        Payload::Kept(b) => {
            let _ = uploaded_tx.send(());
            (body_of(&b), Some(b), uploaded_rx)
        }
        Payload::Streamed(b) => {
            let tail = futures_util::stream::once(async move {
                let _ = uploaded_tx.send(());
                None::<Result<Bytes, axum::Error>>
            })
            .filter_map(|x| async move { x });
            let body = reqwest::Body::wrap_stream(b.into_data_stream().chain(tail));
            (Some(body), None, uploaded_rx)
        }
    }
}

/// A kept body can be sent again; an empty one is not sent as a body at all.
fn body_of(b: &Bytes) -> Option<reqwest::Body> {
    (!b.is_empty()).then(|| reqwest::Body::from(b.clone()))
}

/// What a retry after a refresh sends again.
struct Retry<'a> {
    headers: &'a HeaderMap,
    conn: &'a ConnectionInfo,
    /// The access token the provider refused.
    refused: &'a str,
    body: &'a Bytes,
}

/// After an OAuth provider's 401: refreshes the token and sends the request once more.
/// `Ok(Ok(answer))` is the retry's answer; `Ok(Err(note))` says why there was no retry (the
/// first answer stands); `Err` is a retry that got no answer (audited here).
async fn retry_after_refresh(
    state: &AppState,
    target: &Target,
    log: &CallLog<'_>,
    retry: Retry<'_>,
    secrets: &mut crate::redact::Secrets,
) -> Result<Result<reqwest::Response, &'static str>, ApiError> {
    let p = &target.provider;
    let timeout = state.provider_timeout;
    let (conn2, creds2) = match state
        .broker
        .refresh_rejected(p, Some(&retry.conn.account), retry.refused)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::from(e);
            return Ok(Err(if e.code == Code::TokenExpired {
                " (refresh refused: reconnect needed)"
            } else {
                " (refresh failed)"
            }));
        }
    };
    add_secrets(secrets, p, &conn2, &creds2);
    let (fut, _) = send_once(
        state,
        target,
        retry.headers,
        &creds2,
        &conn2,
        body_of(retry.body),
    )?;
    let failed = |e: Option<reqwest::Error>| {
        log.record(
            state,
            Outcome::Status(502),
            format!("{} -> 502 (retry after a refresh)", log.what),
            Some(&retry.conn.account),
        );
        upstream_error(&target.host, timeout, e)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(r)) => Ok(Ok(r)),
        Ok(Err(e)) => Err(failed(Some(e))),
        Err(_) => Err(failed(None)),
    }
}

/// The provider's answer as the agent gets it: hop-by-hop headers dropped, every secret that was
/// sent masked in headers and body, sandboxed, and cut if Akhrot shuts down mid-answer.
fn pass_back(
    state: &AppState,
    target: &Target,
    log: &CallLog<'_>,
    sent: Sent,
) -> Result<Response, ApiError> {
    let Sent {
        resp,
        conn_account,
        secrets,
        note,
    } = sent;
    let (what, host) = (&log.what, &target.host);
    let status = resp.status();
    if resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        log.record(
            state,
            Outcome::Status(502),
            format!("{what} -> 502 (compressed answer not passed on)"),
            Some(&conn_account),
        );
        return Err(ApiError::new(
            Code::ProviderError,
            format!(
                "{host} answered compressed although Akhrot asked for an uncompressed answer; it is not passed on because it could not be checked for the credential"
            ),
        ));
    }
    let mut masker = secrets.masker();
    drop(secrets);
    let mut out = Response::builder().status(status);
    let mut masked_headers = 0;
    if let Some(h) = out.headers_mut() {
        masked_headers = answer_headers(h, resp.headers(), masker.as_mut(), host);
    }
    let masked_note = if masked_headers > 0 {
        "; the credential it echoed in a header was masked"
    } else {
        ""
    };
    log.record(
        state,
        Outcome::Status(status.as_u16()),
        format!("{what} -> {}{note}{masked_note}", status.as_u16()),
        Some(&conn_account),
    );
    // The answer streams until the provider ends it, or until Akhrot shuts down: then it is cut
    // with an error (the agent sees a broken answer, never a silently shortened one) so that a
    // long download does not hold the shutdown open.
    let upstream = masked_stream(resp.bytes_stream(), masker, target.provider.code.clone());
    let stream = until_shutdown(upstream, state.closing.subscribe());
    out.body(Body::from_stream(stream)).map_err(|_| {
        ApiError::new(
            Code::ProviderError,
            format!("{host} answered with headers that cannot be passed on"),
        )
    })
}

/// The answer's headers as passed on: hop-by-hop and connection-listed ones dropped, every
/// secret masked, sandboxed, and marked with the upstream host. Gives how many secrets were
/// masked in them.
fn answer_headers(
    h: &mut HeaderMap,
    upstream: &HeaderMap,
    mut masker: Option<&mut crate::redact::Masker>,
    host: &str,
) -> usize {
    let listed = connection_listed(upstream);
    for (k, v) in upstream {
        if drop_response_header(k.as_str()) || listed.iter().any(|l| l == k.as_str()) {
            continue;
        }
        let v = match masker.as_mut() {
            Some(m) => m.header(v),
            None => v.clone(),
        };
        h.append(k.clone(), v);
    }
    let masked = masker.as_ref().map_or(0, |m| m.masked);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    if let Ok(v) = HeaderValue::from_str(host) {
        h.insert(HeaderName::from_static("x-akhrot-upstream"), v);
    }
    masked
}

/// The answer's body until the provider ends it, or cut with an error when Akhrot starts
/// shutting down (`closing` turns true).
fn until_shutdown(
    upstream: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    closing: tokio::sync::watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(
        (Box::pin(upstream), closing, false),
        |(mut up, mut closing, cut)| async move {
            if cut {
                return None;
            }
            let next = tokio::select! {
                item = up.next() => Some(item),
                _ = closing.wait_for(|c| *c) => None,
            };
            match next {
                Some(item) => {
                    item.map(|r| (r.map_err(std::io::Error::other), (up, closing, false)))
                }
                None => Some((
                    Err(std::io::Error::other("Akhrot is shutting down")),
                    (up, closing, true),
                )),
            }
        },
    )
}

/// The secret values of a connection, and the Basic pair as sent, for [`crate::redact`].
fn add_secrets(
    secrets: &mut crate::redact::Secrets,
    p: &Provider,
    conn: &ConnectionInfo,
    creds: &Credentials,
) {
    for v in creds.values() {
        secrets.add(v.expose());
    }
    if let Some([u, pw]) = &p.inject.basic {
        use base64::Engine;
        let known = known_values(p, conn, creds);
        if let (Ok(user), Ok(pass)) = (
            crate::render::fill_strict(u, &known.0),
            crate::render::fill_strict(pw, &known.0),
        ) {
            let pair = zeroize::Zeroizing::new(format!("{user}:{pass}"));
            let enc = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
            );
            secrets.add_spelling(&enc);
        }
    }
}

/// The upstream body with every occurrence of a secret masked (see [`crate::redact`]).
fn masked_stream(
    upstream: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    masker: Option<crate::redact::Masker>,
    provider: String,
) -> impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(
        (Box::pin(upstream), masker, false),
        move |(mut up, mut masker, done)| {
            let provider = provider.clone();
            async move {
                if done {
                    return None;
                }
                let Some(m) = masker.as_mut() else {
                    return up.next().await.map(|item| (item, (up, masker, false)));
                };
                loop {
                    match up.next().await {
                        Some(Ok(chunk)) => {
                            let out = m.chunk(&chunk);
                            if !out.is_empty() {
                                return Some((Ok(out), (up, masker, false)));
                            }
                        }
                        Some(Err(e)) => return Some((Err(e), (up, masker, true))),
                        None => {
                            if m.masked > 0 {
                                tracing::warn!(
                                    provider,
                                    occurrences = m.masked,
                                    "a proxied answer echoed the credential; masked it"
                                );
                            }
                            let rest = m.finish();
                            return (!rest.is_empty()).then_some((Ok(rest), (up, masker, true)));
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service header that cannot be filled refuses the call, so no built-in one may name a
    /// value a connection cannot have: an OAuth provider's `clientId`, or a public field.
    #[test]
    fn every_builtin_service_header_can_be_filled() {
        let c = akhrot_core::catalog::Catalog::builtin().unwrap();
        for p in c.iter() {
            let mut known: BTreeMap<String, String> = p
                .fields
                .iter()
                .filter(|f| !f.secret)
                .map(|f| (f.name.clone(), "x".to_owned()))
                .collect();
            if p.auth == AuthType::Oauth2 {
                known.insert("clientId".into(), "x".into());
            }
            for s in &p.services {
                for (k, v) in &s.headers {
                    assert!(
                        crate::render::fill_strict(v, &known).is_ok(),
                        "{}.{} header {k} = {v}",
                        p.code,
                        s.code
                    );
                }
            }
        }
    }

    #[test]
    fn traversal_is_refused_in_every_spelling() {
        for bad in [
            "/a/../b",
            "/..",
            "/./x",
            "/a/%2e%2e/b",
            "/a/%2E%2e",
            "/a/%252e%252e/b",
            "/a/.%2e/b",
            "/a\\..\\b",
            "/a/%5c..",
            "/a/..%2fb",
            "/a/%2e%2e%2fetc",
            // Path parameters, NUL cuts, overlong UTF-8 and Unicode dots that some upstream
            // reads as `..`.
            "/a/..;/b",
            "/a/%2e%2e;x/b",
            "/a/..%00/b",
            "/a/.%00./b",
            "/a/%c0%ae%c0%ae/b",
            "/a/%C0%AE/b",
            "/a/%ef%bc%8e%ef%bc%8e/b",
            "/a/\u{FF0E}\u{FF0E}/b",
            "/a/%e2%80%a4%e2%80%a4/b",
            "/a/%ff",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "",
            "/",
            "/user",
            "/repos/o/r/issues",
            "/a/.well-known/x",
            "/a/..b",
            "/v1/%40scope%2Fpkg",
            "/a/b.",
            "/a/b;c=d",
            "/a/%E2%9C%93",
            "/a/caf%C3%A9",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn only_the_providers_hosts_are_targets() {
        let catalog = akhrot_core::catalog::Catalog::builtin().unwrap();
        let gh = catalog.get("github").unwrap();
        let allowed = allowed_targets(gh, &BTreeMap::new());
        let ok = url::Url::parse("https://api.github.com/user").unwrap();
        assert!(allowed.contains(&origin_of(&ok).unwrap()));
        for bad in [
            "https://evil.example/user",
            "http://api.github.com/user",
            "https://api.github.com:8443/user",
            "https://api.github.com.evil.example/",
        ] {
            let u = url::Url::parse(bad).unwrap();
            assert!(!allowed.contains(&origin_of(&u).unwrap()), "{bad}");
        }
        // Built-in providers do not open their OAuth hosts to the proxy.
        let login = url::Url::parse("https://github.com/login/oauth/access_token").unwrap();
        assert!(!allowed.contains(&origin_of(&login).unwrap()));
    }

    #[test]
    fn base_url_values_must_be_plain_names() {
        for ok in ["AC123", "mg.example.com", "a-b_c~d", "3f2c-11"] {
            assert!(is_plain(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "evil.com/x",
            "a@b",
            "x?y",
            "h:1",
            "a b",
            "%2e",
        ] {
            assert!(!is_plain(bad), "{bad}");
        }
    }

    #[test]
    fn the_prompt_shows_query_names_never_values() {
        let u = url::Url::parse("https://api.example.com/v1/items?page=2&token=s3cret").unwrap();
        assert_eq!(
            request_label(&Method::GET, &u),
            "GET https://api.example.com/v1/items?page&token"
        );
        let q = split_query(Some(
            "a=1&akhrot_account=work%40x&b&akhrot_service=api&akhrot_x=1",
        ));
        assert_eq!(q.kept, vec!["a=1", "b"]);
        assert_eq!(q.account.as_deref(), Some("work@x"));
        assert_eq!(q.service.as_deref(), Some("api"));
    }

    #[test]
    fn hop_by_hop_and_credentials_are_not_forwarded() {
        for h in [
            "Authorization",
            "Cookie",
            "Origin",
            "Referer",
            "Sec-Fetch-Site",
            "Host",
            "Connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "Proxy-Authorization",
            "X-Akhrot-Account",
        ] {
            assert!(drop_request_header(h), "{h}");
        }
        assert!(!drop_request_header("Accept"));
        assert!(!drop_request_header("Content-Type"));
        assert!(drop_response_header("Set-Cookie"));
        assert!(!drop_response_header("Location"));
    }
}
