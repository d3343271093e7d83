//! Admin routes: only the user's own CLI and UI hold the credential they need.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;

// axum's extractors with their rejections in the JSON envelope.
use crate::guard::{ApiPath as Path, ApiQuery as Query};
use axum::response::Response;

use akhrot_core::catalog::Provider;

use akhrot_core::audit::{Action, Entry, Filter, Outcome};
use akhrot_core::vault::{ANY_PROVIDER, Mode};

use crate::actions;
use crate::consent::{StartSession, start_for_person};
use crate::error::{ApiError, Code, Envelope, ErrorEnvelope, printable, success_typed};
use crate::guard::{AccountQuery, AdminAuth, JsonBody};
use crate::models::admin::{
    AddConnection, AdminToken, AgentCounts, AgentKey, AnswerApproval, Approval, ApprovalAnswered,
    AuditEntry, AuditQuery, CatalogStatus, ClientInfo, ClientSet, ClientSetting, Connection,
    ConnectionAdded, ConnectionRemoved, CreateKey, KeyCreated, Paused, ProviderField, ProviderInfo,
    ServerStatus, Session, SetClient, SetPause, SetPolicy, Status, StatusConnection, VaultStatus,
};
use crate::state::AppState;
use crate::token::TokenAnswer;

#[utoipa::path(
    get,
    path = "/admin/status",
    tag = "admin",
    operation_id = "adminStatus",
    security(("adminCredential" = [])),
    summary = "The owner, the vault and what it holds",
    description = "The owner (version, pid, address, limits), whether agents are paused, the waiting prompts, the vault, the connections, how many agent keys, and the catalog with any `providers.d` problems.",
    responses(
        (status = 200, description = "The status.", body = Envelope<Status>),
    )
)]
pub async fn status(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    let connections: Vec<StatusConnection> = state
        .vault
        .list_connections()
        .into_iter()
        .map(|c| StatusConnection {
            provider_name: state.catalog.get(&c.provider).map(|p| p.name.clone()),
            connection: c.into(),
        })
        .collect();
    let agents = state.vault.list_agents();
    success_typed(Status {
        server: ServerStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            port: state.port,
            base_url: state.base_url.clone(),
            started_at: state.started_at.clone(),
            rate_limit_per_minute: state.limiter.per_minute(),
            approval_timeout_secs: state.approvals.timeout().as_secs(),
        },
        paused: actions::is_paused(&state),
        pending_approvals: pending(&state),
        vault: VaultStatus {
            path: state.vault.path().to_string_lossy().into_owned(),
            vault_id: state.vault.vault_id().to_owned(),
            key_source: VaultStatus::key_source_name(state.vault.key_source()).to_owned(),
        },
        connections,
        agents: AgentCounts {
            total: agents.len(),
            active: agents.iter().filter(|a| a.revoked_at.is_none()).count(),
        },
        catalog: CatalogStatus {
            providers: state.catalog.len(),
            issues: state.catalog.issues.iter().map(|i| i.to_string()).collect(),
        },
    })
}

#[utoipa::path(
    get,
    path = "/admin/keys",
    tag = "admin",
    operation_id = "listKeys",
    security(("adminCredential" = [])),
    summary = "Agent keys",
    description = "Every agent key (never the key itself), revoked ones included, with its policies.",
    responses(
        (status = 200, description = "The agent keys.", body = Envelope<Vec<AgentKey>>),
    )
)]
pub async fn list_keys(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success_typed(
        state
            .vault
            .list_agents()
            .into_iter()
            .map(AgentKey::from)
            .collect::<Vec<_>>(),
    )
}

fn check_provider(state: &AppState, code: &str) -> Result<(), ApiError> {
    if code == ANY_PROVIDER || state.catalog.get(code).is_some() {
        Ok(())
    } else {
        Err(ApiError::provider_not_found(code))
    }
}

