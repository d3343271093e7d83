//! The agent-facing API: the skill document, context, and token hand-out.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use akhrot_core::audit::{Action, Entry, Outcome};
use akhrot_core::catalog::{AuthType, Provider};
use akhrot_core::unix_to_rfc3339;
use akhrot_core::vault::ConnectionInfo;

use crate::error::{ApiError, Code, Envelope, ErrorEnvelope, printable, success_typed};
use crate::guard::{AccountQuery, AgentAuth, ApiPath, ApiQuery, JsonBody, string_field};
use crate::render;
use crate::state::AppState;
use crate::token::{AuthKind, TELEGRAM_SESSION_FIELDS, TokenAnswer};

#[utoipa::path(
    get,
    path = "/ai/skill",
    tag = "context",
    operation_id = "getSkill",
    summary = "The skill document",
    description = "Markdown that tells an agent how to use this instance, with this instance's base URL in every example. No authentication.",
    responses(
        (status = 200, description = "The skill document.", content_type = "text/markdown; charset=utf-8", body = String),
    )
)]
pub async fn skill(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = state.skill_md.clone().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    resp
}

/// A connected provider in the summary.
#[derive(Serialize, ToSchema)]
pub struct ConnectedProvider {
    /// The provider's code.
    pub provider: String,
    /// The codes of its services.
    pub services: Vec<String>,
    /// The labels of its connected accounts.
    pub accounts: Vec<String>,
}

/// Which providers are connected, and the codes of the others.
#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub connected: Vec<ConnectedProvider>,
    /// The codes of every catalog provider that is not connected.
    pub available: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/ai/context/summary",
    tag = "context",
    operation_id = "getSummary",
    security(("agentKey" = [])),
    summary = "What is connected",
    description = "The connected providers (with their services and accounts) and the codes of every other catalog provider. About 500 bytes for a few connections.",
    responses(
        (status = 200, description = "The summary.", body = Envelope<Summary>),
    )
)]
pub async fn summary(State(state): State<Arc<AppState>>, AgentAuth(_): AgentAuth) -> Response {
    let conns = state.vault.list_connections();
    let mut connected = Vec::new();
    let mut available = Vec::new();
    for p in state.catalog.iter() {
        let accounts: Vec<String> = conns
            .iter()
            .filter(|c| c.provider == p.code)
            .map(|c| c.account.clone())
            .collect();
        if accounts.is_empty() {
            available.push(p.code.clone());
        } else {
            connected.push(ConnectedProvider {
                provider: p.code.clone(),
                services: p.services.iter().map(|s| s.code.clone()).collect(),
                accounts,
            });
        }
    }
    success_typed(Summary {
        connected,
        available,
    })
}

/// Non-secret values that templates may show: a connection's (domain, account SID, cloud id,
/// Mailgun's region host), the OAuth client's settings (Microsoft's tenant, GitLab's server) and,
/// for an OAuth provider, the client's `clientId` (public; Twitch's Helix wants it on every call).
fn known_values(
    state: &AppState,
    p: &Provider,
    conn: Option<&ConnectionInfo>,
) -> BTreeMap<String, String> {
    let public = conn.map(|c| c.public_fields.clone()).unwrap_or_default();
    let settings = if p.settings.is_empty() {
        BTreeMap::new()
    } else {
        state.vault.client_settings(&p.code).unwrap_or_default()
    };
    let mut known = p.placeholder_values(&public, &settings);
    if p.auth == AuthType::Oauth2
        && let Ok(Some(client)) = state.vault.oauth_client_info(&p.code)
    {
        known.insert("clientId".into(), client.client_id);
    }
    known
}

/// One connected account of a provider.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    /// The account's label (e.g. an email address, or `default`).
    pub account: String,
    /// `connected`, or `needs_reconnect` when the provider refused the refresh token (or, for a provider that validates tokens, the access token).
    #[schema(value_type = String)]
    pub status: akhrot_core::vault::ConnectionStatus,
    pub scopes: Vec<String>,
    /// When the access token expires (RFC 3339), when known.
    pub expires_at: Option<String>,
}

