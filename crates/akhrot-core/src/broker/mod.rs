//! The broker: OAuth consent sessions, their completion (loopback callback or deep link), and
//! fresh tokens (refreshing at most once per connection at a time).
//!
//! Durability rule: a refreshed token set — with a rotated refresh token — is committed to the
//! vault before any caller sees the new access token, and an answer without a refresh token
//! keeps the old one.
//!
//! `sessions` starts consent sessions and checks what they would refuse, `callback`
//! completes them (loopback callback or deep link) and stores the new connection, `refresh`
//! hands out fresh credentials and disconnects, `validate` checks tokens at the validation
//! endpoint of providers that require it (catalog `validate`); this file holds the broker
//! itself and what they share (token storage, the OAuth client, error wording).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::catalog::{Catalog, Provider, Redirect};
use crate::oauth::{ClientCreds, OAuthError, OAuthHttp, TokenSet};
use crate::vault::{ConnectionInfo, Credentials, Vault};
use crate::{Error, SecretString};

mod callback;
mod refresh;
mod sessions;
mod validate;

pub use callback::{CallbackOutcome, CallbackParams};
use refresh::Uncommitted;
use sessions::Sessions;
pub use sessions::{SessionState, SessionView};
pub use validate::ValidateOutcome;

/// The redirect URI for providers that use the desktop app's deep link.
pub const DEEP_LINK_REDIRECT: &str = "akhrot://oauth/callback";
/// How long a consent session stays open.
pub const SESSION_TTL_SECS: i64 = 600;
/// A token this close to expiry is refreshed before it is handed out.
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// Errors of the broker, each one of the contract's codes.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    ClientNotConfigured(String),
    #[error("{0}")]
    SessionNotFound(String),
    #[error("{0}")]
    SessionExpired(String),
    #[error("{0}")]
    TokenExpired(String),
    #[error("{0}")]
    ProviderError(String),
    /// A session an agent started would replace the stored connection `account`; nothing
    /// was changed.
    #[error("{message}")]
    ConnectionExists { account: String, message: String },
    #[error(transparent)]
    Core(#[from] Error),
}

pub struct Broker {
    audit: Option<crate::audit::Audit>,
    pub vault: Arc<Vault>,
    pub catalog: Arc<Catalog>,
    pub http: OAuthHttp,
    loopback_redirect: String,
    sessions: Mutex<Sessions>,
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Refreshed token sets the vault could not commit (disk full, read-only), by connection
    /// id. With a rotating provider the old refresh token is already used up, so the new set
    /// is kept here and committed at the next use instead of being dropped.
    uncommitted: Mutex<HashMap<String, Uncommitted>>,
}

impl Broker {
    /// `loopback_redirect` is `http://127.0.0.1:<port>/oauth/callback` of the running listener.
    pub fn new(
        vault: Arc<Vault>,
        catalog: Arc<Catalog>,
        http: OAuthHttp,
        loopback_redirect: String,
    ) -> Self {
        Self {
            audit: None,
            vault,
            catalog,
            http,
            loopback_redirect,
            sessions: Mutex::new(Sessions::default()),
            refresh_locks: Mutex::new(HashMap::new()),
            uncommitted: Mutex::new(HashMap::new()),
        }
    }

