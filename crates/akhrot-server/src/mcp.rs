//! The MCP server (official Rust SDK, `rmcp`): the same agent API as tools.
//!
//! Every tool is a call to the owner's own agent API with the calling agent's key, so
//! authentication, policy, approvals, rate limits and the audit log apply exactly as they do to
//! `curl`. Two transports share this code: stdio (`akhrot mcp`, the key from `AKHROT_API_KEY`,
//! calls over HTTP to the owner) and Streamable HTTP at `/mcp` on the loopback listener (the key
//! from the caller's `Authorization: Bearer` header, checked before the request reaches the MCP
//! layer). `/mcp` does not call its own listener over HTTP: that connection would be the owner's,
//! and the approval prompt would name the owner as the caller. It runs each call through the
//! same router in-process, as the caller's own connection (its address, hence the process the
//! OS names, and its `Host`), so every guard applies unchanged and the prompt shows the real
//! caller.
//!
//! While a token or proxy request waits for the user's approval, the tool polls
//! `GET /ai/approvals` and tells the client what it is waiting for (a progress notification
//! when the client gave a progress token, and a logging message), so a prompt never looks
//! like a hang.

// MCP logging is deprecated by SEP-2577 in the newest protocol revision, but it is what today's
// clients show their user while a tool runs; progress notifications (not deprecated) go too.
#![allow(deprecated)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ServerCapabilities, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use akhrot_core::paths::Paths;

use rmcp::schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{ApiError, Code};
use crate::proxy_path::check_path;

/// How often a waiting tool asks whether its request is pending approval.
const POLL: Duration = Duration::from_millis(500);
/// How often the progress notification is repeated while a prompt waits.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Provider answers larger than this are cut, with a note saying so.
pub const MAX_BODY_TEXT: usize = 100 * 1024;
/// Answer headers `call_api` passes back (the rest are transport details).
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "location",
    "retry-after",
    "link",
    "etag",
    "last-modified",
    "www-authenticate",
    "x-akhrot-upstream",
];

/// Where the owner's agent API is.
#[derive(Clone)]
pub enum Owner {
    /// A fixed base URL.
    Url(String),
    /// Read from `server.json` at each call, so an owner restarted on another port is found.
    Dir(Paths),
}

impl Owner {
    fn base_url(&self) -> Result<String, ToolError> {
        match self {
            Owner::Url(u) => Ok(u.clone()),
            // Only a live owner holding the owner lock gets the agent key.
            Owner::Dir(paths) => crate::running::live_owner(paths)
                .map(|i| crate::running::base_url(i.port))
                .map_err(|_| ToolError::no_owner(&paths.data_dir.display().to_string())),
        }
    }
}

/// Which agent key a call uses, and how the call reaches the agent API.
#[derive(Clone)]
enum Key {
    /// `akhrot mcp`: the key the process was started with, over HTTP.
    Fixed(Arc<Zeroizing<String>>),
    /// `/mcp`: the caller's own request (`Authorization`, `Host`, connection), replayed into
    /// this router in-process. The router has no `/mcp` route, so a tool cannot reach itself.
    FromRequest(axum::Router),
}

/// Who a tool call speaks for.
enum Caller {
    /// `akhrot mcp`: the process's key.
    Key(Zeroizing<String>),
    /// `/mcp`: the caller's own headers and connection.
    Request {
        router: axum::Router,
        authorization: HeaderValue,
        host: Option<HeaderValue>,
        connect: ConnectInfo<SocketAddr>,
    },
}

/// An answer of the agent API, from either transport.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: ReplyBody,
}

enum ReplyBody {
    Http(reqwest::Response),
    InProcess(axum::body::BodyDataStream),
}

impl Reply {
    /// The next piece of the body, `None` at its end.
    async fn chunk(&mut self) -> Result<Option<axum::body::Bytes>, ToolError> {
        match &mut self.body {
            ReplyBody::Http(r) => r.chunk().await.map_err(|e| {
                ToolError::new(
                    ToolCode::OwnerUnreachable,
                    format!("the Akhrot owner's answer broke off: {e}"),
                )
            }),
            ReplyBody::InProcess(s) => s.next().await.transpose().map_err(|_| {
                ToolError::new(
                    ToolCode::OwnerUnreachable,
                    "the Akhrot owner's answer broke off",
                )
            }),
        }
    }