#[utoipa::path(
    post,
    path = "/admin/keys",
    tag = "admin",
    operation_id = "createKey",
    security(("adminCredential" = [])),
    summary = "Create an agent key",
    description = "Creates an agent key; the key is in this answer only and never stored.",
    request_body(content = CreateKey, content_type = "application/json"),
    responses(
        (status = 200, description = "The key and its record.", body = Envelope<KeyCreated>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: an `allow` provider is not in the catalog.", body = ErrorEnvelope),
        (status = 409, description = "`CONFLICT`: an agent key with that name exists.", body = ErrorEnvelope),
    )
)]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    for p in &req.allow {
        check_provider(&state, p)?;
    }
    let (agent, key) = state
        .vault
        .create_agent(&req.name, &req.allow, req.allow_all)?;
    tracing::info!(agent = %agent.name, "agent key created");
    state
        .audit
        .record(Entry::new(Action::Key, Outcome::Created).agent(&agent.id, &agent.name));
    Ok(success_typed(KeyCreated {
        key: key.expose().to_owned(),
        agent: agent.into(),
    }))
}

#[utoipa::path(
    delete,
    path = "/admin/keys/{name}",
    tag = "admin",
    operation_id = "revokeKey",
    security(("adminCredential" = [])),
    summary = "Revoke an agent key",
    description = "The key stops working at once.",
    params(
        ("name" = String, Path, description = "The agent key's name or id."),
    ),
    responses(
        (status = 200, description = "The revoked key.", body = Envelope<AgentKey>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no agent key with that name or id.", body = ErrorEnvelope),
    )
)]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let agent = state.vault.revoke_agent(&name)?;
    tracing::info!(agent = %agent.name, "agent key revoked");
    state
        .audit
        .record(Entry::new(Action::Key, Outcome::Revoked).agent(&agent.id, &agent.name));
    Ok(success_typed(AgentKey::from(agent)))
}

#[utoipa::path(
    post,
    path = "/admin/policies",
    tag = "admin",
    operation_id = "setPolicy",
    security(("adminCredential" = [])),
    summary = "Set a policy",
    description = "What an agent key may do with a provider (`*`: every provider without its own policy).",
    request_body(content = SetPolicy, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent key with its policies.", body = Envelope<AgentKey>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND` or `NOT_FOUND` (no such agent key).", body = ErrorEnvelope),
    )
)]
pub async fn set_policy(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<SetPolicy>,
) -> Result<Response, ApiError> {
    check_provider(&state, &req.provider)?;
    let mode = Mode::parse(&req.mode).ok_or_else(|| {
        ApiError::bad_request(format!(
            "mode `{}` is not one of allow, ask, deny, proxy-only",
            printable(&req.mode)
        ))
    })?;
    let until = req
        .for_seconds
        .map(|s| akhrot_core::now_unix().saturating_add(i64::try_from(s).unwrap_or(i64::MAX / 2)));
    let agent = state
        .vault
        .set_policy(&req.agent, &req.provider, mode, until)?;
    state.audit.record(
        Entry::new(Action::Policy, Outcome::Policy(mode))
            .agent(&agent.id, &agent.name)
            .provider(&req.provider)
            .detail(match until {
                Some(t) => format!("until {}", akhrot_core::unix_to_rfc3339(t)),
                None => String::new(),
            }),
    );
    Ok(success_typed(AgentKey::from(agent)))
}

#[utoipa::path(
    get,
    path = "/admin/connections",
    tag = "admin",
    operation_id = "listConnections",
    security(("adminCredential" = [])),
    summary = "Connections",
    description = "Every stored connection's public facts (no secret).",
    responses(
        (status = 200, description = "The connections.", body = Envelope<Vec<Connection>>),
    )
)]
pub async fn list_connections(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success_typed(
        state
            .vault
            .list_connections()
            .into_iter()
            .map(Connection::from)
            .collect::<Vec<_>>(),
    )
}

