//! The token answer that `POST /tokens/fetch` and `POST /admin/token` share, and the kind of
//! credential it holds.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use akhrot_core::SecretString;
use akhrot_core::catalog::{AuthType, Provider};
use akhrot_core::telegram::StringSession;
use akhrot_core::unix_to_rfc3339;
use akhrot_core::vault::{ConnectionInfo, Credentials};

/// The token-answer fields that carry a Telegram session in Telethon's and GramJS's format.
pub const TELEGRAM_SESSION_FIELDS: [&str; 2] = ["sessionTelethon", "sessionGramjs"];

/// How a provider's credentials are held.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Oauth2,
    ApiKey,
    Mtproto,
}

impl From<AuthType> for AuthKind {
    fn from(a: AuthType) -> Self {
        match a {
            AuthType::Oauth2 => AuthKind::Oauth2,
            AuthType::ApiKey => AuthKind::ApiKey,
            AuthType::Mtproto => AuthKind::Mtproto,
        }
    }
}

/// The token answer: `accessToken` and, for providers whose connection holds more than one
/// value, the others by field name (e.g. Twilio `accountSid`, Telegram `apiId` and `apiHash`).
/// Telegram answers also carry the session in both libraries' formats, `sessionTelethon` and
/// `sessionGramjs`; `accessToken` is the session as the user added it.
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenAnswer<'a> {
    /// The access token or API key (Telegram: the session string as the user added it, in
    /// Telethon's or GramJS's format).
    access_token: &'a str,
    /// `Bearer` (or the provider's own type) for OAuth, `api_key`, or `mtproto_session`.
    token_type: &'a str,
    #[serde(rename = "type")]
    #[schema(value_type = AuthKind)]
    kind: &'static str,
    provider: &'a str,
    account: &'a str,
    /// When the token expires (RFC 3339), when known.
    expires_at: Option<String>,
    #[schema(value_type = Vec<String>)]
    scopes: &'a [String],
    /// Telegram: the session as a Telethon `StringSession` string (URL-safe base64, packed IP
    /// address), whichever library made the one the user added. Loads with Telethon
    /// (`StringSession(s)`) and with GramJS.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret"
    )]
    #[schema(value_type = String, required = false)]
    session_telethon: Option<SecretString>,
    /// Telegram: the session as a GramJS `StringSession` string (standard base64, the server
    /// address as text). Loads with GramJS (`new StringSession(s)`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret"
    )]
    #[schema(value_type = String, required = false)]
    session_gramjs: Option<SecretString>,
    /// The connection's other values by field name (e.g. Twilio `accountSid`, Telegram `apiId`
    /// and `apiHash`).
    #[serde(flatten)]
    #[schema(ignore)]
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
        // Stored sessions were parsed when added; one stored before that check and not
        // parseable gets `accessToken` only.
        let session = (p.auth == AuthType::Mtproto)
            .then(|| StringSession::parse(access_token).ok())
            .flatten();
        Self {
            session_telethon: session.as_ref().map(StringSession::to_telethon),
            session_gramjs: session.as_ref().map(StringSession::to_gramjs),
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

/// Writes a secret the answer hands out (the value stays zeroized on drop).
fn expose_secret<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(v.expose()),
        None => s.serialize_none(),
    }
}
