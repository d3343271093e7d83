//! OAuth 2.0 authorization-code flow with PKCE, token refresh, identity and revocation.
//!
//! The `oauth2` crate builds the URLs and requests and types the answers. Its HTTP goes through
//! [`OAuthHttp::send`], which applies the provider's named quirks (see [`Quirk`]) on the way out
//! and normalises the answer on the way back, and keeps the raw status and body so that errors
//! can be classified (transient or not) and accounts named from non-standard fields.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::SecretString;
use crate::catalog::{Provider, Quirk, RevokeRequest, TokenAuth, TokenRequest, Validate};
use crate::quirks;

/// The User-Agent of every request to a provider (Reddit requires a descriptive one).
pub const USER_AGENT: &str = concat!(
    "akhrot-desktop/",
    env!("CARGO_PKG_VERSION"),
    " (local credential broker; +https://github.com/akhrot/akhrot-desktop)"
);

/// The OAuth app the user registered with a provider.
#[derive(Debug, Clone)]
pub struct ClientCreds {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// The client settings the user set (`{tenant}`, `{host}`, …), filled into the URLs.
    pub settings: std::collections::BTreeMap<String, String>,
}

/// What goes to the user's browser, and what stays with the session.
#[derive(Debug)]
pub struct AuthRequest {
    pub url: String,
    pub state: SecretString,
    pub pkce_verifier: Option<SecretString>,
}

/// A token answer, normalised.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
    pub token_type: String,
    /// The whole answer with token values removed (for account names and provider ids).
    pub extra: Value,
    /// When the answer's last byte arrived (`None` when it was not read from the network):
    /// the start of the window in which a rotated refresh token exists only in memory.
    pub received_at: Option<std::time::Instant>,
}

/// Why a token request failed, in the terms the API answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// `invalid_grant`: the code or refresh token is no longer good. Reconnect.
    InvalidGrant(String),
    /// The provider refused for another reason (`invalid_client`, `unauthorized_client`, …).
    Rejected { error: String, description: String },
    /// The provider failed in a way that may pass (5xx, 429, timeout, network, garbled answer).
    Transient(String),
    /// Our configuration is wrong (bad URL in the catalog, …).
    Config(String),
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OAuthError::InvalidGrant(d) => write!(f, "invalid_grant: {d}"),
            OAuthError::Rejected { error, description } => write!(f, "{error}: {description}"),
            OAuthError::Transient(d) | OAuthError::Config(d) => f.write_str(d),
        }
    }
}

impl std::error::Error for OAuthError {}

/// What a provider's token validation endpoint (catalog `validate`) said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Validation {
    /// HTTP 2xx: the token is good; the answer, e.g. for naming the account.
    Valid(Value),
    /// HTTP 401: the provider refused the token.
    Refused,
    /// Anything else (5xx, 429, timeout, network, not JSON): nothing is known; try again later.
    Failed(String),
}

/// What the last provider answer looked like (status and normalised JSON body).
#[derive(Debug, Default, Clone)]
struct Seen {
    status: u16,
    body: Option<Value>,
    received_at: Option<std::time::Instant>,
}

/// The HTTP client for provider endpoints: no redirects followed, bounded time.
#[derive(Clone)]
pub struct OAuthHttp {
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(String);

impl OAuthHttp {
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(USER_AGENT)
            .build()
            .unwrap_or_default();
        Self { client }
    }