#[utoipa::path(
    post,
    path = "/admin/connections",
    tag = "admin",
    operation_id = "addConnection",
    security(("adminCredential" = [])),
    summary = "Add an API-key connection",
    description = "Stores an API-key provider's values (replacing the same provider and account).",
    request_body(content = AddConnection, content_type = "application/json"),
    responses(
        (status = 200, description = "The connection.", body = Envelope<ConnectionAdded>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query, a missing or unknown field, or a value the provider's format refuses (Telegram: a `session` that is not a Telethon or GramJS StringSession, an `apiId` that is not a positive integer); nothing is stored.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider code in the catalog.", body = ErrorEnvelope),
    )
)]
pub async fn add_connection(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<AddConnection>,
) -> Result<Response, ApiError> {
    let p = state.provider(&req.provider)?;
    let account = req.account.as_deref().unwrap_or("default");
    let (conn, replaced) = state.vault.put_key_connection(&p, account, req.fields)?;
    tracing::info!(provider = %conn.provider, account = %conn.account, replaced, "connection stored");
    state.audit.record(
        Entry::new(
            Action::Connect,
            if replaced {
                Outcome::Replaced
            } else {
                Outcome::Connected
            },
        )
        .provider(&conn.provider)
        .account(Some(&conn.account)),
    );
    Ok(success_typed(ConnectionAdded {
        connection: conn.into(),
        replaced,
    }))
}

#[utoipa::path(
    delete,
    path = "/admin/connections/{provider}",
    tag = "admin",
    operation_id = "removeConnection",
    security(("adminCredential" = [])),
    summary = "Remove a connection",
    description = "Removes a connection, revoking its token at the provider where the provider allows.",
    params(
        ("provider" = String, Path, description = "A catalog provider code, e.g. `openai`.", example = "openai"),
        AccountQuery,
    ),
    responses(
        (status = 200, description = "The removed connection.", body = Envelope<ConnectionRemoved>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND` or `INTEGRATION_NOT_FOUND` (not connected).", body = ErrorEnvelope),
    )
)]
pub async fn remove_connection(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(provider): Path<String>,
    Query(q): Query<crate::guard::AccountQuery>,
) -> Result<Response, ApiError> {
    state.provider(&provider)?;
    let (removed, revoked) = state
        .broker
        .disconnect(&provider, q.account.as_deref())
        .await?;
    tracing::info!(provider = %removed.provider, account = %removed.account, revoked, "connection removed");
    Ok(success_typed(ConnectionRemoved {
        removed: removed.into(),
        revoked_at_provider: revoked,
    }))
}

#[utoipa::path(
    post,
    path = "/admin/token",
    tag = "admin",
    operation_id = "adminToken",
    security(("adminCredential" = [])),
    summary = "The user's own token",
    description = "A provider's fresh credential for the user (`akhrot token`): no policy or approval, the user is the owner.",
    request_body(content = AdminToken, content_type = "application/json"),
    responses(
        (status = 200, description = "The token.", body = Envelope<TokenAnswer>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND` or `INTEGRATION_NOT_FOUND` (not connected).", body = ErrorEnvelope),
        (status = 409, description = "`VAULT_INTEGRITY`: the stored credential failed authentication; reconnect.", body = ErrorEnvelope),
        (status = 502, description = "`PROVIDER_ERROR`: the refresh failed at the provider.", body = ErrorEnvelope),
    )
)]
/// The user's own token request (`akhrot token`): no policy, the user is the owner.
pub async fn token(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<AdminToken>,
) -> Result<Response, ApiError> {
    let p = state.provider(&req.provider)?;
    let (conn, creds) = state
        .broker
        .fresh_credentials(&p, req.account.as_deref())
        .await?;
    Ok(success_typed(TokenAnswer::new(&p, &conn, &creds)))
}

#[utoipa::path(
    get,
    path = "/admin/providers",
    tag = "admin",
    operation_id = "listProviders",
    security(("adminCredential" = [])),
    summary = "The catalog",
    description = "Every catalog provider, built in or from `providers.d`.",
    responses(
        (status = 200, description = "The providers.", body = Envelope<Vec<ProviderInfo>>),
    )
)]
pub async fn list_providers(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    let list: Vec<ProviderInfo> = state.catalog.iter().map(|p| provider_info(p)).collect();
    success_typed(list)
}