impl From<&ConnectionInfo> for AccountInfo {
    fn from(c: &ConnectionInfo) -> Self {
        Self {
            account: c.account.clone(),
            status: c.status,
            scopes: c.scopes.clone(),
            expires_at: c.expires_at.map(unix_to_rfc3339),
        }
    }
}

/// A service of a provider, in the provider's context.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    pub code: String,
    pub name: String,
    pub base_url: Option<String>,
    pub docs_url: Option<String>,
    /// Scopes the service needs.
    pub scopes: Vec<String>,
}

/// A value an API-key or Telegram connection holds.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldInfo {
    /// The field's name (for `akhrot add`, and in the token answer).
    pub name: String,
    pub label: String,
    pub secret: bool,
    pub optional: bool,
    /// Where the token answer carries it: `accessToken`, or its own name.
    pub returned_as: String,
    /// Other token-answer fields that carry the same value in another format (Telegram's
    /// session: `sessionTelethon` and `sessionGramjs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_returned_as: Vec<String>,
    pub hint: Option<String>,
}

/// The provider body `{"provider": …}`.
#[derive(Serialize, ToSchema)]
pub struct ProviderBody {
    pub provider: String,
}

/// How an agent starts an OAuth connection: `POST /oauth/sessions`.
#[derive(Serialize, ToSchema)]
pub struct OAuthConnect {
    /// Always `POST`.
    pub method: &'static str,
    pub url: String,
    pub body: ProviderBody,
    pub curl: String,
    pub note: &'static str,
}

/// API-key and Telegram connections are added by the user, not by agents.
#[derive(Serialize, ToSchema)]
pub struct ManualConnect {
    /// The command the user runs.
    pub command: String,
    pub note: String,
}

/// How to connect the provider.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Connect {
    OAuth(OAuthConnect),
    Manual(ManualConnect),
}

fn connect_info(state: &AppState, p: &Provider) -> Connect {
    match p.auth {
        AuthType::Oauth2 => {
            let url = format!("{}/oauth/sessions", state.base_url);
            let body = ProviderBody {
                provider: p.code.clone(),
            };
            let body_json = serde_json::to_string(&body).unwrap_or_default();
            Connect::OAuth(OAuthConnect {
                method: "POST",
                curl: format!(
                    "curl -s -X POST \"{url}\" -H \"Authorization: Bearer $AKHROT_API_KEY\" -H \"Content-Type: application/json\" -d '{body_json}'"
                ),
                url,
                body,
                note: "Send the user to the returned `url` to approve; then poll GET /oauth/sessions/{sessionId} until `completed`.",
            })
        }
        AuthType::ApiKey | AuthType::Mtproto => Connect::Manual(ManualConnect {
            command: format!("akhrot add {}", p.code),
            note: format!(
                "{} credentials are added by the user, not by agents: ask the user to run `akhrot add {}` (or use Connections in the Akhrot window){}.",
                p.name,
                p.code,
                p.console_url
                    .as_deref()
                    .map(|u| format!("; they get the values at {u}"))
                    .unwrap_or_default()
            ),
        }),
    }
}

/// One provider, connected or not.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderContext {
    pub provider: String,
    pub name: String,
    pub description: String,
    pub auth_type: AuthKind,
    pub connected: bool,
    pub accounts: Vec<AccountInfo>,
    pub docs_url: Option<String>,
    pub services: Vec<ServiceInfo>,
    pub usage: render::Usage,
    pub get_token: render::GetToken,
    /// How to call the provider's API through `/proxy/…` (not for MTProto or Digest providers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<render::ProxyInfo>,
    /// OAuth providers: the default scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// OAuth providers: whether the user has set this provider's OAuth client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_configured: Option<bool>,
    /// API-key and Telegram providers: the values a connection holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldInfo>>,
    /// How to connect (OAuth providers, and providers not connected yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Connect>,
}