    /// Sends one request for the `oauth2` crate, with the provider's quirks applied.
    async fn send(
        &self,
        p: &Provider,
        seen: &Mutex<Seen>,
        req: oauth2::HttpRequest,
    ) -> Result<oauth2::HttpResponse, SendError> {
        let (parts, body) = req.into_parts();
        let mut rb = self
            .client
            .request(parts.method, parts.uri.to_string())
            .header(reqwest::header::ACCEPT, "application/json");
        let json_body = p.token_request == TokenRequest::Json;
        for (name, value) in &parts.headers {
            if json_body && name == reqwest::header::CONTENT_TYPE {
                continue;
            }
            if name == reqwest::header::ACCEPT {
                continue;
            }
            rb = rb.header(name, value);
        }
        let body = if json_body && !body.is_empty() {
            rb = rb.header(reqwest::header::CONTENT_TYPE, "application/json");
            let map: Map<String, Value> = url::form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            serde_json::to_vec(&map).unwrap_or_default()
        } else {
            body
        };
        let resp = rb.body(body).send().await.map_err(|e| {
            SendError(if e.is_timeout() {
                "the provider did not answer in time".into()
            } else {
                format!("cannot reach the provider: {}", without_url(&e))
            })
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            SendError(format!(
                "the provider's answer broke off: {}",
                without_url(&e)
            ))
        })?;
        let received_at = std::time::Instant::now();
        let (status, value) = normalise(p, status, &bytes);
        if let Ok(mut s) = seen.lock() {
            *s = Seen {
                status,
                body: value.clone(),
                received_at: Some(received_at),
            };
        }
        let out_body = match &value {
            Some(v) => serde_json::to_vec(v).unwrap_or_default(),
            None => bytes.to_vec(),
        };
        let mut builder = oauth2::http::Response::builder().status(status);
        if value.is_some() {
            builder = builder.header(oauth2::http::header::CONTENT_TYPE, "application/json");
        }
        builder
            .body(out_body)
            .map_err(|e| SendError(format!("cannot read the provider's answer: {e}")))
    }