#[utoipa::path(
    get,
    path = "/admin/providers/{code}",
    tag = "admin",
    operation_id = "getProvider",
    security(("adminCredential" = [])),
    summary = "One catalog provider",
    description = "A provider with the fields an API-key connection needs.",
    params(
        ("code" = String, Path, description = "A catalog provider code, e.g. `openai`.", example = "openai"),
    ),
    responses(
        (status = 200, description = "The provider.", body = Envelope<ProviderInfo>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider code in the catalog.", body = ErrorEnvelope),
    )
)]
pub async fn get_provider(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let p = state.provider(&code)?;
    Ok(success_typed(provider_info(&p)))
}

fn provider_info(p: &Provider) -> ProviderInfo {
    ProviderInfo {
        code: p.code.clone(),
        name: p.name.clone(),
        auth_type: p.auth.as_str().to_owned(),
        description: p.description.clone(),
        console_url: p.console_url.clone(),
        authorize_url: p.authorize_url.clone(),
        token_url: p.token_url.clone(),
        scopes: p.scopes.clone(),
        docs_url: p.docs_url.clone(),
        fields: p
            .fields
            .iter()
            .map(|f| ProviderField {
                name: f.name.clone(),
                label: f.label.clone(),
                secret: f.secret,
                optional: f.optional,
                hint: f.hint.clone(),
                default: f.default.clone(),
                values: f.values.keys().cloned().collect(),
            })
            .collect(),
        sources: p.sources.clone(),
        custom: p.origin != akhrot_core::catalog::Origin::BuiltIn,
    }
}

/// A provider's client settings with the values set (`set`), for the CLI and the web UI.
fn client_settings(p: &Provider, set: Option<&BTreeMap<String, String>>) -> Vec<ClientSetting> {
    p.settings
        .iter()
        .map(|s| ClientSetting {
            name: s.name.clone(),
            label: s.label.clone(),
            hint: s.hint.clone(),
            default: s.default.clone(),
            kind: match s.kind {
                akhrot_core::catalog::SettingKind::Name => "name",
                akhrot_core::catalog::SettingKind::Origin => "origin",
            }
            .to_owned(),
            value: set.and_then(|m| m.get(&s.name).cloned()),
        })
        .collect()
}

#[utoipa::path(
    post,
    path = "/admin/clients",
    tag = "admin",
    operation_id = "setClient",
    security(("adminCredential" = [])),
    summary = "Set an OAuth client",
    description = "Stores the user's OAuth app for a provider and answers the redirect URI to register with it.",
    request_body(content = SetClient, content_type = "application/json"),
    responses(
        (status = 200, description = "The client, and the redirect URI.", body = Envelope<ClientSet>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider code in the catalog.", body = ErrorEnvelope),
    )
)]
/// Stores the user's OAuth app for a provider; answers the redirect URI to register.
pub async fn set_client(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<SetClient>,
) -> Result<Response, ApiError> {
    let p = state.provider(&req.provider)?;
    if p.auth != akhrot_core::catalog::AuthType::Oauth2 {
        return Err(ApiError::bad_request(format!(
            "{} does not use OAuth; add its values with `akhrot add {}`",
            p.name, p.code
        )));
    }
    let redirect = match req.redirect.as_deref() {
        None => None,
        Some("loopback") => Some(akhrot_core::catalog::Redirect::Loopback),
        Some("deep_link" | "deep-link") => Some(akhrot_core::catalog::Redirect::DeepLink),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "redirect `{}` is not loopback or deep_link",
                printable(other)
            )));
        }
    };
    let settings = p
        .check_settings(&req.settings)
        .map_err(ApiError::bad_request)?;
    state.vault.set_oauth_client(
        &p.code,
        &req.client_id,
        req.client_secret.as_ref(),
        redirect,
        &settings,
    )?;
    tracing::info!(provider = %p.code, "OAuth client set");
    state
        .audit
        .record(Entry::new(Action::Client, Outcome::Set).provider(&p.code));
    Ok(success_typed(ClientSet {
        provider: p.code.clone(),
        client_id: req.client_id.trim().to_owned(),
        has_secret: req
            .client_secret
            .as_ref()
            .is_some_and(|s| !s.expose().trim().is_empty()),
        redirect_uri: state.broker.redirect_uri_for(&p),
        console_url: p.console_url.clone(),
        settings: p.setting_values(&settings),
    }))
}