#[utoipa::path(
    get,
    path = "/ai/context/{provider}",
    tag = "context",
    operation_id = "getProviderContext",
    security(("agentKey" = [])),
    summary = "One provider",
    description = "One catalog provider, connected or not: auth type, accounts, fields, services with base URLs and docs, how the credential goes on a request, and how to get a token.",
    params(
        ("provider" = String, Path, description = "A catalog provider code, e.g. `github`.", example = "github"),
        AccountQuery,
    ),
    responses(
        (status = 200, description = "The provider.", body = Envelope<ProviderContext>),
        (status = 400, description = "`BAD_REQUEST`: a malformed path or query, or an `account` over 200 characters.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider code in the catalog.", body = ErrorEnvelope),
    )
)]
pub async fn provider_context(
    State(state): State<Arc<AppState>>,
    AgentAuth(_): AgentAuth,
    ApiPath(code): ApiPath<String>,
    ApiQuery(q): ApiQuery<AccountQuery>,
) -> Result<Response, ApiError> {
    let p = state.provider(&code)?;
    let account = q.account()?;
    let conns: Vec<ConnectionInfo> = state
        .vault
        .list_connections()
        .into_iter()
        .filter(|c| c.provider == p.code)
        .collect();
    let chosen = state.vault.find_connection(&p.code, account);
    let known = known_values(&state, &p, chosen.as_ref());
    let services = p
        .services
        .iter()
        .map(|s| ServiceInfo {
            code: s.code.clone(),
            name: s.name.clone(),
            base_url: render::base_url(s, &known),
            docs_url: s.docs_url.clone(),
            scopes: s.scopes.clone(),
        })
        .collect();
    let oauth = p.auth == AuthType::Oauth2;
    let out = ProviderContext {
        provider: p.code.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        auth_type: p.auth.into(),
        connected: !conns.is_empty(),
        accounts: conns.iter().map(AccountInfo::from).collect(),
        docs_url: p.docs_url.clone(),
        services,
        usage: render::usage(&p, &known),
        get_token: render::get_token(&state.base_url, &p.code, account),
        proxy: (p.auth != AuthType::Mtproto && p.inject.digest.is_none())
            .then(|| render::proxy(&state.base_url, &p, None)),
        scopes: oauth.then(|| p.scopes.clone()),
        client_configured: if oauth {
            Some(state.vault.oauth_client_info(&p.code)?.is_some())
        } else {
            None
        },
        fields: (!oauth).then(|| {
            p.fields
                .iter()
                .map(|f| FieldInfo {
                    name: f.name.clone(),
                    label: f.label.clone(),
                    secret: f.secret,
                    optional: f.optional,
                    returned_as: if f.token {
                        "accessToken".to_string()
                    } else {
                        f.name.clone()
                    },
                    also_returned_as: if f.token && p.auth == AuthType::Mtproto {
                        TELEGRAM_SESSION_FIELDS.map(String::from).to_vec()
                    } else {
                        Vec::new()
                    },
                    hint: f.hint.clone(),
                })
                .collect()
        }),
        connect: (conns.is_empty() || oauth).then(|| connect_info(&state, &p)),
    };
    Ok(success_typed(out))
}

/// One service of a provider.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceContext {
    pub provider: String,
    pub service: String,
    pub name: String,
    pub connected: bool,
    /// The account the examples are filled in for, when connected.
    pub account: Option<String>,
    pub base_url: Option<String>,
    pub docs_url: Option<String>,
    /// Scopes the service needs.
    pub scopes: Vec<String>,
    /// Headers every call sends, with `$ACCESS_TOKEN`-style placeholders.
    pub headers: BTreeMap<String, String>,
    pub usage: render::Usage,
    pub examples: Vec<render::ExampleCall>,
    pub get_token: render::GetToken,
    /// How to call this service through `/proxy/…` (not for MTProto or Digest providers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<render::ProxyInfo>,
}