    /// The whole body.
    async fn bytes(mut self) -> Result<Vec<u8>, ToolError> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}

/// The MCP server. Cheap to clone.
#[derive(Clone)]
pub struct AkhrotMcp {
    owner: Owner,
    key: Key,
    /// For `akhrot mcp` only: `/mcp` sends no HTTP request.
    http: Option<reqwest::Client>,
}

/// The code a tool error carries: the API's own error code (the `code` of the contract's
/// envelope) wherever the API has one; the other variants are failures no API answer describes
/// (no owner to ask, no usable answer, the client hung up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCode {
    /// A code of the API (`APPROVAL_DENIED`, `INTEGRATION_NOT_FOUND`, `BAD_REQUEST`…).
    Api(Code),
    /// A code in the owner's envelope that this build does not know (an owner of another
    /// version), passed on as it is.
    OtherApi(String),
    /// `OWNER_NOT_RUNNING`: no owner runs for the data directory (`akhrot mcp`).
    OwnerNotRunning,
    /// `OWNER_UNREACHABLE`: the owner could not be talked to, or its answer broke off.
    OwnerUnreachable,
    /// `BAD_ANSWER`: the owner answered with something that is not the API's envelope.
    BadAnswer,
    /// `CANCELLED`: the client cancelled the request.
    Cancelled,
}

impl ToolCode {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Api(c) => c.as_str(),
            Self::OtherApi(s) => s,
            Self::OwnerNotRunning => "OWNER_NOT_RUNNING",
            Self::OwnerUnreachable => "OWNER_UNREACHABLE",
            Self::BadAnswer => "BAD_ANSWER",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The code an envelope's `code` string names.
    fn from_envelope(code: &str) -> Self {
        Code::parse(code).map_or_else(|| Self::OtherApi(code.to_owned()), Self::Api)
    }
}

/// A failure a tool reports to the client as an MCP tool error (`isError`).
#[derive(Debug)]
pub struct ToolError {
    pub code: ToolCode,
    pub message: String,
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        Self::new(ToolCode::Api(e.code), e.message)
    }
}

