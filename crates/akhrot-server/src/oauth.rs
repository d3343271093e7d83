//! OAuth routes: consent sessions for agents and the loopback callback page.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use akhrot_core::broker::{CallbackOutcome, CallbackParams};

use crate::AppState;
use crate::error::{ApiError, success};
use crate::guard::{AgentAuth, JsonBody, string_field};
use crate::page::esc;

#[derive(Deserialize)]
pub struct StartSession {
    provider: Option<Value>,
    scopes: Option<Value>,
    account: Option<Value>,
}

/// `scopes` as an array of strings or one space/comma-separated string.
fn scopes_field(v: Option<Value>) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::bad_request("`scopes` must be strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`scopes` must be an array of strings",
            ));
        }
    };
    if list.len() > 50
        || list
            .iter()
            .any(|s| s.len() > 200 || s.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(ApiError::bad_request(
            "`scopes` must be at most 50 scope names without spaces",
        ));
    }
    Ok(list)
}

pub async fn start_session(
    State(state): State<Arc<AppState>>,
    AgentAuth(agent): AgentAuth,
    JsonBody(req): JsonBody<StartSession>,
) -> Result<Response, ApiError> {
    start(&state, Some(&agent.id), req)
}

/// Shared by agents and the user's own CLI/UI (`owner = None`).
pub fn start(
    state: &AppState,
    owner: Option<&str>,
    req: StartSession,
) -> Result<Response, ApiError> {
    let provider = string_field(req.provider, "provider", 64)?
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing field `provider`, e.g. {\"provider\":\"google\"}")
        })?;
    let scopes = scopes_field(req.scopes)?;
    let account = string_field(req.account, "account", 200)?;
    let view = state
        .broker
        .start_session(owner, &provider, &scopes, account.as_deref())?;
    Ok(success(json!(view)))
}

pub async fn get_session(
    State(state): State<Arc<AppState>>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(success(json!(state.broker.session(Some(&agent.id), &id)?)))
}

pub async fn callback(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let params = CallbackParams::from_query(q.as_deref().unwrap_or(""));
    let outcome = state.broker.complete_loopback(params).await;
    callback_page(&outcome)
}

/// The page a person sees after the provider sends them back. Never shows a token.
pub fn callback_page(outcome: &CallbackOutcome) -> Response {
    let (title, body) = match outcome {
        CallbackOutcome::Connected { provider, account } => (
            format!("Connected to {provider}"),
            format!("Akhrot is now connected to <b>{}</b> as <b>{}</b>. You can close this tab.", esc(provider), esc(account)),
        ),
        CallbackOutcome::Denied { provider, reason } => (
            format!("{provider} was not connected"),
            format!("Access was denied ({}). Nothing was stored. You can close this tab.", esc(reason)),
        ),
        CallbackOutcome::Failed { provider, reason } => (
            format!("{provider} could not be connected"),
            format!("{}. Nothing was stored. Start again from Akhrot or your agent. You can close this tab.", esc(reason)),
        ),
        CallbackOutcome::Expired { provider } => (
            "This sign-in link has expired".into(),
            format!("The {} sign-in session was older than 10 minutes. Start again from Akhrot or your agent. You can close this tab.", esc(provider)),
        ),
        CallbackOutcome::UnknownState => (
            "This sign-in link is not valid".into(),
            "Akhrot has no pending sign-in for this link: it was already used, or did not come from this Akhrot. Nothing was stored. You can close this tab.".into(),
        ),
        CallbackOutcome::Malformed(why) => ("This is not a sign-in link".into(), format!("{}.", esc(why))),
    };
    let status = StatusCode::from_u16(outcome.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    crate::page::html(status, &title, &body)
}