#[utoipa::path(
    get,
    path = "/ai/context/{provider}/{service}",
    tag = "context",
    operation_id = "getServiceContext",
    security(("agentKey" = [])),
    summary = "One service of a provider",
    description = "Base URL, docs URL, the scopes it needs, example calls each with a ready `curl`, and how to get a token.",
    params(
        ("provider" = String, Path, description = "A catalog provider code, e.g. `google`.", example = "github"),
        ("service" = String, Path, description = "One of the provider's service codes, e.g. `gmail`.", example = "repos"),
        AccountQuery,
    ),
    responses(
        (status = 200, description = "The service.", body = Envelope<ServiceContext>),
        (status = 400, description = "`BAD_REQUEST`: a malformed path or query, or an `account` over 200 characters.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider; `NOT_FOUND`: the provider has no such service.", body = ErrorEnvelope),
    )
)]
pub async fn service_context(
    State(state): State<Arc<AppState>>,
    AgentAuth(_): AgentAuth,
    ApiPath((code, service)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<AccountQuery>,
) -> Result<Response, ApiError> {
    let p = state.provider(&code)?;
    let s = p.service(&service).ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            format!(
                "{} has no service `{}`; its services are: {}",
                p.name,
                printable(&service),
                p.services
                    .iter()
                    .map(|s| s.code.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let account = q.account()?;
    let chosen = state.vault.find_connection(&p.code, account);
    let known = known_values(&state, &p, chosen.as_ref());
    let mut headers: BTreeMap<String, String> = p
        .inject
        .effective_headers()
        .iter()
        .map(|(k, v)| (k.clone(), render::fill(v, &known)))
        .collect();
    headers.extend(
        s.headers
            .iter()
            .map(|(k, v)| (k.clone(), render::fill(v, &known))),
    );
    let proxied = p.auth != AuthType::Mtproto && p.inject.digest.is_none() && s.base_url.is_some();
    let multi = render::has_several_bases(&p);
    let out = ServiceContext {
        provider: p.code.clone(),
        service: s.code.clone(),
        name: s.name.clone(),
        connected: chosen.is_some(),
        account: chosen.as_ref().map(|c| c.account.clone()),
        base_url: render::base_url(s, &known),
        docs_url: s.docs_url.clone(),
        scopes: s.scopes.clone(),
        headers,
        usage: render::usage(&p, &known),
        examples: s
            .examples
            .iter()
            .map(|e| {
                let mut call = render::example(&p, s, e, &known);
                if proxied {
                    call.proxy_curl =
                        Some(render::proxy_curl(&state.base_url, &p, s, e, multi, &known));
                }
                call
            })
            .collect(),
        get_token: render::get_token(&state.base_url, &p.code, account),
        proxy: proxied.then(|| render::proxy(&state.base_url, &p, Some(s))),
    };
    Ok(success_typed(out))
}

/// What token an agent asks for.
// Fields are read as any JSON value so a wrong type is a clear `BAD_REQUEST` that does not echo
// it; the schema says what is accepted.
#[derive(Deserialize, ToSchema)]
pub struct FetchRequest {
    /// The provider's code, e.g. `openai`.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64, example = "openai")]
    provider: Option<Value>,
    /// Which connected account, when there are several.
    #[schema(value_type = Option<String>, max_length = 200)]
    account: Option<Value>,
    /// Why the agent wants the token: shown to the user if they are asked to approve.
    #[schema(value_type = Option<String>, max_length = 500)]
    reason: Option<Value>,
}

#[utoipa::path(
    post,
    path = "/tokens/fetch",
    tag = "tokens",
    operation_id = "fetchToken",
    security(("agentKey" = [])),
    summary = "Get a fresh token",
    description = "Hands out the provider's credential under the user's policy for this agent: at once (`allow`), after the user approves (`ask`, the default: the request waits up to the approval timeout), or never (`deny`). Expired OAuth tokens are refreshed first.",
    request_body(content = FetchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The token.", body = Envelope<TokenAnswer>),
        (status = 400, description = "`BAD_REQUEST`: malformed JSON, a missing `provider`, a field of the wrong type or too long, or a body that is not `application/json`. `TOKEN_EXPIRED`: the token expired and cannot be refreshed; the user must reconnect.", body = ErrorEnvelope),
        (status = 403, description = "`APPROVAL_DENIED`: the user, a `deny` policy, or \"pause all agents\" refused. `FORBIDDEN_HOST`: see the common answers.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider. `INTEGRATION_NOT_FOUND`: the provider (or that account) is not connected.", body = ErrorEnvelope),
        (status = 408, description = "`APPROVAL_TIMEOUT`: nobody answered the approval prompt in time.", body = ErrorEnvelope),
        (status = 409, description = "`VAULT_INTEGRITY`: the stored credential failed authentication (the vault was changed outside Akhrot); the user must reconnect.", body = ErrorEnvelope),
        (status = 413, description = "`BAD_REQUEST`: the body is larger than 64 KiB.", body = ErrorEnvelope),
        (status = 429, description = "`RATE_LIMITED`: too many requests from this agent key, or three approval prompts already waiting.", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 502, description = "`PROVIDER_ERROR`: the provider's token endpoint failed in a way that may pass (5xx, timeout).", body = ErrorEnvelope),
    )
)]
pub async fn fetch_token(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer_addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    AgentAuth(agent): AgentAuth,
    JsonBody(req): JsonBody<FetchRequest>,
) -> Result<Response, ApiError> {
    let provider = string_field(req.provider, "provider", 64)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing field `provider`, e.g. {\"provider\":\"openai\"}")
        })?;
    let account = string_field(req.account, "account", 200)?;
    let reason = string_field(req.reason, "reason", 500)?;
    let p = state.provider(&provider)?;
    let audit = |outcome: Outcome| {
        Entry::new(Action::Token, outcome)
            .agent(&agent.id, &agent.name)
            .provider(&p.code)
            .account(account.as_deref())
    };
    let peer = crate::access::authorize(
        &state,
        &agent,
        &p,
        account.as_deref(),
        reason,
        None,
        peer_addr,
    )
    .await?
    .peer;
    let (conn, creds) = match state.broker.fresh_credentials(&p, account.as_deref()).await {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::from(e);
            state
                .audit
                .record(audit(Outcome::Error).detail(e.code.as_str()).peer(peer));
            return Err(e);
        }
    };
    match peer {
        None => state
            .audit
            .record_handout(&agent.id, &agent.name, &p.code, &conn.account),
        Some(_) => state.audit.record(
            Entry::new(Action::Token, Outcome::HandedOut)
                .agent(&agent.id, &agent.name)
                .provider(&p.code)
                .account(Some(&conn.account))
                .peer(peer),
        ),
    }
    Ok(crate::error::success_typed(TokenAnswer::new(
        &p, &conn, &creds,
    )))
}