impl ToolError {
    fn new(code: ToolCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    fn no_owner(where_: &str) -> Self {
        Self::new(
            ToolCode::OwnerNotRunning,
            format!(
                "no Akhrot owner is running for {where_}: ask the user to start it (`akhrot serve` or the Akhrot app)"
            ),
        )
    }
    fn bad_args(message: impl Into<String>) -> Self {
        Self::new(ToolCode::Api(Code::BadRequest), message)
    }
    fn into_result(self) -> CallToolResult {
        let code = self.code.as_str();
        let mut r = CallToolResult::error(vec![ContentBlock::text(format!(
            "{code}: {}",
            self.message
        ))]);
        r.structured_content = Some(json!({ "error": { "code": code, "message": self.message } }));
        r
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

impl AkhrotMcp {
    /// For `akhrot mcp`: the agent key given to the process, the owner found through `paths`.
    pub fn stdio(paths: Paths, key: String) -> Self {
        Self {
            owner: Owner::Dir(paths),
            key: Key::Fixed(Arc::new(Zeroizing::new(key))),
            http: Some(http_client()),
        }
    }

    /// For `/mcp`: each request's own key and connection, its calls run through `router` (the
    /// owner's router without `/mcp`) in-process. Stateless mode makes a server per request.
    pub fn http(router: axum::Router) -> Self {
        Self {
            // Never asked: the calls go through `router`, not over HTTP.
            owner: Owner::Url(String::new()),
            key: Key::FromRequest(router),
            http: None,
        }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, ToolError> {
        match &self.key {
            Key::Fixed(k) => Ok(Caller::Key(Zeroizing::new(k.as_str().to_owned()))),
            Key::FromRequest(router) => {
                let parts = ctx
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .ok_or_else(|| {
                        ToolError::new(
                            ToolCode::Api(Code::Unauthorized),
                            "no agent key on this request",
                        )
                    })?;
                let mut authorization = parts
                    .headers
                    .get(axum::http::header::AUTHORIZATION)
                    .cloned()
                    .ok_or_else(|| {
                        ToolError::new(
                            ToolCode::Api(Code::Unauthorized),
                            "no agent key on this request",
                        )
                    })?;
                authorization.set_sensitive(true);
                // The connection the request came on: the peer lookup names its process.
                let connect = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .cloned()
                    .ok_or_else(|| {
                        ToolError::new(
                            ToolCode::OwnerUnreachable,
                            "this request came on no connection Akhrot can name",
                        )
                    })?;
                Ok(Caller::Request {
                    router: router.clone(),
                    authorization,
                    host: parts.headers.get(axum::http::header::HOST).cloned(),
                    connect,
                })
            }
        }
    }

    /// Sends one request to the agent API: over HTTP for `akhrot mcp`, through the router as
    /// the caller's own request for `/mcp`. `path` holds the query too.
    async fn send(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ToolError> {
        // Percent-encoded as reqwest would (a space in a path is sent as %20).
        let url = url::Url::parse(&format!("http://127.0.0.1{path}"))
            .map_err(|_| ToolError::bad_args(format!("`{path}` is not a valid path")))?;
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        match caller {
            Caller::Key(key) => {
                let base = self.owner.base_url()?;
                let http = self.http.clone().unwrap_or_else(http_client);
                let mut req = http
                    .request(method, format!("{base}{target}"))
                    .headers(headers)
                    .bearer_auth(key.as_str());
                if let Some(b) = body {
                    req = req.body(b);
                }
                let resp = req.send().await.map_err(|e| self.unreachable(&base, &e))?;
                Ok(Reply {
                    status: resp.status().as_u16(),
                    headers: resp.headers().clone(),
                    body: ReplyBody::Http(resp),
                })
            }
            Caller::Request {
                router,
                authorization,
                host,
                connect,
            } => {
                use tower::ServiceExt;
                let mut headers = headers;
                let body = match body {
                    Some(b) => {
                        headers.insert(
                            axum::http::header::CONTENT_LENGTH,
                            HeaderValue::from(b.len()),
                        );
                        axum::body::Body::from(b)
                    }
                    None => axum::body::Body::empty(),
                };
                let mut req = axum::http::Request::new(body);
                *req.method_mut() = method;
                *req.uri_mut() = target
                    .parse()
                    .map_err(|_| ToolError::bad_args(format!("`{path}` is not a valid path")))?;
                *req.headers_mut() = headers;
                let h = req.headers_mut();
                h.insert(axum::http::header::AUTHORIZATION, authorization.clone());
                if let Some(host) = host {
                    h.insert(axum::http::header::HOST, host.clone());
                }
                req.extensions_mut().insert(*connect);
                let resp = match router.clone().oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                let (parts, body) = resp.into_parts();
                Ok(Reply {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body: ReplyBody::InProcess(body.into_data_stream()),
                })
            }
        }
    }

    /// One call to the agent API; `Ok` is the `data` of a success envelope.
    async fn api(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ToolError> {
        let mut headers = HeaderMap::new();
        let body = body.map(|b| {
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            b.to_string().into_bytes()
        });
        let reply = self.send(caller, method, path, headers, body).await?;
        let status = reply.status;
        let bytes = reply.bytes().await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ToolError::new(
                ToolCode::BadAnswer,
                format!("the owner answered HTTP {status} with a body that is not JSON"),
            )
        })?;
        envelope(v)
    }

    fn unreachable(&self, base: &str, e: &reqwest::Error) -> ToolError {
        if e.is_connect() {
            ToolError::no_owner(base)
        } else {
            ToolError::new(
                ToolCode::OwnerUnreachable,
                format!("cannot talk to the Akhrot owner at {base}: {e}"),
            )
        }
    }

    /// Runs `work` (a request that may wait for an approval); while it runs, reports this
    /// agent's pending prompts for `provider` to the client.
    async fn while_reporting<T>(
        &self,
        caller: &Caller,
        provider: &str,
        ctx: &RequestContext<RoleServer>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let progress = ctx.meta.get_progress_token();
        let log_level = ctx.meta.log_level();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset(); // the first poll after POLL: most requests never wait that long
        let mut told: Vec<String> = Vec::new();
        let mut last_progress: Option<tokio::time::Instant> = None;
        let mut step = 0u32;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    let Some(waiting) = self.pending_for(caller, provider).await else { continue };
                    let message = format!(
                        "waiting for the user to approve {} -> {} in Akhrot (tray / web UI / `akhrot approvals`)",
                        waiting.agent, provider
                    );
                    if !told.contains(&waiting.id) {
                        told.push(waiting.id.clone());
                        if log_level.is_none_or(|l| level_rank(l) <= level_rank(LoggingLevel::Notice)) {
                            let _ = ctx
                                .peer
                                .notify_logging_message(
                                    LoggingMessageNotificationParam::new(
                                        LoggingLevel::Notice,
                                        json!({ "message": message, "approvalId": waiting.id, "provider": provider }),
                                    )
                                    .with_logger("akhrot"),
                                )
                                .await;
                        }
                    }
                    let due = last_progress.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                    if let (Some(token), true) = (&progress, due) {
                        step += 1;
                        last_progress = Some(tokio::time::Instant::now());
                        send_progress(&ctx.peer, token, step, &message).await;
                    }
                }
            }
        }
    }

    /// This agent's oldest pending prompt for `provider`, if any.
    async fn pending_for(&self, caller: &Caller, provider: &str) -> Option<Pending> {
        let list = self
            .api(caller, Method::GET, "/ai/approvals", None)
            .await
            .ok()?;
        list.as_array()?
            .iter()
            .find(|a| a["provider"].as_str() == Some(provider))
            .map(|a| Pending {
                id: a["id"].as_str().unwrap_or_default().to_owned(),
                agent: a["agent"].as_str().unwrap_or("this agent").to_owned(),
            })
    }

    async fn run_tool(
        &self,
        name: &str,
        args: &Map<String, Value>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Value, ToolError> {
        let caller = self.caller(ctx)?;
        let key = &caller;
        match name {
            "list_connections" => {
                let NoArgs {} = parse_args(args)?;
                self.api(key, Method::GET, "/ai/context/summary", None)
                    .await
            }
            "describe" => {
                let a: DescribeArgs = parse_args(args)?;
                let provider = filled(a.provider, "provider")?;
                let mut path = format!("/ai/context/{}", enc(&provider));
                if let Some(s) = a.service {
                    path.push('/');
                    path.push_str(&enc(&s));
                }
                if let Some(a) = a.account {
                    path.push_str(&format!("?account={}", enc(&a)));
                }
                self.api(key, Method::GET, &path, None).await
            }
            "get_token" => {
                let a: TokenArgs = parse_args(args)?;
                let provider = filled(a.provider, "provider")?;
                let mut body = json!({ "provider": provider });
                for (f, v) in [("account", a.account), ("reason", a.reason)] {
                    if let Some(v) = v {
                        body[f] = json!(v);
                    }
                }
                let call = self.api(key, Method::POST, "/tokens/fetch", Some(&body));
                self.while_reporting(key, &provider, ctx, call).await
            }
            "start_connection" => {
                let a: StartArgs = parse_args(args)?;
                let provider = filled(a.provider, "provider")?;
                let mut body = json!({ "provider": provider });
                if let Some(a) = a.account {
                    body["account"] = json!(a);
                }
                if let Some(s) = a.scopes {
                    body["scopes"] = json!(s);
                }
                // Starting a session may wait for the user's approval, like a token.
                let call = self.api(key, Method::POST, "/oauth/sessions", Some(&body));
                let mut data = self.while_reporting(key, &provider, ctx, call).await?;
                data["next"] = json!(
                    "Send the user to `url` to approve access; then call check_connection with the sessionId until its status is `completed`."
                );
                Ok(data)
            }
            "check_connection" => {
                let a: CheckArgs = parse_args(args)?;
                let id = filled(a.session_id, "sessionId")?;
                self.api(
                    key,
                    Method::GET,
                    &format!("/oauth/sessions/{}", enc(&id)),
                    None,
                )
                .await
            }
            "call_api" => {
                let a: CallArgs = parse_args(args)?;
                let provider = filled(a.provider.clone(), "provider")?;
                let call = self.call_api(key, &provider, a);
                self.while_reporting(key, &provider, ctx, call).await
            }
            other => Err(ToolError::bad_args(format!("no tool named `{other}`"))),
        }
    }

    async fn call_api(
        &self,
        caller: &Caller,
        provider: &str,
        args: CallArgs,
    ) -> Result<Value, ToolError> {
        let method = filled(args.method, "method")?.to_ascii_uppercase();
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| ToolError::bad_args(format!("`{method}` is not an HTTP method")))?;
        let path = filled(args.path, "path")?;
        let path = path.trim_start_matches('/');
        // The proxy's own check, before anything is sent.
        let bare = path.split(['?', '#']).next().unwrap_or_default();
        check_path(&format!("/{bare}"))?;
        let mut url = format!("/proxy/{}/{}", enc(provider), path);
        if let Some(q) = args.query {
            let mut pairs = Vec::new();
            for (k, v) in q {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    _ => {
                        return Err(ToolError::bad_args(format!(
                            "query parameter `{k}` must be a string, number or boolean"
                        )));
                    }
                };
                pairs.push(format!("{}={}", enc(&k), enc(&v)));
            }
            if !pairs.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&pairs.join("&"));
            }
        }
        let mut req_headers = HeaderMap::new();
        let mut has_content_type = false;
        for (k, v) in args.headers.unwrap_or_default() {
            let lower = k.to_ascii_lowercase();
            if lower == "authorization" || lower.starts_with("x-akhrot-") {
                return Err(ToolError::bad_args(format!(
                    "header `{k}` is Akhrot's to set: the credential is injected for you"
                )));
            }
            has_content_type |= lower == "content-type";
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) else {
                return Err(ToolError::bad_args(format!(
                    "header `{k}` is not a valid HTTP header"
                )));
            };
            req_headers.append(name, value);
        }
        for (field, header, v) in [
            (
                "account",
                HeaderName::from_static("x-akhrot-account"),
                args.account,
            ),
            (
                "service",
                HeaderName::from_static("x-akhrot-service"),
                args.service,
            ),
            (
                "reason",
                HeaderName::from_static("x-akhrot-reason"),
                args.reason,
            ),
        ] {
            if let Some(v) = v {
                let value = HeaderValue::from_str(&v).map_err(|_| {
                    ToolError::bad_args(format!("`{field}` cannot be sent in an HTTP header"))
                })?;
                req_headers.insert(header, value);
            }
        }
        let body = match args.body {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.into_bytes()),
            Some(v) => {
                if !has_content_type {
                    req_headers.insert(
                        axum::http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                Some(v.to_string().into_bytes())
            }
        };
        let mut resp = self.send(caller, method, &url, req_headers, body).await?;
        let status = resp.status;
        let mut headers = Map::new();
        for name in KEPT_HEADERS {
            if let Some(v) = resp.headers.get(*name).and_then(|v| v.to_str().ok()) {
                headers.insert((*name).to_owned(), json!(v));
            }
        }
        for (name, v) in &resp.headers {
            if name.as_str().starts_with("x-ratelimit")
                && let Ok(v) = v.to_str()
            {
                headers.insert(name.as_str().to_owned(), json!(v));
            }
        }
        let mut body: Vec<u8> = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = resp.chunk().await? {
            total += chunk.len();
            let room = MAX_BODY_TEXT.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        // Akhrot's own refusals (denied, not connected, forbidden host…) come in its envelope and
        // without `X-Akhrot-Upstream`, which marks every answer that came from the provider.
        if !headers.contains_key("x-akhrot-upstream")
            && let Some(e) = own_error(&headers, &body)
        {
            return Err(e);
        }
        let truncated = total > body.len();
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut out = json!({ "status": status, "headers": headers, "body": text });
        if truncated {
            out["truncated"] = json!(true);
            out["note"] = json!(format!(
                "the body was {total} bytes; only the first {} are shown. Ask for less (pagination, fields, ranges) to see the rest.",
                body.len()
            ));
        }
        Ok(out)
    }
}

