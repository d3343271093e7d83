//! A consent session's request and answer, shared by the agent's `POST /oauth/sessions`
//! and the person's `POST /admin/sessions`: [`StartSession`] (checked by [`parse`]),
//! [`Session`], and [`start_for_person`].

use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use akhrot_core::broker::{SessionState, SessionView};

use crate::error::{ApiError, success_typed};
use crate::guard::string_field;
use crate::state::AppState;

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

/// A `StartSession` body, checked.
pub struct StartRequest {
    pub provider: String,
    pub scopes: Vec<String>,
    pub account: Option<String>,
}

pub fn parse(req: StartSession) -> Result<StartRequest, ApiError> {
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