    /// An HTTP function for the `oauth2` crate that owns what it needs (its futures are `Send`
    /// and `'static`), and the slot where it records the last answer.
    #[allow(clippy::type_complexity)]
    fn transport(
        &self,
        p: &Provider,
    ) -> (
        impl Fn(
            oauth2::HttpRequest,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, SendError>> + Send>,
        >,
        Arc<Mutex<Seen>>,
    ) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let this = self.clone();
        let provider = Arc::new(p.clone());
        let slot = seen.clone();
        let f = move |req: oauth2::HttpRequest| {
            let this = this.clone();
            let provider = provider.clone();
            let slot = slot.clone();
            Box::pin(async move { this.send(&provider, &slot, req).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        };
        (f, seen)
    }

    /// The consent URL for a new session, with PKCE S256 (unless the catalog says the provider
    /// cannot do PKCE) and a fresh random state.
    pub fn authorize_url(
        &self,
        p: &Provider,
        creds: &ClientCreds,
        redirect_uri: &str,
        scopes: &[String],
    ) -> Result<AuthRequest, OAuthError> {
        let p = &*with_settings(p, creds)?;
        let client = basic_client(p, creds, redirect_uri)?;
        let mut req = client.authorize_url(CsrfToken::new_random);
        let joined = scopes.join(&p.scope_separator);
        if !joined.is_empty() {
            if p.scope_param == "scope" {
                req = req.add_scope(Scope::new(joined));
            } else {
                req = req.add_extra_param(p.scope_param.clone(), joined);
            }
        }
        for (k, v) in &p.authorize_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let mut verifier = None;
        if p.pkce {
            let (challenge, v) = PkceCodeChallenge::new_random_sha256();
            req = req.set_pkce_challenge(challenge);
            verifier = Some(SecretString::new(v.secret().clone()));
        }
        let (url, state) = req.url();
        Ok(AuthRequest {
            url: url.to_string(),
            state: SecretString::new(state.secret().clone()),
            pkce_verifier: verifier,
        })
    }

    /// Exchanges an authorization code.
    pub async fn exchange_code(
        &self,
        p: &Provider,
        creds: &ClientCreds,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<TokenSet, OAuthError> {
        let p = &*with_settings(p, creds)?;
        let client = basic_client(p, creds, redirect_uri)?;
        let (http, seen) = self.transport(p);
        let mut req = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(v) = pkce_verifier {
            req = req.set_pkce_verifier(PkceCodeVerifier::new(v.expose().to_owned()));
        }
        let result = req.request_async(&http).await;
        finish(result, &seen)
    }

    /// Refreshes with a refresh token, at the catalog's `refresh_url` when it names one (Figma)
    /// and at `token_url` otherwise.
    pub async fn refresh(
        &self,
        p: &Provider,
        creds: &ClientCreds,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, OAuthError> {
        let p = &*with_settings(p, creds)?;
        let url = p
            .refresh_endpoint()
            .ok_or_else(|| OAuthError::Config(format!("{} has no token_url", p.code)))?;
        let client = client_with_token_url(p, creds, "http://127.0.0.1/oauth/callback", url)?;
        let (http, seen) = self.transport(p);
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let result = client
            .exchange_refresh_token(&token)
            .request_async(&http)
            .await;
        finish(result, &seen)
    }

    /// GET a JSON document with the access token (userinfo, accessible resources); with
    /// `post_body`, POST that JSON instead (the catalog's `userinfo_body`, e.g. a GraphQL query).
    pub async fn get_json(
        &self,
        url: &str,
        access_token: &SecretString,
        post_body: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let rb = match post_body {
            Some(body) => self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned()),
            None => self.client.get(url),
        };
        let resp = rb
            .bearer_auth(access_token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                OAuthError::Transient(format!(
                    "cannot reach {}: {}",
                    host_of(url),
                    without_url(&e)
                ))
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(OAuthError::Transient(format!(
                "{} answered HTTP {}",
                host_of(url),
                status.as_u16()
            )));
        }
        resp.json().await.map_err(|_| {
            OAuthError::Transient(format!(
                "{} answered with something other than JSON",
                host_of(url)
            ))
        })
    }

    /// Asks the provider's validation endpoint about an access token, with the `Authorization`
    /// scheme the catalog names (Twitch documents `OAuth <token>`).
    pub async fn validate_token(&self, v: &Validate, access_token: &SecretString) -> Validation {
        let mut auth = format!("{} {}", v.scheme, access_token.expose());
        let value = reqwest::header::HeaderValue::from_str(&auth);
        auth.zeroize();
        let Ok(mut value) = value else {
            return Validation::Failed("the stored token cannot be sent in an HTTP header".into());
        };
        value.set_sensitive(true);
        let sent = self
            .client
            .get(&v.url)
            .header(reqwest::header::AUTHORIZATION, value)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Validation::Failed(format!("{} did not answer in time", host_of(&v.url)));
            }
            Err(e) => {
                return Validation::Failed(format!(
                    "cannot reach {}: {}",
                    host_of(&v.url),
                    without_url(&e)
                ));
            }
        };
        let status = resp.status().as_u16();
        if status == 401 {
            return Validation::Refused;
        }
        if !(200..300).contains(&status) {
            return Validation::Failed(format!("{} answered HTTP {status}", host_of(&v.url)));
        }
        match resp.json::<Value>().await {
            Ok(mut doc) => {
                strip_secrets(&mut doc);
                Validation::Valid(doc)
            }
            Err(_) => Validation::Failed(format!(
                "{} answered with something other than JSON",
                host_of(&v.url)
            )),
        }
    }

    /// Revokes a token at the provider, in the shape the catalog's `revoke_request` names: an
    /// RFC 7009 form, a JSON body, or the token itself as Bearer. `hint` is the token's kind
    /// (`access_token` or `refresh_token`). Best effort: the caller deletes locally anyway.
    pub async fn revoke(
        &self,
        p: &Provider,
        creds: &ClientCreds,
        token: &SecretString,
        hint: &str,
    ) -> Result<(), OAuthError> {
        let p = &*with_settings(p, creds)?;
        let Some(url) = &p.revoke_url else {
            return Ok(());
        };
        let mut rb = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json");
        // Client authentication per `token_auth`: HTTP Basic, or the client in the body.
        let basic = match (p.token_auth, &creds.client_secret) {
            (TokenAuth::ClientSecretBasic, Some(secret)) => Some(secret),
            _ => None,
        };
        let mut fields: Vec<(&str, String)> = Vec::new();
        if p.revoke_request != RevokeRequest::Bearer {
            match basic {
                Some(secret) => rb = rb.basic_auth(&creds.client_id, Some(secret.expose())),
                None => {
                    fields.push(("client_id", creds.client_id.clone()));
                    if let Some(s) = creds
                        .client_secret
                        .as_ref()
                        .filter(|_| p.token_auth != TokenAuth::None)
                    {
                        fields.push(("client_secret", s.expose().to_owned()));
                    }
                }
            }
        }
        rb = match p.revoke_request {
            RevokeRequest::Form => {
                fields.push(("token", token.expose().to_owned()));
                fields.push(("token_type_hint", hint.to_owned()));
                rb.form(&fields)
            }
            RevokeRequest::Json => {
                fields.push(("token", token.expose().to_owned()));
                let map: Map<String, Value> = fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::String(v)))
                    .collect();
                rb.json(&map)
            }
            RevokeRequest::Bearer => rb.bearer_auth(token.expose()),
        };
        let resp = rb.send().await.map_err(|e| {
            OAuthError::Transient(format!(
                "cannot reach {}: {}",
                host_of(url),
                without_url(&e)
            ))
        })?;
        let status = resp.status();
        // Slack's `auth.revoke` reports a refusal as `ok: false` with HTTP 200.
        let refused_with_200 = status.is_success()
            && p.has_quirk(Quirk::SlackOkFalse)
            && resp
                .json::<Value>()
                .await
                .is_ok_and(|v| quirks::refused_with_200(p, &v));
        if status.is_success() && !refused_with_200 {
            Ok(())
        } else if refused_with_200 {
            Err(OAuthError::Transient(format!(
                "{} refused the revocation (ok: false)",
                host_of(url)
            )))
        } else {
            Err(OAuthError::Transient(format!(
                "{} answered HTTP {} to the revocation",
                host_of(url),
                status.as_u16()
            )))
        }
    }
}