struct Pending {
    id: String,
    agent: String,
}

fn level_rank(l: LoggingLevel) -> u8 {
    match l {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

async fn send_progress(peer: &Peer<RoleServer>, token: &ProgressToken, step: u32, message: &str) {
    let _ = peer
        .notify_progress(
            ProgressNotificationParam::new(token.clone(), f64::from(step)).with_message(message),
        )
        .await;
}

/// The agent API's envelope: `data` on success, the code and message on error.
fn envelope(v: Value) -> Result<Value, ToolError> {
    if v["status"] == "success" {
        return Ok(v["data"].clone());
    }
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or("the owner refused the request");
    match v["error"]["code"].as_str() {
        Some(code) => Err(ToolError::new(ToolCode::from_envelope(code), message)),
        None => Err(ToolError::new(
            ToolCode::BadAnswer,
            format!("the owner answered without an error code: {message}"),
        )),
    }
}

/// Akhrot's own error answer on a proxy call: its envelope, exactly.
fn own_error(headers: &Map<String, Value>, body: &[u8]) -> Option<ToolError> {
    let json_type = headers
        .get("content-type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("application/json"));
    if !json_type || body.len() > 8 * 1024 {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v["error"]["code"].as_str()?;
    let is_ours = v["status"] == "error"
        && v.as_object().is_some_and(|o| o.len() == 2)
        && !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
    is_ours.then(|| envelope(v).err()).flatten()
}

/// A tool's arguments as its typed struct; a missing or mistyped argument is a `BAD_REQUEST`.
fn parse_args<T: serde::de::DeserializeOwned>(args: &Map<String, Value>) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(args.clone()))
        .map_err(|e| ToolError::bad_args(format!("bad arguments: {e}")))
}

/// A required string argument, not empty.
fn filled(v: String, name: &str) -> Result<String, ToolError> {
    if v.is_empty() {
        return Err(ToolError::bad_args(format!("missing argument `{name}`")));
    }
    Ok(v)
}

/// Percent-encodes a path segment or query value.
use akhrot_core::text::pct_encode as enc;

const PROVIDER: &str = "Provider code, e.g. github, google, openai (list_connections shows them)";
const ACCOUNT: &str =
    "Which connected account, when there are several (default: the only or first one)";
const REASON: &str = "Why you need it; shown to the user in the approval prompt";

/// `list_connections` takes no arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct NoArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct DescribeArgs {
    #[schemars(description = PROVIDER)]
    provider: String,
    #[schemars(description = "A service code of that provider, e.g. gmail for google")]
    service: Option<String>,
    #[schemars(description = ACCOUNT)]
    account: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct TokenArgs {
    #[schemars(description = PROVIDER)]
    provider: String,
    #[schemars(description = ACCOUNT)]
    account: Option<String>,
    #[schemars(description = REASON)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct StartArgs {
    #[schemars(description = PROVIDER)]
    provider: String,
    #[schemars(description = "Extra scopes beyond the catalog's defaults")]
    scopes: Option<Vec<String>>,
    #[schemars(description = "A label to store the connection under")]
    account: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct CheckArgs {
    #[serde(rename = "sessionId")]
    #[schemars(description = "The sessionId start_connection returned")]
    session_id: String,
}

// The value of a query parameter (for the schema; the value is checked when the URL is built).
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", untagged)]
#[allow(dead_code)]
enum QueryValue {
    String(String),
    Number(f64),
    Bool(bool),
}

// The HTTP methods `call_api` forwards (for the schema; lower case is accepted too).
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[allow(dead_code, clippy::upper_case_acronyms)]
enum HttpMethod {
    GET,
    POST,
    PUT,
    PATCH,
    DELETE,
    HEAD,
    OPTIONS,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct CallArgs {
    #[schemars(description = PROVIDER)]
    provider: String,
    #[schemars(description = "HTTP method", with = "HttpMethod")]
    method: String,
    #[schemars(description = "Path under the service's base URL, e.g. /user/repos")]
    path: String,
    #[schemars(
        description = "Query parameters",
        with = "Option<std::collections::BTreeMap<String, QueryValue>>"
    )]
    query: Option<Map<String, Value>>,
    #[schemars(
        description = "Extra request headers (not Authorization: Akhrot injects the credential)"
    )]
    headers: Option<std::collections::BTreeMap<String, String>>,
    #[schemars(description = "Request body: a string is sent as is, anything else as JSON")]
    body: Option<Value>,
    #[schemars(description = ACCOUNT)]
    account: Option<String>,
    #[schemars(description = "Which of the provider's services (base URL), when it has several")]
    service: Option<String>,
    #[schemars(description = REASON)]
    reason: Option<String>,
}

