//! The token answer that `POST /tokens/fetch` and `POST /admin/token` share, and the kind of
//! credential it holds.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use akhrot_core::catalog::{AuthType, Provider};
use akhrot_core::unix_to_rfc3339;
use akhrot_core::vault::{ConnectionInfo, Credentials};

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
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenAnswer<'a> {
    /// The access token or API key (Telegram: the session string).
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