/// The provider with the client's settings filled into its URLs (see
/// [`Provider::resolve`]); borrowed as it is when the entry has no settings.
pub fn with_settings<'a>(
    p: &'a Provider,
    creds: &ClientCreds,
) -> Result<std::borrow::Cow<'a, Provider>, OAuthError> {
    if p.settings.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(p));
    }
    p.resolve(&creds.settings)
        .map(std::borrow::Cow::Owned)
        .map_err(OAuthError::Config)
}

type ConfiguredClient = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn basic_client(
    p: &Provider,
    creds: &ClientCreds,
    redirect_uri: &str,
) -> Result<ConfiguredClient, OAuthError> {
    let token = p
        .token_url
        .as_deref()
        .ok_or_else(|| OAuthError::Config(format!("{} has no token_url", p.code)))?;
    client_with_token_url(p, creds, redirect_uri, token)
}

/// The `oauth2` client for a provider, its token requests going to `token` (the catalog's
/// `token_url`, or `refresh_url` for refreshes).
fn client_with_token_url(
    p: &Provider,
    creds: &ClientCreds,
    redirect_uri: &str,
    token: &str,
) -> Result<ConfiguredClient, OAuthError> {
    let auth = p
        .authorize_url
        .as_deref()
        .ok_or_else(|| OAuthError::Config(format!("{} has no authorize_url", p.code)))?;
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        OAuthError::Config(format!("{} {what}: {e}", p.code))
    };
    let mut client = BasicClient::new(ClientId::new(creds.client_id.clone()))
        .set_auth_uri(AuthUrl::new(auth.to_owned()).map_err(|e| bad("authorize_url", &e))?)
        .set_token_uri(TokenUrl::new(token.to_owned()).map_err(|e| bad("token_url", &e))?)
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| bad("redirect URI", &e))?,
        );
    let basic = p.token_auth == TokenAuth::ClientSecretBasic;
    client = client.set_auth_type(if basic {
        oauth2::AuthType::BasicAuth
    } else {
        oauth2::AuthType::RequestBody
    });
    match &creds.client_secret {
        Some(secret) if p.token_auth != TokenAuth::None => {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        None if quirks::empty_secret_basic(p) => {
            client = client.set_client_secret(ClientSecret::new(String::new()));
        }
        _ => {}
    }
    Ok(client)
}