/// A tool's input schema, derived from its argument type.
fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>().unwrap_or_else(|_| {
        let mut empty = JsonObject::new();
        empty.insert("type".into(), json!("object"));
        Arc::new(empty)
    })
}

/// The tools, with their input schemas.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "list_connections",
            "Which providers the user has connected (with their services and accounts) and which others are available. Start here.",
            rmcp::handler::server::common::schema_for_empty_input(),
        ),
        Tool::new(
            "describe",
            "How to use one provider, or one of its services: base URLs, docs, scopes, how the credential goes on a request, example calls, how to connect it.",
            schema::<DescribeArgs>(),
        ),
        Tool::new(
            "get_token",
            "A fresh access token (or API key) for a connected provider; refreshed first when it has expired. Telegram: `accessToken` is the session as the user added it, `sessionTelethon` and `sessionGramjs` the same session for each library. The user may be asked to approve. Prefer call_api, which never shows you the credential.",
            schema::<TokenArgs>(),
        ),
        Tool::new(
            "start_connection",
            "Start connecting an OAuth provider: returns the consent URL to give the user and a sessionId for check_connection. API-key providers are added by the user (`akhrot add <provider>`).",
            schema::<StartArgs>(),
        ),
        Tool::new(
            "check_connection",
            "The state of a connection started with start_connection: pending, completed (with the account), expired or failed.",
            schema::<CheckArgs>(),
        ),
        Tool::new(
            "call_api",
            "Call a connected provider's API through Akhrot's proxy: Akhrot adds the credential, you never see it. `path` is relative to the provider service's base URL (describe shows it). Returns the HTTP status, selected headers and the body as text (very large bodies are cut, with a note).",
            schema::<CallArgs>(),
        ),
    ]
}

