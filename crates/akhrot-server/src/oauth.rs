//! OAuth routes: consent sessions for agents and the loopback callback page.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use akhrot_core::audit::Entry;
use akhrot_core::broker::{
    BrokerError, CallbackOutcome, CallbackParams, SessionState, SessionView,
};

use crate::AppState;
use crate::error::{ApiError, Envelope, ErrorEnvelope, success_typed};
use crate::guard::{AgentAuth, ApiPath, JsonBody, string_field};
use crate::page::esc;

/// Which provider to connect.
// Fields are read as any JSON value so a wrong type is a clear `BAD_REQUEST`; the schema says
// what is accepted.
#[derive(Deserialize, ToSchema)]
pub struct StartSession {
    /// The code of an OAuth provider, e.g. `google`.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64, example = "github")]
    provider: Option<Value>,
    /// Scopes beyond the provider's defaults: an array, or one space- or comma-separated string.
    #[schema(value_type = Option<Scopes>)]
    scopes: Option<Value>,
    /// A label to store the connection under instead of the account name the provider reports:
    /// 1-200 printable characters, not only spaces.
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    account: Option<Value>,
}

/// The schema of `scopes`: at most 50 scope names of at most 200 characters, without spaces or
/// control characters, as an array or as one string separated by spaces or commas.
pub struct Scopes;

/// A scope name, as `scopes_field` accepts it.
const SCOPE_NAME: &str = r"^[^ \x00-\x1f\x7f-\x9f]{1,200}$";
/// Up to 50 such names separated by spaces or commas.
const SCOPE_LIST: &str =
    r"^[ ,]*(?:[^ ,\x00-\x1f\x7f-\x9f]{1,200}[ ,]+){0,49}(?:[^ ,\x00-\x1f\x7f-\x9f]{1,200}[ ,]*)?$";

impl utoipa::PartialSchema for Scopes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ArrayBuilder::new()
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(SCOPE_NAME)),
                    )
                    .max_items(Some(50)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(SCOPE_LIST)),
            )
            .description(Some(
                "Scopes beyond the provider's defaults: an array of scope names, or one string of names separated by spaces or commas. At most 50 names of at most 200 characters, without spaces or control characters.",
            ))
            .into()
    }
}

impl ToSchema for Scopes {}

/// Where an OAuth session stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Pending,
    Completed,
    Expired,
    Failed,
}

/// An OAuth consent session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OAuthSession)]
pub struct Session {
    pub session_id: String,
    pub provider: String,
    pub status: SessionStatus,
    /// The provider's consent page (PKCE + state); present while the session is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the session expires (RFC 3339): 10 minutes after it started.
    pub expires_at: String,
    /// The connected account, once `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The provider's error, when `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When Akhrot itself failed the session: `CONNECTION_EXISTS` (the session would have
    /// replaced a stored connection; nothing was changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "CONNECTION_EXISTS")]
    pub error_code: Option<String>,
    /// The redirect URI the provider sends the user back to.
    pub redirect_uri: String,
}

impl From<SessionView> for Session {
    fn from(v: SessionView) -> Self {
        Self {
            session_id: v.session_id,
            provider: v.provider,
            status: match v.status {
                SessionState::Pending => SessionStatus::Pending,
                SessionState::Completed => SessionStatus::Completed,
                SessionState::Expired => SessionStatus::Expired,
                SessionState::Failed => SessionStatus::Failed,
            },
            url: v.url,
            expires_at: v.expires_at,
            account: v.account,
            error: v.error,
            error_code: v.error_code,
            redirect_uri: v.redirect_uri,
        }
    }
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
        || list.iter().any(|s| {
            s.is_empty() || s.chars().count() > 200 || s.chars().any(|c| c.is_control() || c == ' ')
        })
    {
        return Err(ApiError::bad_request(
            "`scopes` must be at most 50 scope names of at most 200 characters, without spaces or control characters",
        ));
    }
    Ok(list)
}

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
    let audit = |outcome: &str| {
        Entry::new("connect", outcome)
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
                    .record(audit("conflict").detail("the label is already connected"));
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
            state.audit.record(audit("failed").detail(e.to_string()));
            return Err(e.into());
        }
    };
    state
        .audit
        .record(audit("started").detail(format!("session {}", view.session_id)));
    Ok(success_typed(Session::from(view)))
}

/// A `StartSession` body, checked.
struct StartRequest {
    provider: String,
    scopes: Vec<String>,
    account: Option<String>,
}

fn parse(req: StartSession) -> Result<StartRequest, ApiError> {
    let provider = string_field(req.provider, "provider", 64)?
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing field `provider`, e.g. {\"provider\":\"google\"}")
        })?;
    let scopes = scopes_field(req.scopes)?;
    let account = string_field(req.account, "account", 200)?;
    // As the schema's pattern says (U+FEFF counts as a space there, as in JavaScript).
    if account
        .as_deref()
        .is_some_and(|a| a.chars().all(|c| c.is_whitespace() || c == '\u{feff}'))
    {
        return Err(ApiError::bad_request(
            "an account label is 1-200 printable characters, not only spaces",
        ));
    }
    Ok(StartRequest {
        provider,
        scopes,
        account,
    })
}

/// The person's own connect (`akhrot connect`, the web UI, the desktop app): no prompt, and
/// it may replace a stored connection with the same label.
pub fn start_for_person(state: &AppState, req: StartSession) -> Result<Response, ApiError> {
    let req = parse(req)?;
    let view =
        state
            .broker
            .start_session(None, &req.provider, &req.scopes, req.account.as_deref())?;
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
