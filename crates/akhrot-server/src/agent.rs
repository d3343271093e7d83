//! The agent-facing API: the skill document, context, and token hand-out.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use akhrot_core::audit::Entry;
use akhrot_core::catalog::{AuthType, Provider};
use akhrot_core::unix_to_rfc3339;
use akhrot_core::vault::{ConnectionInfo, Credentials};

use crate::AppState;
use crate::error::{ApiError, Code, printable, success};
use crate::guard::{AgentAuth, JsonBody};
use crate::render;

pub async fn skill(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = state.skill_md.clone().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    resp
}

pub async fn summary(State(state): State<Arc<AppState>>, AgentAuth(_): AgentAuth) -> Response {
    let conns = state.vault.list_connections();
    let mut connected = Vec::new();
    let mut available = Vec::new();
    for p in state.catalog.iter() {
        let accounts: Vec<&str> = conns
            .iter()
            .filter(|c| c.provider == p.code)
            .map(|c| c.account.as_str())
            .collect();
        if accounts.is_empty() {
            available.push(Value::from(p.code.as_str()));
        } else {
            let services: Vec<&str> = p.services.iter().map(|s| s.code.as_str()).collect();
            connected
                .push(json!({ "provider": p.code, "services": services, "accounts": accounts }));
        }
    }
    success(json!({ "connected": connected, "available": available }))
}

/// Non-secret values of a connection that templates may show (domain, account SID, cloud id).
fn known_values(conn: Option<&ConnectionInfo>) -> BTreeMap<String, String> {
    conn.map(|c| c.public_fields.clone()).unwrap_or_default()
}

fn account_json(c: &ConnectionInfo) -> Value {
    json!({
        "account": c.account,
        "status": c.status,
        "scopes": c.scopes,
        "expiresAt": c.expires_at.map(unix_to_rfc3339),
    })
}

fn connect_json(state: &AppState, p: &Provider) -> Value {
    match p.auth {
        AuthType::Oauth2 => {
            let url = format!("{}/oauth/sessions", state.base_url);
            let body = json!({ "provider": p.code });
            json!({
                "method": "POST",
                "url": url,
                "body": body,
                "curl": format!(
                    "curl -s -X POST \"{url}\" -H \"Authorization: Bearer $AKHROT_API_KEY\" -H \"Content-Type: application/json\" -d '{body}'"
                ),
                "note": "Send the user to the returned `url` to approve; then poll GET /oauth/sessions/{sessionId} until `completed`.",
            })
        }
        AuthType::ApiKey | AuthType::Mtproto => json!({
            "command": format!("akhrot add {}", p.code),
            "note": format!(
                "{} credentials are added by the user, not by agents: ask the user to run `akhrot add {}` (or use Connections in the Akhrot window){}.",
                p.name,
                p.code,
                p.console_url.as_deref().map(|u| format!("; they get the values at {u}")).unwrap_or_default()
            ),
        }),
    }
}

pub async fn provider_context(
    State(state): State<Arc<AppState>>,
    AgentAuth(_): AgentAuth,
    Path(code): Path<String>,
    Query(q): Query<crate::guard::AccountQuery>,
) -> Result<Response, ApiError> {
    let p = state.provider(&code)?;
    let conns: Vec<ConnectionInfo> = state
        .vault
        .list_connections()
        .into_iter()
        .filter(|c| c.provider == p.code)
        .collect();
    let chosen = state.vault.find_connection(&p.code, q.account.as_deref());
    let known = known_values(chosen.as_ref());
    let services: Vec<Value> = p
        .services
        .iter()
        .map(|s| {
            json!({
                "code": s.code,
                "name": s.name,
                "baseUrl": render::base_url(s, &known),
                "docsUrl": s.docs_url,
                "scopes": s.scopes,
            })
        })
        .collect();
    let mut out = json!({
        "provider": p.code,
        "name": p.name,
        "description": p.description,
        "authType": p.auth.as_str(),
        "connected": !conns.is_empty(),
        "accounts": conns.iter().map(account_json).collect::<Vec<_>>(),
        "docsUrl": p.docs_url,
        "services": services,
        "usage": render::usage(&p, &known),
        "getToken": render::get_token(&state.base_url, &p.code, q.account.as_deref()),
    });
    if p.auth != AuthType::Mtproto && p.inject.digest.is_none() {
        out["proxy"] = render::proxy(&state.base_url, &p, None);
    }
    if p.auth == AuthType::Oauth2 {
        out["scopes"] = json!(p.scopes);
        out["clientConfigured"] = json!(state.vault.oauth_client_info(&p.code)?.is_some());
    } else {
        out["fields"] = json!(
            p.fields
                .iter()
                .map(|f| json!({
                    "name": f.name,
                    "label": f.label,
                    "secret": f.secret,
                    "optional": f.optional,
                    "returnedAs": if f.token { "accessToken".to_string() } else { f.name.clone() },
                    "hint": f.hint,
                }))
                .collect::<Vec<_>>()
        );
    }
    if conns.is_empty() || p.auth == AuthType::Oauth2 {
        out["connect"] = connect_json(&state, &p);
    }
    Ok(success(out))
}

