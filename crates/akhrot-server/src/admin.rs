//! Admin routes: only the user's own CLI and UI hold the credential they need.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;

// axum's extractors with their rejections in the JSON envelope.
use crate::guard::{ApiPath as Path, ApiQuery as Query};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use akhrot_core::SecretString;
use akhrot_core::catalog::Provider;

use akhrot_core::audit::{Entry, Filter};
use akhrot_core::vault::{ANY_PROVIDER, Mode};

use crate::actions;
use crate::consent::{StartSession, start_for_person};
use crate::error::{ApiError, Code, printable, success};
use crate::guard::{AdminAuth, JsonBody};
use crate::state::AppState;
use crate::token::TokenAnswer;

pub async fn status(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    let connections: Vec<Value> = state
        .vault
        .list_connections()
        .into_iter()
        .map(|c| {
            let name = state.catalog.get(&c.provider).map(|p| p.name.clone());
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            v["providerName"] = json!(name);
            v
        })
        .collect();
    let agents = state.vault.list_agents();
    success(json!({
        "server": {
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "port": state.port,
            "baseUrl": state.base_url,
            "startedAt": state.started_at,
                        "rateLimitPerMinute": state.limiter.per_minute(),
            "approvalTimeoutSecs": state.approvals.timeout().as_secs(),
        },
        "paused": actions::is_paused(&state),
        "pendingApprovals": actions::pending(&state),
        "vault": {
            "path": state.vault.path(),
            "vaultId": state.vault.vault_id(),
            "keySource": state.vault.key_source(),
        },
        "connections": connections,
        "agents": {
            "total": agents.len(),
            "active": agents.iter().filter(|a| a.revoked_at.is_none()).count(),
        },

        "catalog": {
            "providers": state.catalog.len(),
            "issues": state.catalog.issues.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        },
    }))
}