type TokenResult = Result<
    oauth2::basic::BasicTokenResponse,
    RequestTokenError<SendError, oauth2::basic::BasicErrorResponse>,
>;

/// Reads a token endpoint's answer without the network, the way a real exchange reads it: the
/// provider's quirks ([`normalise`]), the `oauth2` crate's response types, then the mapping to a
/// [`TokenSet`] or an error. The fuzz target `token_response` drives it with arbitrary answers.
pub fn read_token_answer(p: &Provider, status: u16, body: &[u8]) -> Result<TokenSet, OAuthError> {
    let (status, value) = normalise(p, status, body);
    let bytes = match &value {
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
        None => body.to_vec(),
    };
    let other = |e: serde_json::Error| RequestTokenError::Other(e.to_string());
    let result: TokenResult = if (200..300).contains(&status) {
        serde_json::from_slice(&bytes).map_err(other)
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(e) => Err(RequestTokenError::ServerResponse(e)),
            Err(e) => Err(other(e)),
        }
    };
    finish(
        result,
        &Mutex::new(Seen {
            status,
            body: value,
            received_at: None,
        }),
    )
}

fn finish(result: TokenResult, seen: &Mutex<Seen>) -> Result<TokenSet, OAuthError> {
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    match result {
        Ok(t) => {
            let expires_at = t
                .expires_in()
                .map(|d| crate::now_unix() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4));
            let scopes = t
                .scopes()
                .map(|s| {
                    s.iter()
                        .flat_map(|s| s.split([' ', ',']))
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let mut extra = seen.body.unwrap_or(Value::Null);
            strip_secrets(&mut extra);
            Ok(TokenSet {
                access_token: SecretString::new(t.access_token().secret().clone()),
                refresh_token: t
                    .refresh_token()
                    .map(|r| SecretString::new(r.secret().clone()))
                    .filter(|r| !r.is_empty()),
                expires_at,
                scopes,
                token_type: t.token_type().as_ref().to_owned(),
                extra,
                received_at: seen.received_at,
            })
        }
        Err(RequestTokenError::ServerResponse(e)) if seen.status < 500 && seen.status != 429 => {
            let description = e
                .error_description()
                .map(|d| crate::clean_text(d))
                .unwrap_or_default();
            match e.error() {
                BasicErrorResponseType::InvalidGrant => Err(OAuthError::InvalidGrant(description)),
                other => Err(OAuthError::Rejected {
                    error: other.as_ref().to_owned(),
                    description,
                }),
            }
        }
        Err(RequestTokenError::Request(e)) => Err(OAuthError::Transient(e.0)),
        Err(_) => Err(OAuthError::Transient(if seen.status >= 400 {
            format!(
                "the provider's token endpoint answered HTTP {}",
                seen.status
            )
        } else {
            "the provider's token endpoint answered with something that is not a token".into()
        })),
    }
}

/// Makes a provider's answer look like RFC 6749 says it should: JSON, errors with a 4xx status,
/// token fields at the top level.
fn normalise(p: &Provider, status: u16, bytes: &[u8]) -> (u16, Option<Value>) {
    let mut value: Option<Value> = serde_json::from_slice(bytes).ok().or_else(|| {
        // Form-encoded answers (GitHub without Accept: application/json, old servers).
        let text = std::str::from_utf8(bytes).ok()?;
        if !text.contains('=') || text.trim_start().starts_with('<') {
            return None;
        }
        let map: Map<String, Value> = url::form_urlencoded::parse(text.trim().as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        (map.contains_key("access_token") || map.contains_key("error"))
            .then_some(Value::Object(map))
    });
    let mut status = status;
    if status == 200
        && value
            .as_ref()
            .is_some_and(|v| quirks::refused_with_200(p, v))
    {
        status = 400;
    }
    if let Some(Value::Object(map)) = value.as_mut() {
        // Errors with HTTP 200 (GitHub, and any provider doing the same).
        if status == 200 && map.contains_key("error") && !map.contains_key("access_token") {
            status = 400;
        }
        // Non-standard token paths (Slack's user token under `authed_user`).
        let paths = [
            ("access_token", &p.token_paths.access_token),
            ("refresh_token", &p.token_paths.refresh_token),
            ("expires_in", &p.token_paths.expires_in),
            ("scope", &p.token_paths.scope),
            ("token_type", &p.token_paths.token_type),
        ];
        for (field, path) in paths {
            if let Some(path) = path
                && let Some(v) = lookup(&Value::Object(map.clone()), path).cloned()
            {
                map.insert(field.to_owned(), v);
            }
        }
        if status == 200 && map.contains_key("access_token") && !map.contains_key("token_type") {
            map.insert("token_type".into(), Value::String("bearer".into()));
        }
        // `expires_in` as a string ("3600") is common; the crate wants a number.
        if let Some(Value::String(s)) = map.get("expires_in")
            && let Ok(n) = s.parse::<u64>()
        {
            map.insert("expires_in".into(), Value::from(n));
        }
        if let Some(Value::Null) = map.get("expires_in") {
            map.remove("expires_in");
        }
        // Scopes as an array (some providers) → space-separated string.
        if let Some(Value::Array(a)) = map.get("scope") {
            let joined: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            map.insert("scope".into(), Value::String(joined.join(" ")));
        }
        if let Some(Value::Null) = map.get("refresh_token") {
            map.remove("refresh_token");
        }
    }
    (status, value)
}

/// Removes every token-like value from a JSON answer before it is kept or logged.
fn strip_secrets(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| {
                let k = k.to_ascii_lowercase();
                !(k.contains("token")
                    || k.contains("secret")
                    || k == "code"
                    || k.contains("password"))
            });
            for v in map.values_mut() {
                strip_secrets(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

/// A dotted path into JSON (`authed_user.access_token`, `team.name`, `0.id`).
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the provider".into())
}

/// A reqwest error's text without the URL (which may carry a code or token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), &host_of(u.as_str()));
    }
    s
}

/// Scopes to request: the catalog's defaults plus the request's, without duplicates.
pub fn merge_scopes(defaults: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in defaults.iter().chain(extra) {
        let s = s.trim();
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    out
}

/// Names the account of a new connection: the catalog's `account_field` (from the token answer
/// with a `token.` prefix, else from the userinfo document), then common identity fields.
pub fn account_name(p: &Provider, token_extra: &Value, userinfo: Option<&Value>) -> Option<String> {
    let pick = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let common = [
        "email",
        "login",
        "username",
        "preferred_username",
        "name",
        "sub",
        "id",
    ];
    let mut docs: Vec<&Value> = Vec::new();
    if let Some(field) = &p.account_field {
        let (doc, path) = match field.strip_prefix("token.") {
            Some(path) => (Some(token_extra), path),
            None => (userinfo, field.as_str()),
        };
        if let Some(doc) = doc {
            if let Some(name) = lookup(doc, path).and_then(pick) {
                return Some(name);
            }
            // The field is missing (a user without an email, say): the object that should
            // have held it (`data.viewer` for `data.viewer.email`) is searched next.
            if let Some((parent, _)) = path.rsplit_once('.')
                && let Some(obj) = lookup(doc, parent)
            {
                docs.push(obj);
            }
        }
    }
    docs.extend(userinfo);
    docs.push(token_extra);
    for doc in docs {
        for f in common {
            if let Some(name) = doc.get(f).and_then(pick) {
                return Some(name);
            }
        }
    }
    None
}

/// Shared handle, cheap to clone.
pub type SharedHttp = Arc<OAuthHttp>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn slack_user_token_and_ok_false() {
        let c = Catalog::builtin().unwrap();
        let slack = c.get("slack").unwrap();
        let ok = br#"{"ok":true,"access_token":"xoxb-bot","authed_user":{"id":"U1","access_token":"xoxp-user","scope":"chat:write","token_type":"user"},"team":{"name":"Acme"}}"#;
        let (status, v) = normalise(slack, 200, ok);
        let v = v.unwrap();
        assert_eq!(status, 200);
        assert_eq!(v["access_token"], "xoxp-user");
        let bad = br#"{"ok":false,"error":"invalid_code"}"#;
        assert_eq!(normalise(slack, 200, bad).0, 400);
    }

    #[test]
    fn github_errors_with_200_and_form_answers() {
        let c = Catalog::builtin().unwrap();
        let gh = c.get("github").unwrap();
        let (status, _) = normalise(gh, 200, br#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#);
        assert_eq!(status, 400);
        let (status, v) = normalise(
            gh,
            200,
            b"access_token=gho_x&scope=repo%2Cgist&token_type=bearer",
        );
        assert_eq!(status, 200);
        assert_eq!(v.unwrap()["access_token"], "gho_x");
    }

    #[test]
    fn token_answers_read_whole_without_the_network() {
        let c = Catalog::builtin().unwrap();
        let slack = c.get("slack").unwrap();
        let ok = br#"{"ok":true,"access_token":"xoxb-bot","authed_user":{"id":"U1","access_token":"xoxp-user","refresh_token":"xoxe-r","expires_in":"43200","scope":["chat:write","users:read"],"token_type":"user"}}"#;
        let set = read_token_answer(slack, 200, ok).unwrap();
        assert_eq!(set.access_token.expose(), "xoxp-user");
        assert_eq!(set.refresh_token.as_ref().unwrap().expose(), "xoxe-r");
        assert_eq!(set.scopes, ["chat:write", "users:read"]);
        assert!(set.expires_at.is_some());
        assert!(!set.extra.to_string().contains("xox"), "{}", set.extra);
        let gh = c.get("github").unwrap();
        assert!(matches!(
            read_token_answer(gh, 400, br#"{"error":"invalid_grant","error_description":"gone"}"#),
            Err(OAuthError::InvalidGrant(d)) if d == "gone"
        ));
        assert!(matches!(
            read_token_answer(gh, 200, b"<html>oops</html>"),
            Err(OAuthError::Transient(_))
        ));
        assert!(matches!(
            read_token_answer(gh, 503, b""),
            Err(OAuthError::Transient(_))
        ));
    }

    #[test]
    fn strip_secrets_keeps_identity() {
        let mut v = serde_json::json!({"access_token":"a","refresh_token":"r","team":{"name":"Acme"},"authed_user":{"access_token":"u","id":"U1"}});
        strip_secrets(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"team":{"name":"Acme"},"authed_user":{"id":"U1"}})
        );
    }

    #[test]
    fn scopes_merge_without_duplicates() {
        let d = vec!["openid".to_string(), "email".to_string()];
        assert_eq!(
            merge_scopes(&d, &["email".into(), " repo ".into()]),
            vec!["openid", "email", "repo"]
        );
    }
}

#[cfg(test)]
mod account_tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn linear_accounts_are_named_from_the_graphql_viewer() {
        let c = Catalog::builtin().unwrap();
        let linear = c.get("linear").unwrap();
        let none = serde_json::json!({"token_type": "Bearer", "scope": "read write"});
        let v = serde_json::json!({"data": {"viewer": {"id": "u-1", "name": "Ada", "email": "ada@example.test"}}});
        assert_eq!(
            account_name(linear, &none, Some(&v)).as_deref(),
            Some("ada@example.test")
        );
        // Without an email, the viewer's other identity fields name it.
        let v = serde_json::json!({"data": {"viewer": {"id": "u-2", "name": "Bo"}}});
        assert_eq!(account_name(linear, &none, Some(&v)).as_deref(), Some("Bo"));
    }
}