pub async fn service_context(
    State(state): State<Arc<AppState>>,
    AgentAuth(_): AgentAuth,
    Path((code, service)): Path<(String, String)>,
    Query(q): Query<crate::guard::AccountQuery>,
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
    let chosen = state.vault.find_connection(&p.code, q.account.as_deref());
    let known = known_values(chosen.as_ref());
    let mut headers: BTreeMap<String, String> = p
        .inject
        .effective_headers()
        .iter()
        .map(|(k, v)| (k.clone(), render::fill(v, &known)))
        .collect();
    headers.extend(s.headers.clone());
    let proxied = p.auth != AuthType::Mtproto && p.inject.digest.is_none() && s.base_url.is_some();
    let mut bases: Vec<&str> = p
        .services
        .iter()
        .filter_map(|s| s.base_url.as_deref())
        .collect();
    bases.sort_unstable();
    bases.dedup();
    let multi = bases.len() > 1;
    let mut out = json!({
        "provider": p.code,
        "service": s.code,
        "name": s.name,
        "connected": chosen.is_some(),
        "account": chosen.as_ref().map(|c| c.account.clone()),
        "baseUrl": render::base_url(s, &known),
        "docsUrl": s.docs_url,
        "scopes": s.scopes,
        "headers": headers,
        "usage": render::usage(&p, &known),
        "examples": s.examples.iter().map(|e| {
            let mut v = render::example(&p, s, e, &known);
            if proxied {
                v["proxyCurl"] = json!(render::proxy_curl(&state.base_url, &p, s, e, multi, &known));
            }
            v
        }).collect::<Vec<_>>(),
        "getToken": render::get_token(&state.base_url, &p.code, q.account.as_deref()),
    });
    if proxied {
        out["proxy"] = render::proxy(&state.base_url, &p, Some(s));
    }
    Ok(success(out))
}

#[derive(Deserialize)]
pub struct FetchRequest {
    provider: Option<Value>,
    account: Option<Value>,
    reason: Option<Value>,
}

pub async fn fetch_token(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer_addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    AgentAuth(agent): AgentAuth,
    JsonBody(req): JsonBody<FetchRequest>,
) -> Result<Response, ApiError> {
    let provider = crate::guard::string_field(req.provider, "provider", 64)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing field `provider`, e.g. {\"provider\":\"openai\"}")
        })?;
    let account = crate::guard::string_field(req.account, "account", 200)?;
    let reason = crate::guard::string_field(req.reason, "reason", 500)?;
    let p = state.provider(&provider)?;
    let audit = |outcome: &str| {
        Entry::new("token", outcome)
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
                .record(audit("error").detail(e.code.as_str()).peer(peer));
            return Err(e);
        }
    };
    match peer {
        None => state
            .audit
            .record_handout(&agent.id, &agent.name, &p.code, &conn.account),
        Some(_) => state.audit.record(
            Entry::new("token", "handed_out")
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

/// The token answer: `accessToken` and the connection's other values by field name.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenAnswer<'a> {
    access_token: &'a str,
    token_type: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    provider: &'a str,
    account: &'a str,
    expires_at: Option<String>,
    scopes: &'a [String],
    #[serde(flatten)]
    extra: BTreeMap<&'a str, Value>,
}

impl<'a> TokenAnswer<'a> {
    pub fn new(p: &'a Provider, conn: &'a ConnectionInfo, creds: &'a Credentials) -> Self {
        let token_field = p
            .token_field()
            .map(|f| f.name.as_str())
            .unwrap_or("accessToken");
        let access_token = creds
            .get(token_field)
            .or_else(|| creds.get("accessToken"))
            .map(|s| s.expose())
            .unwrap_or_default();
        let token_type = match p.auth {
            AuthType::Oauth2 => match creds.get("tokenType").map(|t| t.expose()) {
                Some(t) if !t.eq_ignore_ascii_case("bearer") && !t.is_empty() => t,
                _ => "Bearer",
            },
            AuthType::ApiKey => "api_key",
            AuthType::Mtproto => "mtproto_session",
        };
        let mut extra = BTreeMap::new();
        if p.auth == AuthType::Oauth2 {
            for (k, v) in &conn.public_fields {
                extra.insert(k.as_str(), Value::from(v.as_str()));
            }
        } else {
            for f in p.fields.iter().filter(|f| !f.token) {
                if let Some(v) = creds.get(&f.name) {
                    let v = v.expose();
                    let value = match (f.name.as_str(), v.parse::<u64>()) {
                        ("apiId", Ok(n)) => Value::from(n),
                        _ => Value::from(v),
                    };
                    extra.insert(f.name.as_str(), value);
                }
            }
        }
        Self {
            access_token,
            token_type,
            kind: p.auth.as_str(),
            provider: &p.code,
            account: &conn.account,
            expires_at: conn.expires_at.map(unix_to_rfc3339),
            scopes: &conn.scopes,
            extra,
        }
    }
}

/// `GET /ai/approvals`: the calling agent's own prompts waiting for the user (never another
/// agent's), so a client can tell its user that an answer is awaited. Answering stays admin-only.
pub async fn own_approvals(
    State(state): State<Arc<AppState>>,
    AgentAuth(agent): AgentAuth,
) -> Response {
    let list: Vec<Value> = state
        .approvals
        .pending()
        .into_iter()
        .filter(|p| p.ask.agent_id == agent.id)
        .map(|p| {
            json!({
                "id": p.id,
                "agent": p.ask.agent,
                "provider": p.ask.provider,
                "account": p.ask.account,
                "request": p.ask.request,
                "reason": p.ask.reason,
                "createdAt": unix_to_rfc3339(p.created_at),
                "expiresAt": unix_to_rfc3339(p.expires_at),
            })
        })
        .collect();
    success(Value::Array(list))
}