    /// Records connects, disconnects and refresh outcomes in the audit log.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    fn record(&self, e: crate::audit::Entry) {
        if let Some(a) = &self.audit {
            a.record(e);
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn provider(&self, code: &str) -> Result<Arc<Provider>, BrokerError> {
        self.catalog
            .get(code)
            .cloned()
            .ok_or_else(|| Error::ProviderNotFound(code.to_owned()).into())
    }

    /// The redirect URI a provider's OAuth app must have registered: the user's choice for
    /// this provider, else the catalog's.
    pub fn redirect_uri_for(&self, p: &Provider) -> String {
        let chosen = self
            .vault
            .oauth_client_info(&p.code)
            .ok()
            .flatten()
            .and_then(|c| c.redirect);
        self.redirect_uri(p, chosen)
    }

    /// The redirect URI for a provider given the user's choice (if any).
    pub fn redirect_uri(&self, p: &Provider, chosen: Option<Redirect>) -> String {
        match chosen.unwrap_or(p.redirect) {
            Redirect::Loopback => self.loopback_redirect.clone(),
            Redirect::DeepLink => DEEP_LINK_REDIRECT.to_owned(),
        }
    }

    fn client_for(&self, p: &Provider) -> Result<ClientCreds, BrokerError> {
        self.vault.oauth_client(&p.code)?.ok_or_else(|| {
            BrokerError::ClientNotConfigured(format!(
                "{name} has no OAuth client yet. Register an OAuth app{console} with the redirect URI {redirect} \
                 and give Akhrot its credentials: `akhrot clients set {code} --client-id <ID> --client-secret-stdin` \
                 (or Connections in the Akhrot window).",
                name = p.name,
                console = p
                    .console_url
                    .as_deref()
                    .map(|u| format!(" at {u}"))
                    .unwrap_or_default(),
                redirect = self.redirect_uri_for(p),
                code = p.code,
            ))
        })
    }

    /// Revokes, best effort, tokens that were obtained but will never be stored.
    async fn revoke_discarded(&self, p: &Provider, t: &TokenSet) {
        if p.revoke_url.is_none() {
            return;
        }
        let Ok(client) = self.client_for(p) else {
            return;
        };
        let by_access = p.revoke_token_kind() == crate::catalog::RevokeToken::AccessToken;
        let (token, hint) = match t.refresh_token.as_ref().filter(|_| !by_access) {
            Some(r) => (r, "refresh_token"),
            None => (&t.access_token, "access_token"),
        };
        if let Err(e) = self.http.revoke(p, &client, token, hint).await {
            tracing::warn!(provider = %p.code, error = %e, "could not revoke the discarded tokens at the provider");
        }
    }

    /// Marks a connection `needs_reconnect` after the provider refused its credentials, and
    /// audits why (`detail`, never a secret).
    fn mark_needs_reconnect(
        &self,
        p: &Provider,
        info: &ConnectionInfo,
        detail: String,
    ) -> Result<(), Error> {
        self.vault
            .set_connection_status(&info.id, crate::vault::ConnectionStatus::NeedsReconnect)?;
        self.record(
            crate::audit::Entry::new(
                crate::audit::Action::Refresh,
                crate::audit::Outcome::NeedsReconnect,
            )
            .provider(&p.code)
            .account(Some(&info.account))
            .detail(detail),
        );
        Ok(())
    }

    /// Writes a token set (the durable commit happens before this returns).
    fn store_tokens(
        &self,
        p: &Provider,
        account: &str,
        t: &TokenSet,
        previous_refresh: Option<&SecretString>,
        public: BTreeMap<String, String>,
    ) -> Result<(Arc<ConnectionInfo>, Credentials), BrokerError> {
        let values = token_values(t, previous_refresh);
        let commit_start = std::time::Instant::now();
        self.vault
            .put_connection(p, account, &values, public, t.scopes.clone(), t.expires_at)?;
        let committed = std::time::Instant::now();
        if let Some(received) = t.received_at {
            // The window in which a rotated refresh token existed only in this process: from
            // the answer's last byte to the durable commit (SQLite WAL, synchronous=FULL).
            // `window_us - commit_us` is what we add beyond the commit itself.
            tracing::info!(
                provider = %p.code,
                during = if previous_refresh.is_some() { "refresh" } else { "connect" },
                window_us = u64::try_from(committed.duration_since(received).as_micros()).unwrap_or(u64::MAX),
                commit_us = u64::try_from(committed.duration_since(commit_start).as_micros()).unwrap_or(u64::MAX),
                rotated = t.refresh_token.is_some(),
                "token answer committed"
            );
        }
        Ok(self.vault.open_connection(&p.code, Some(account))?)
    }

    fn oauth_error(&self, p: &Provider, e: OAuthError, during: &str) -> BrokerError {
        match e {
            OAuthError::InvalidGrant(d) if during == "exchange" => {
                BrokerError::ProviderError(format!(
                    "{} refused the authorization code (invalid_grant{}); start a new session",
                    p.name,
                    if d.is_empty() {
                        String::new()
                    } else {
                        format!(": {d}")
                    }
                ))
            }
            OAuthError::InvalidGrant(d) => BrokerError::TokenExpired(reconnect_message(p, &d)),
            OAuthError::Rejected { error, description }
                if error == "invalid_client" || error == "unauthorized_client" =>
            {
                BrokerError::ClientNotConfigured(format!(
                    "{} rejected Akhrot's OAuth client ({error}{}): was the client secret changed or the app deleted? \
                     Set it again with `akhrot clients set {} --client-id <ID> --client-secret-stdin`",
                    p.name,
                    if description.is_empty() {
                        String::new()
                    } else {
                        format!(": {description}")
                    },
                    p.code
                ))
            }
            OAuthError::Rejected { error, description } => BrokerError::ProviderError(format!(
                "{} refused the token request ({error}{})",
                p.name,
                if description.is_empty() {
                    String::new()
                } else {
                    format!(": {description}")
                }
            )),
            OAuthError::Transient(m) => BrokerError::ProviderError(format!(
                "{}'s token endpoint failed: {m}; try again",
                p.name
            )),
            OAuthError::Config(m) => Error::BadRequest(m).into(),
        }
    }
}

/// The values stored for a token set; `previous_refresh` is kept when the answer has none.
fn token_values(t: &TokenSet, previous_refresh: Option<&SecretString>) -> Credentials {
    let mut values = Credentials::new();
    values.insert("accessToken".into(), t.access_token.clone());
    if let Some(r) = t.refresh_token.as_ref().or(previous_refresh) {
        values.insert("refreshToken".into(), r.clone());
    }
    values.insert(
        "tokenType".into(),
        SecretString::from(t.token_type.as_str()),
    );
    values
}

/// Why a refresh token stopped working, in the user's terms.
fn reconnect_message(p: &Provider, detail: &str) -> String {
    let mut reasons = vec![
        "access was revoked at the provider",
        "the refresh token was used elsewhere (providers that rotate refresh tokens refuse a reused one)",
        "the OAuth client's secret was changed",
    ];
    if p.code == "google" {
        reasons.push("Google expires refresh tokens of apps in \"testing\" after 7 days");
    }
    format!(
        "{} refused the refresh token (invalid_grant{}); likely reasons: {}. The user must reconnect it: `akhrot connect {}` with `--account`, or Connections in the Akhrot window (a session an agent starts never replaces a connection).",
        p.name,
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        },
        reasons.join("; "),
        p.code
    )
}