/// One of the calling agent's own requests waiting for the user's answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnApproval {
    /// The prompt's id (the user answers it; agents cannot).
    pub id: String,
    /// What waits: `token` (a token hand-out), `proxy` (a proxied call) or `connect` (a consent
    /// session, `POST /oauth/sessions`).
    #[schema(value_type = String, example = "token")]
    pub kind: akhrot_core::approvals::AskKind,
    /// The agent's name (the key's name), as the prompt shows it.
    pub agent: String,
    pub provider: String,
    /// The account asked for (empty when none was named).
    pub account: String,
    /// For a proxied call: its method and URL, e.g. `GET api.github.com/user`.
    pub request: Option<String>,
    /// The `reason` the agent gave.
    pub reason: Option<String>,
    /// When the prompt appeared (RFC 3339).
    pub created_at: String,
    /// When it times out (RFC 3339): the waiting request then gets `APPROVAL_TIMEOUT`.
    pub expires_at: String,
}

#[utoipa::path(
    get,
    path = "/ai/approvals",
    tag = "tokens",
    operation_id = "listOwnApprovals",
    security(("agentKey" = [])),
    summary = "This agent's requests waiting for the user",
    description = "The calling agent's own approval prompts that the user has not answered yet (never another agent's), so it can tell its user that an answer is awaited. Answering is for the user only.",
    responses(
        (status = 200, description = "The waiting prompts.", body = Envelope<Vec<OwnApproval>>),
    )
)]
/// `GET /ai/approvals`: the calling agent's own prompts waiting for the user (never another
/// agent's), so a client can tell its user that an answer is awaited. Answering stays admin-only.
pub async fn own_approvals(
    State(state): State<Arc<AppState>>,
    AgentAuth(agent): AgentAuth,
) -> Response {
    let list: Vec<OwnApproval> = state
        .approvals
        .pending()
        .into_iter()
        .filter(|p| p.ask.agent_id == agent.id)
        .map(|p| OwnApproval {
            id: p.id,
            kind: p.ask.kind,
            agent: p.ask.agent,
            provider: p.ask.provider,
            account: p.ask.account,
            request: p.ask.request,
            reason: p.ask.reason,
            created_at: unix_to_rfc3339(p.created_at),
            expires_at: unix_to_rfc3339(p.expires_at),
        })
        .collect();
    success_typed(list)
}