#[utoipa::path(
    get,
    path = "/admin/clients",
    tag = "admin",
    operation_id = "listClients",
    security(("adminCredential" = [])),
    summary = "OAuth clients",
    description = "Every OAuth provider, whether a client is set, and the redirect URI to register.",
    responses(
        (status = 200, description = "The OAuth providers.", body = Envelope<Vec<ClientInfo>>),
    )
)]
pub async fn list_clients(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
) -> Result<Response, ApiError> {
    let set = state.vault.oauth_clients_info()?;
    let list: Vec<ClientInfo> = state
        .catalog
        .iter()
        .filter(|p| p.auth == akhrot_core::catalog::AuthType::Oauth2)
        .map(|p| {
            let c = set.get(&p.code);
            ClientInfo {
                provider: p.code.clone(),
                name: p.name.clone(),
                configured: c.is_some(),
                client_id: c.map(|c| c.client_id.clone()),
                has_secret: c.map(|c| c.has_secret),
                redirect_uri: state.broker.redirect_uri(p, c.and_then(|c| c.redirect)),
                console_url: p.console_url.clone(),
                settings: client_settings(p, c.map(|c| &c.settings)),
            }
        })
        .collect();
    Ok(success_typed(list))
}

#[utoipa::path(
    post,
    path = "/admin/sessions",
    tag = "admin",
    operation_id = "adminStartSession",
    security(("adminCredential" = [])),
    summary = "Start a consent session",
    description = "The user's own OAuth consent session (`akhrot connect`, the web UI): no approval prompt.",
    request_body(content = crate::consent::StartSession, content_type = "application/json"),
    responses(
        (status = 200, description = "The session, `pending`, with the consent `url`.", body = Envelope<Session>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider code in the catalog.", body = ErrorEnvelope),
    )
)]
/// A consent session started by the user (`akhrot connect`, the UI).
pub async fn start_session(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<StartSession>,
) -> Result<Response, ApiError> {
    start_for_person(&state, req)
}

#[utoipa::path(
    get,
    path = "/admin/sessions/{id}",
    tag = "admin",
    operation_id = "adminGetSession",
    security(("adminCredential" = [])),
    summary = "A consent session",
    description = "Any consent session, the user's or an agent's.",
    params(
        ("id" = String, Path, description = "The session id."),
    ),
    responses(
        (status = 200, description = "The session.", body = Envelope<Session>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`SESSION_NOT_FOUND`: no such session (they are forgotten an hour after they end).", body = ErrorEnvelope),
    )
)]
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(success_typed(Session::from(
        state.broker.session(None, &id)?,
    )))
}

/// The prompts waiting for the user.
fn pending(state: &AppState) -> Vec<Approval> {
    actions::pending(state)
        .into_iter()
        .map(Approval::from)
        .collect()
}

#[utoipa::path(
    get,
    path = "/admin/approvals",
    tag = "admin",
    operation_id = "listApprovals",
    security(("adminCredential" = [])),
    summary = "Waiting prompts",
    description = "The approval prompts waiting for the user.",
    responses(
        (status = 200, description = "The prompts.", body = Envelope<Vec<Approval>>),
    )
)]
pub async fn list_approvals(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success_typed(pending(&state))
}