const INSTRUCTIONS: &str = "Akhrot is the user's local credential broker. Call list_connections first; \
describe a provider for its base URLs and docs; call_api makes an API call with the credential \
added for you (preferred: you never hold the token); get_token returns the token itself when a \
tool of yours needs it. The user may be asked to approve a request: the call then waits, and \
Akhrot reports that it is waiting. Errors carry Akhrot's code (e.g. INTEGRATION_NOT_FOUND: the \
provider is not connected; start_connection for OAuth providers, or ask the user to run \
`akhrot add <provider>` for API keys).";

impl ServerHandler for AkhrotMcp {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("akhrot", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !tools().iter().any(|t| t.name == request.name) {
            return Err(ErrorData::invalid_params(
                format!("no tool named `{}`", request.name),
                None,
            ));
        }
        let args = request.arguments.unwrap_or_default();
        // A cancelled request drops its call to the owner: a prompt it was waiting on is
        // withdrawn, as for any agent that hangs up.
        let outcome = tokio::select! {
            r = self.run_tool(&request.name, &args, &context) => r,
            _ = context.ct.cancelled() => Err(ToolError::new(ToolCode::Cancelled, "the client cancelled this request")),
        };
        let result = match outcome {
            Ok(v) => CallToolResult::structured(v),
            Err(e) => e.into_result(),
        };
        Ok(result.into())
    }
}