pub async fn list_keys(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success(json!(state.vault.list_agents()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allow_all: bool,
}

fn check_provider(state: &AppState, code: &str) -> Result<(), ApiError> {
    if code == ANY_PROVIDER || state.catalog.get(code).is_some() {
        Ok(())
    } else {
        Err(ApiError::provider_not_found(code))
    }
}

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
        .record(Entry::new("key", "created").agent(&agent.id, &agent.name));
    Ok(success(json!({ "key": key.expose(), "agent": agent })))
}

pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let agent = state.vault.revoke_agent(&name)?;
    tracing::info!(agent = %agent.name, "agent key revoked");
    state
        .audit
        .record(Entry::new("key", "revoked").agent(&agent.id, &agent.name));
    Ok(success(json!(agent)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPolicy {
    agent: String,
    provider: String,
    mode: String,
    /// For `allow` and `proxy-only`: seconds from now until it lapses back to `ask`.
    for_seconds: Option<u64>,
}

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
        Entry::new("policy", mode.as_str())
            .agent(&agent.id, &agent.name)
            .provider(&req.provider)
            .detail(match until {
                Some(t) => format!("until {}", akhrot_core::unix_to_rfc3339(t)),
                None => String::new(),
            }),
    );
    Ok(success(json!(agent)))
}

pub async fn list_connections(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success(json!(state.vault.list_connections()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddConnection {
    provider: String,
    account: Option<String>,
    fields: BTreeMap<String, SecretString>,
}

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
        Entry::new("connect", if replaced { "replaced" } else { "connected" })
            .provider(&conn.provider)
            .account(Some(&conn.account)),
    );
    Ok(success(json!({ "connection": conn, "replaced": replaced })))
}

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
    Ok(success(
        json!({ "removed": removed, "revokedAtProvider": revoked }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    provider: String,
    account: Option<String>,
}

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
    Ok(crate::error::success_typed(TokenAnswer::new(
        &p, &conn, &creds,
    )))
}

pub async fn list_providers(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    let list: Vec<Value> = state.catalog.iter().map(|p| provider_json(p)).collect();
    success(json!(list))
}

pub async fn get_provider(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let p = state.provider(&code)?;
    Ok(success(provider_json(&p)))
}

fn provider_json(p: &Provider) -> Value {
    json!({
        "code": p.code,
        "name": p.name,
        "authType": p.auth.as_str(),
        "description": p.description,
        "consoleUrl": p.console_url,
        "authorizeUrl": p.authorize_url,
        "tokenUrl": p.token_url,
        "scopes": p.scopes,
        "docsUrl": p.docs_url,
        "fields": p.fields.iter().map(|f| json!({
            "name": f.name, "label": f.label, "secret": f.secret,
            "optional": f.optional, "hint": f.hint,
        })).collect::<Vec<_>>(),
        "custom": p.origin != akhrot_core::catalog::Origin::BuiltIn,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetClient {
    provider: String,
    client_id: String,
    client_secret: Option<SecretString>,
    /// `loopback` or `deep_link`; absent: the catalog's choice.
    redirect: Option<String>,
}

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
    state.vault.set_oauth_client(
        &p.code,
        &req.client_id,
        req.client_secret.as_ref(),
        redirect,
    )?;
    tracing::info!(provider = %p.code, "OAuth client set");
    state
        .audit
        .record(Entry::new("client", "set").provider(&p.code));
    Ok(success(json!({
        "provider": p.code,
        "clientId": req.client_id.trim(),
        "hasSecret": req.client_secret.as_ref().is_some_and(|s| !s.expose().trim().is_empty()),
        "redirectUri": state.broker.redirect_uri_for(&p),
        "consoleUrl": p.console_url,
    })))
}

pub async fn list_clients(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
) -> Result<Response, ApiError> {
    let set = state.vault.oauth_clients_info()?;
    let list: Vec<Value> = state
        .catalog
        .iter()
        .filter(|p| p.auth == akhrot_core::catalog::AuthType::Oauth2)
        .map(|p| {
            let c = set.get(&p.code);
            json!({
                "provider": p.code,
                "name": p.name,
                "configured": c.is_some(),
                "clientId": c.map(|c| c.client_id.clone()),
                "hasSecret": c.map(|c| c.has_secret),
                "redirectUri": state.broker.redirect_uri(p, c.and_then(|c| c.redirect)),
                "consoleUrl": p.console_url,
            })
        })
        .collect();
    Ok(success(json!(list)))
}

/// A consent session started by the user (`akhrot connect`, the UI).
pub async fn start_session(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<StartSession>,
) -> Result<Response, ApiError> {
    start_for_person(&state, req)
}

pub async fn get_session(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(success(json!(state.broker.session(None, &id)?)))
}

pub async fn list_approvals(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success(json!(actions::pending(&state)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerApproval {
    /// `deny`, `once`, `hour`, `quit`, `always`, or `for:<seconds>`.
    answer: String,
}

/// Answers a prompt. "For a while" and "always" also change the agent's policy for the provider.
pub async fn answer_approval(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AnswerApproval>,
) -> Result<Response, ApiError> {
    let answered = actions::answer_approval(&state, &id, &req.answer)?;
    Ok(crate::error::success_typed(answered))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPause {
    paused: bool,
}

pub async fn set_pause(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<SetPause>,
) -> Result<Response, ApiError> {
    let paused = actions::set_paused(&state, req.paused)?;
    Ok(success(json!({ "paused": paused })))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    agent: Option<String>,
    provider: Option<String>,
    action: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

pub async fn audit_log(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let filter = Filter {
        agent: q.agent,
        provider: q.provider,
        action: q.action,
        before: q.before,
        limit: q.limit.unwrap_or(100),
    };
    let audit = state.audit.clone();
    let entries = tokio::task::spawn_blocking(move || audit.query(&filter))
        .await
        .map_err(|_| ApiError::new(Code::VaultUnavailable, "the audit query stopped"))??;
    Ok(success(json!(entries)))
}

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
