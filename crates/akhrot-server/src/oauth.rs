//! OAuth routes: consent sessions for agents and the loopback callback page.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use akhrot_core::audit::{Action, Entry, Outcome};
use akhrot_core::broker::{BrokerError, CallbackOutcome, CallbackParams};

use crate::consent::{Session, StartSession, parse};
use crate::error::{ApiError, Envelope, ErrorEnvelope, success_typed};
use crate::guard::{AgentAuth, ApiPath, JsonBody};
use crate::page::esc;
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/oauth/sessions",
    tag = "oauth",
    operation_id = "startOAuthSession",
    security(("agentKey" = [])),
    summary = "Start connecting an OAuth provider",
    description = "Starts a consent session (PKCE + state). Send the user to the returned `url`; then poll `GET /oauth/sessions/{id}` until it is `completed`. An agent request like `POST /tokens/fetch`: pause and the agent's policy for the provider apply, and under `ask` the user is prompted (\"wants to connect\") while the request waits. A session an agent starts never replaces a stored connection: a label that is already connected is refused at once (`CONNECTION_EXISTS`), and a session whose account turns out to be connected already ends `failed` with `errorCode` `CONNECTION_EXISTS`, nothing stored. Reconnecting is the user's act (`akhrot connect`, the Akhrot window).",
    request_body(content = StartSession, content_type = "application/json"),
    responses(
        (status = 200, description = "The session, `pending`, with the consent `url`.", body = Envelope<Session>),
        (status = 400, description = "`BAD_REQUEST`: malformed JSON, a missing `provider`, a field of the wrong type or too long, bad scopes or account label, or a body that is not `application/json`.", body = ErrorEnvelope),
        (status = 403, description = "`APPROVAL_DENIED`: the user, a `deny` policy, or \"pause all agents\" refused. `FORBIDDEN_HOST`: see the common answers.", body = ErrorEnvelope),
        (status = 404, description = "`PROVIDER_NOT_FOUND`: no such provider code in the catalog.", body = ErrorEnvelope),
        (status = 408, description = "`APPROVAL_TIMEOUT`: nobody answered the approval prompt in time.", body = ErrorEnvelope),
        (status = 409, description = "`CONNECTION_EXISTS`: the `account` label is already connected, and a session an agent starts never replaces a connection (the user reconnects it with `akhrot connect`). `CLIENT_NOT_CONFIGURED`: the provider has no OAuth client credentials set; the message says how to set them. `CONFLICT`: the provider is not an OAuth provider (API-key and Telegram connections are added by the user with `akhrot add`). `VAULT_INTEGRITY`: the stored client secret failed authentication.", body = ErrorEnvelope),
        (status = 413, description = "`BAD_REQUEST`: the body is larger than 64 KiB.", body = ErrorEnvelope),
        (status = 429, description = "`RATE_LIMITED`: too many requests from this agent key, or three approval prompts already waiting.", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn start_session(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer_addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    AgentAuth(agent): AgentAuth,
    JsonBody(req): JsonBody<StartSession>,
) -> Result<Response, ApiError> {
    let req = parse(req)?;
    let audit = |outcome: Outcome| {
        Entry::new(Action::Connect, outcome)
            .agent(&agent.id, &agent.name)
            .provider(&req.provider)
            .account(req.account.as_deref())
    };
    // What would be refused anyway is refused before the person is asked: above all a label
    // that is already connected, which a session an agent starts could never replace.
    let provider =
        match state
            .broker
            .check_session(Some(&agent), &req.provider, req.account.as_deref())
        {
            Ok((p, _)) => p,
            Err(e @ BrokerError::ConnectionExists { .. }) => {
                state
                    .audit
                    .record(audit(Outcome::Conflict).detail("the label is already connected"));
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
    crate::access::authorize_connect(
        &state,
        &agent,
        &provider,
        req.account.as_deref(),
        &req.scopes,
        peer_addr,
    )
    .await?;
    let view = state.broker.start_session(
        Some(&agent),
        &req.provider,
        &req.scopes,
        req.account.as_deref(),
    );
    let view = match view {
        Ok(v) => v,
        Err(e) => {
            // E.g. the label was connected while the prompt waited.
            state
                .audit
                .record(audit(Outcome::Failed).detail(e.to_string()));
            return Err(e.into());
        }
    };
    state
        .audit
        .record(audit(Outcome::Started).detail(format!("session {}", view.session_id)));
    Ok(success_typed(Session::from(view)))
}

#[utoipa::path(
    get,
    path = "/oauth/sessions/{id}",
    tag = "oauth",
    operation_id = "getOAuthSession",
    security(("agentKey" = [])),
    summary = "Where a consent session stands",
    description = "`pending`, `completed` (with `account`), `expired`, or `failed` (with the provider's error). An agent sees only the sessions it started.",
    params(("id" = String, Path, description = "The `sessionId` that `POST /oauth/sessions` returned.")),
    responses(
        (status = 200, description = "The session.", body = Envelope<Session>),
        (status = 400, description = "`BAD_REQUEST`: a malformed path.", body = ErrorEnvelope),
        (status = 404, description = "`SESSION_NOT_FOUND`: no session with that id for this agent (sessions are forgotten an hour after they end).", body = ErrorEnvelope),
    )
)]
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(success_typed(Session::from(
        state.broker.session(Some(&agent.id), &id)?,
    )))
}

#[utoipa::path(
    get,
    path = "/oauth/callback",
    tag = "oauth",
    operation_id = "oauthCallback",
    summary = "Where the provider sends the user back",
    description = "The loopback redirect target. Completes the pending session its single-use `state` names and shows the user a small page saying what happened. Meant for people's browsers, not agents; no authentication (the `state` is the check).",
    params(
        ("code" = Option<String>, Query, description = "The authorization code."),
        ("state" = Option<String>, Query, description = "The session's single-use state."),
        ("error" = Option<String>, Query, description = "The provider's error code, when the user refused or the provider failed."),
        ("error_description" = Option<String>, Query, description = "The provider's explanation of `error`."),
    ),
    responses(
        (status = 200, description = "A session was completed: the provider is connected.", content_type = "text/html; charset=utf-8", body = String),
        (status = 400, description = "An unknown, forged, replayed or malformed `state`, or a token exchange that failed.", content_type = "text/html; charset=utf-8", body = String),
        (status = 403, description = "The user (or the provider) denied access; or `FORBIDDEN_HOST` (a JSON error) for a foreign `Host` or a cross-site request.", content(
            (String = "text/html; charset=utf-8"),
            (ErrorEnvelope = "application/json"),
        )),
        (status = 409, description = "A session an agent started would have replaced a stored connection (its label, or the account the provider reports, is already connected): nothing was stored; the session is `failed` with `errorCode` `CONNECTION_EXISTS`.", content_type = "text/html; charset=utf-8", body = String),
        (status = 410, description = "The session was older than its 10 minutes.", content_type = "text/html; charset=utf-8", body = String),
    )
)]
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
        CallbackOutcome::Conflict { provider, account } => (
            format!("{provider} was not connected"),
            format!(
                "<b>{}</b> is already connected in Akhrot as <b>{}</b>. This sign-in was started by an agent, and an agent can never replace a connection, so nothing was stored or changed. \
                 If you want to reconnect that account, do it yourself from Akhrot: <code>akhrot connect</code> with <code>--account</code>, or Connections in the Akhrot window. You can close this tab.",
                esc(provider),
                esc(account)
            ),
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