/// `akhrot mcp`: serves MCP on stdin/stdout until the client closes it.
pub async fn serve_stdio(paths: Paths, key: String) -> std::io::Result<()> {
    use rmcp::ServiceExt;
    let running = AkhrotMcp::stdio(paths, key)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

/// The Streamable HTTP endpoint (`/mcp`), stateless: every POST carries its own key. The
/// listener's hygiene layer has already checked Host and Origin, and [`require_agent`] the key.
pub fn http_service(
    state: &crate::state::AppState,
    router: axum::Router,
) -> rmcp::transport::StreamableHttpService<
    AkhrotMcp,
    rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
> {
    use rmcp::transport::StreamableHttpServerConfig;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .disable_allowed_hosts()
        .with_max_request_body_bytes(MAX_REQUEST)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    let cancel = config.cancellation_token.clone();
    let mut closing = state.closing.subscribe();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        // Open streams end when the owner shuts down, so they do not hold shutdown open.
        rt.spawn(async move {
            let _ = closing.wait_for(|c| *c).await;
            cancel.cancel();
        });
    }
    rmcp::transport::StreamableHttpService::new(
        move || Ok(AkhrotMcp::http(router.clone())),
        Default::default(),
        config,
    )
}

/// Largest MCP request body accepted on `/mcp` (a `call_api` body rides inside it).
pub const MAX_REQUEST: usize = 1024 * 1024;