#[utoipa::path(
    post,
    path = "/admin/approvals/{id}",
    tag = "admin",
    operation_id = "answerApproval",
    security(("adminCredential" = [])),
    summary = "Answer a prompt",
    description = "`for:<seconds>` and `always` also change the agent's policy for the provider; a `connect` prompt is allowed once at most.",
    params(
        ("id" = String, Path, description = "The prompt id."),
    ),
    request_body(content = AnswerApproval, content_type = "application/json"),
    responses(
        (status = 200, description = "The prompt and the answer given.", body = Envelope<ApprovalAnswered>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such prompt (answered or timed out).", body = ErrorEnvelope),
    )
)]
/// Answers a prompt. "For a while" and "always" also change the agent's policy for the provider.
pub async fn answer_approval(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AnswerApproval>,
) -> Result<Response, ApiError> {
    let answered = actions::answer_approval_with(&state, &id, req.answer)?;
    Ok(success_typed(ApprovalAnswered {
        approval: answered.approval.into(),
        answer: answered.answer,
    }))
}

#[utoipa::path(
    post,
    path = "/admin/pause",
    tag = "admin",
    operation_id = "setPause",
    security(("adminCredential" = [])),
    summary = "Pause or resume agents",
    description = "While paused every agent request is denied.",
    request_body(content = SetPause, content_type = "application/json"),
    responses(
        (status = 200, description = "Whether agents are paused now.", body = Envelope<Paused>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
    )
)]
pub async fn set_pause(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<SetPause>,
) -> Result<Response, ApiError> {
    let paused = actions::set_paused(&state, req.paused)?;
    Ok(success_typed(Paused { paused }))
}

#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    operation_id = "auditLog",
    security(("adminCredential" = [])),
    summary = "The audit log",
    description = "Audit entries, newest first.",
    params(
        AuditQuery,
    ),
    responses(
        (status = 200, description = "The entries.", body = Envelope<Vec<AuditEntry>>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
    )
)]
pub async fn audit_log(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let action = match q.action.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(Action::parse(a).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown action `{a}`: use one of {}",
                Action::valid_words()
            ))
        })?),
    };
    let filter = Filter {
        agent: q.agent,
        provider: q.provider,
        action,
        before: q.before,
        limit: q.limit.unwrap_or(100),
    };
    let audit = state.audit.clone();
    let entries = tokio::task::spawn_blocking(move || audit.query(&filter))
        .await
        .map_err(|_| ApiError::new(Code::VaultUnavailable, "the audit query stopped"))??;
    Ok(success_typed(
        entries
            .into_iter()
            .map(AuditEntry::from)
            .collect::<Vec<_>>(),
    ))
}

#[utoipa::path(
    get,
    path = "/admin/events",
    tag = "admin",
    operation_id = "adminEvents",
    security(("adminCredential" = [])),
    summary = "Live events for the web UI",
    description = "Server-sent events: `approval` (a prompt created or resolved), `audit` (an entry written), `resync` (events were missed: reload).",
    responses(
        (status = 200, description = "An event stream.", content_type = "text/event-stream", body = String),
    )
)]
/// Server-sent events for the UI: approvals created and resolved, audit entries as written.
pub async fn events(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let approvals = state.approvals.subscribe();
    let audit = state.audit.subscribe();
    let closing = state.closing.subscribe();
    let stream = futures_util::stream::unfold(
        (approvals, audit, closing),
        |(mut ap, mut au, mut closing)| async move {
            loop {
                let ev = tokio::select! {
                    _ = closing.wait_for(|c| *c) => return None,
                    r = ap.recv() => match r {
                        Ok(e) => Some(("approval", serde_json::to_string(&e).unwrap_or_default())),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(("resync", "{}".to_string())),
                        Err(_) => return None,
                    },
                    r = au.recv() => match r {
                        Ok(e) => Some(("audit", serde_json::to_string(&e).unwrap_or_default())),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(("resync", "{}".to_string())),
                        Err(_) => return None,
                    },
                };
                if let Some((kind, data)) = ev {
                    return Some((
                        Ok(Event::default().event(kind).data(data)),
                        (ap, au, closing),
                    ));
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