/// `/mcp` needs a valid agent key (within its rate limit) before the MCP layer sees anything.
pub async fn require_agent(
    axum::extract::State(state): axum::extract::State<Arc<crate::state::AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let (mut parts, body) = req.into_parts();
    match crate::guard::AgentAuth::from_request_parts(&mut parts, &state).await {
        Err(e) => e.into_response(),
        Ok(_) => {
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_schemas_are_objects_with_known_required_fields() {
        let tools = tools();
        assert_eq!(tools.len(), 6);
        for t in &tools {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            let props = t.input_schema["properties"].as_object().unwrap();
            for r in t
                .input_schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(props.contains_key(r.as_str().unwrap()), "{}: {r}", t.name);
            }
        }
    }

    #[test]
    fn own_errors_are_told_from_provider_answers() {
        let h = |t: &str| {
            let mut m = Map::new();
            m.insert("content-type".into(), json!(t));
            m
        };
        let ours = br#"{"status":"error","error":{"code":"APPROVAL_DENIED","message":"no"}}"#;
        let e = own_error(&h("application/json"), ours).unwrap();
        assert_eq!(
            (&e.code, e.message.as_str()),
            (&ToolCode::Api(Code::ApprovalDenied), "no")
        );
        assert!(own_error(&h("text/plain"), ours).is_none());
        // A provider's own error shape is the provider's answer, passed back as such.
        let theirs = br#"{"error":{"code":"not_found","message":"no such repo"}}"#;
        assert!(own_error(&h("application/json"), theirs).is_none());
        let extra = br#"{"status":"error","error":{"code":"X"},"request_id":"1"}"#;
        assert!(own_error(&h("application/json"), extra).is_none());
    }

    #[test]
    fn arguments() {
        let mut a = Map::new();
        a.insert("provider".into(), json!("github"));
        a.insert("reason".into(), json!(3));
        let bad = ToolCode::Api(Code::BadRequest);
        assert_eq!(parse_args::<TokenArgs>(&a).unwrap_err().code, bad);
        a.insert("reason".into(), json!("why"));
        let t: TokenArgs = parse_args(&a).unwrap();
        assert_eq!(
            (t.provider.as_str(), t.reason.as_deref()),
            ("github", Some("why"))
        );
        assert_eq!(parse_args::<CheckArgs>(&a).unwrap_err().code, bad);
        assert_eq!(filled(String::new(), "x").unwrap_err().code, bad);
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn schemas_keep_the_argument_names_and_descriptions() {
        let tools = tools();
        let call = tools.iter().find(|t| t.name == "call_api").unwrap();
        let props = call.input_schema["properties"].as_object().unwrap();
        let names: Vec<&str> = props.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "provider", "method", "path", "query", "headers", "body", "account", "service",
                "reason"
            ]
        );
        assert_eq!(
            call.input_schema["required"],
            json!(["provider", "method", "path"])
        );
        assert_eq!(props["provider"]["description"], PROVIDER);
        let check = tools.iter().find(|t| t.name == "check_connection").unwrap();
        assert_eq!(check.input_schema["required"], json!(["sessionId"]));
    }

    #[test]
    fn envelope_codes_are_the_apis() {
        let e = envelope(
            json!({"status":"error","error":{"code":"INTEGRATION_NOT_FOUND","message":"m"}}),
        )
        .unwrap_err();
        assert_eq!(e.code, ToolCode::Api(Code::IntegrationNotFound));
        let e = envelope(json!({"status":"error","error":{"code":"NEWER_CODE","message":"m"}}))
            .unwrap_err();
        assert_eq!(e.code.as_str(), "NEWER_CODE");
        let e = envelope(json!({"status":"error"})).unwrap_err();
        assert_eq!(e.code, ToolCode::BadAnswer);
    }
}
