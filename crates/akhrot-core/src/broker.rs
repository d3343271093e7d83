//! The broker: OAuth consent sessions, their completion (loopback callback or deep link), and
//! fresh tokens (refreshing at most once per connection at a time).
//!
//! Durability rule: a refreshed token set — with a rotated refresh token — is committed to the
//! vault before any caller sees the new access token, and an answer without a refresh token
//! keeps the old one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::catalog::{AuthType, Catalog, Provider, Quirk, Redirect};
use crate::oauth::{self, ClientCreds, OAuthError, OAuthHttp, TokenSet};
use crate::vault::{Agent, ConnectionInfo, Credentials, Vault};
use crate::{Error, SecretString, now_unix};

/// The redirect URI for providers that use the desktop app's deep link.
pub const DEEP_LINK_REDIRECT: &str = "akhrot://oauth/callback";
/// How long a consent session stays open.
pub const SESSION_TTL_SECS: i64 = 600;
/// A token this close to expiry is refreshed before it is handed out.
pub const REFRESH_MARGIN_SECS: i64 = 60;
/// Finished sessions are remembered this long, so agents polling them see the outcome.
const SESSION_KEEP_SECS: i64 = 3600;

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

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Pending,
    Completed,
    Expired,
    Failed,
}

/// What an agent (or the user's CLI) sees of a session.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub provider: String,
    pub status: SessionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The contract's error code when Akhrot itself failed the session (`CONNECTION_EXISTS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub redirect_uri: String,
}

struct Session {
    id: String,
    provider: String,
    /// Who started it (an agent, or `None` for the person's own CLI/UI/desktop). A session an
    /// agent started never replaces a stored connection.
    owner: Option<Agent>,
    redirect_uri: String,
    url: String,
    pkce_verifier: Option<SecretString>,
    account_label: Option<String>,
    created_at: i64,
    state: SessionState,
    account: Option<String>,
    error: Option<String>,
    error_code: Option<String>,
}

impl Session {
    fn expires_at(&self) -> i64 {
        self.created_at + SESSION_TTL_SECS
    }

    fn view(&self, with_url: bool) -> SessionView {
        SessionView {
            session_id: self.id.clone(),
            provider: self.provider.clone(),
            status: self.state.clone(),
            url: with_url.then(|| self.url.clone()),
            expires_at: crate::unix_to_rfc3339(self.expires_at()),
            account: self.account.clone(),
            error: self.error.clone(),
            error_code: self.error_code.clone(),
            redirect_uri: self.redirect_uri.clone(),
        }
    }
}

#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Session>,
    /// SHA-256 of `state` → session id. Removed on first use.
    by_state: HashMap<[u8; 32], String>,
}

impl Sessions {
    /// Marks overdue pending sessions expired and forgets old finished ones.
    fn sweep(&mut self, now: i64) {
        for s in self.by_id.values_mut() {
            if s.state == SessionState::Pending && now >= s.expires_at() {
                s.state = SessionState::Expired;
                s.pkce_verifier = None;
            }
        }
        self.by_id
            .retain(|_, s| now < s.expires_at() + SESSION_KEEP_SECS);
        // Expired sessions keep their state a while, so a late callback says "expired".
        let live: std::collections::HashSet<&String> = self
            .by_id
            .values()
            .filter(|s| matches!(s.state, SessionState::Pending | SessionState::Expired))
            .map(|s| &s.id)
            .collect();
        self.by_state.retain(|_, id| live.contains(id));
    }
}

/// The parameters a provider sends back to the redirect URI.
#[derive(Debug, Default, Clone)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// A parameter came more than once (RFC 6749 §3.1: it must not; which one counts would be
    /// a guess, so such a callback completes nothing).
    pub repeated: bool,
}

impl CallbackParams {
    /// From a query string (`code=…&state=…`).
    pub fn from_query(query: &str) -> Self {
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut p.state,
                "code" => &mut p.code,
                "error" => &mut p.error,
                "error_description" => &mut p.error_description,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            } else {
                p.repeated = true;
            }
        }
        p
    }
}

/// How a callback ended, for the page the person sees (and the HTTP status of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// 200: the connection is stored.
    Connected { provider: String, account: String },
    /// The person (or the provider) said no.
    Denied { provider: String, reason: String },
    /// The provider sent an error, or the code exchange failed.
    Failed { provider: String, reason: String },
    /// The session is older than its 10 minutes.
    Expired { provider: String },
    /// An agent's session would have replaced the stored connection `account`: refused,
    /// nothing stored (`CONNECTION_EXISTS`).
    Conflict { provider: String, account: String },
    /// No pending session has this state: forged, replayed, or from another instance.
    UnknownState,
    /// Not a callback at all (no state, no code).
    Malformed(String),
}

impl CallbackOutcome {
    pub fn http_status(&self) -> u16 {
        match self {
            CallbackOutcome::Connected { .. } => 200,
            CallbackOutcome::Denied { .. } => 403,
            CallbackOutcome::Failed { .. } => 400,
            CallbackOutcome::Expired { .. } => 410,
            CallbackOutcome::Conflict { .. } => 409,
            CallbackOutcome::UnknownState | CallbackOutcome::Malformed(_) => 400,
        }
    }
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

/// A refresh answer waiting for the vault to become writable again.
struct Uncommitted {
    tokens: TokenSet,
    previous_refresh: SecretString,
}

fn state_key(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
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

    /// Checks what [`Broker::start_session`] would refuse, without starting anything: an
    /// unknown or non-OAuth provider, a bad label, no OAuth client, and, for a session an agent
    /// starts (`owner`), a label that is already connected. Call it before prompting the person.
    pub fn check_session(
        &self,
        owner: Option<&Agent>,
        provider: &str,
        account_label: Option<&str>,
    ) -> Result<(Arc<Provider>, Option<String>), BrokerError> {
        let p = self.provider(provider)?;
        if p.auth != AuthType::Oauth2 {
            // A well-formed request that this provider's kind cannot satisfy: a conflict.
            return Err(Error::Conflict(format!(
                "{} is connected with {} values, not OAuth: ask the user to run `akhrot add {}`",
                p.name,
                if p.auth == AuthType::Mtproto {
                    "session"
                } else {
                    "API key"
                },
                p.code
            ))
            .into());
        }
        let label = account_label
            .map(crate::vault::validate_account)
            .transpose()?;
        self.client_for(&p)?;
        if owner.is_some()
            && let Some(label) = &label
            && let Some(taken) = self.vault.taken_label(&p.code, label)
        {
            return Err(connection_exists(&p, &taken));
        }
        Ok((p, label))
    }

    /// Starts a consent session for `provider`, with the catalog's scopes plus `extra_scopes`.
    /// `owner` is the agent that asked (it must have been authorized already), or `None` for
    /// the person's own connect, which may replace a stored connection.
    pub fn start_session(
        &self,
        owner: Option<&Agent>,
        provider: &str,
        extra_scopes: &[String],
        account_label: Option<&str>,
    ) -> Result<SessionView, BrokerError> {
        let (p, label) = self.check_session(owner, provider, account_label)?;
        let creds = self.client_for(&p)?;
        let redirect_uri = self.redirect_uri_for(&p);
        let scopes = oauth::merge_scopes(&p.scopes, extra_scopes);
        let req = self
            .http
            .authorize_url(&p, &creds, &redirect_uri, &scopes)
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let session = Session {
            id: format!("oas_{}", random_hex(16)),
            provider: p.code.clone(),
            owner: owner.cloned(),
            redirect_uri,
            url: req.url,
            pkce_verifier: req.pkce_verifier,
            account_label: label,
            created_at: now_unix(),
            state: SessionState::Pending,
            account: None,
            error: None,
            error_code: None,
        };
        let view = session.view(true);
        let mut s = self.sessions();
        s.sweep(now_unix());
        s.by_state
            .insert(state_key(req.state.expose()), session.id.clone());
        s.by_id.insert(session.id.clone(), session);
        tracing::info!(provider = %p.code, session = %view.session_id, "consent session started");
        Ok(view)
    }

    /// A session as its owner sees it. Another agent's session is "not found".
    pub fn session(&self, owner: Option<&str>, id: &str) -> Result<SessionView, BrokerError> {
        let mut s = self.sessions();
        s.sweep(now_unix());
        match s.by_id.get(id) {
            Some(sess)
                if owner.is_none() || sess.owner.as_ref().map(|a| a.id.as_str()) == owner =>
            {
                Ok(sess.view(sess.state == SessionState::Pending))
            }
            _ => Err(BrokerError::SessionNotFound(
                "no OAuth session with that id (sessions are forgotten an hour after they end)"
                    .into(),
            )),
        }
    }

    /// Completes a session from an `akhrot://oauth/callback?…` deep link.
    pub async fn complete_deep_link(&self, link: &str) -> CallbackOutcome {
        let Ok(url) = url::Url::parse(link) else {
            return CallbackOutcome::Malformed("not a URL".into());
        };
        let path_ok = url.scheme() == "akhrot"
            && (url.host_str() == Some("oauth") && url.path().trim_end_matches('/') == "/callback");
        if !path_ok {
            return CallbackOutcome::Malformed("not an akhrot://oauth/callback link".into());
        }
        let params = CallbackParams::from_query(url.query().unwrap_or(""));
        self.complete_via(params, DEEP_LINK_REDIRECT).await
    }

    /// Completes a session from the loopback callback.
    pub async fn complete_loopback(&self, params: CallbackParams) -> CallbackOutcome {
        let redirect = self.loopback_redirect.clone();
        self.complete_via(params, &redirect).await
    }

    async fn complete_via(&self, params: CallbackParams, arrived_at: &str) -> CallbackOutcome {
        if params.repeated {
            // Refused before the state is looked up, so it stays usable by the real callback.
            return CallbackOutcome::Malformed(
                "this address was opened with a parameter given twice; open the link the provider sent you, as it is".into(),
            );
        }
        let Some(state) = params.state.as_deref().filter(|s| !s.is_empty()) else {
            return CallbackOutcome::Malformed(
                "this address is where a provider sends you back after you approve access; it was opened without a `state`".into(),
            );
        };
        // Take the state out first: whatever happens next, it is used up.
        let taken = {
            let mut s = self.sessions();
            let now = now_unix();
            s.sweep(now);
            let id = s.by_state.remove(&state_key(state));
            id.and_then(|id| s.by_id.get_mut(&id)).map(|sess| {
                let verifier = sess.pkce_verifier.take();
                (
                    sess.id.clone(),
                    sess.provider.clone(),
                    sess.redirect_uri.clone(),
                    sess.account_label.clone(),
                    verifier,
                    sess.state.clone(),
                    sess.owner.clone(),
                )
            })
        };
        let Some((id, provider_code, redirect_uri, label, verifier, state_now, owner)) = taken
        else {
            return CallbackOutcome::UnknownState;
        };
        if state_now == SessionState::Expired {
            return CallbackOutcome::Expired {
                provider: provider_code,
            };
        }
        let p = match self.provider(&provider_code) {
            Ok(p) => p,
            Err(_) => return CallbackOutcome::UnknownState,
        };
        if redirect_uri != arrived_at {
            let reason = format!("this session expected the redirect {redirect_uri}");
            self.finish(&id, SessionState::Failed, None, Some(reason.clone()));
            return CallbackOutcome::Failed {
                provider: p.name.clone(),
                reason,
            };
        }
        if let Some(err) = params.error.as_deref() {
            let desc = params
                .error_description
                .as_deref()
                .map(crate::clean_text)
                .unwrap_or_default();
            let reason = if desc.is_empty() {
                crate::clean_text(err)
            } else {
                format!("{}: {desc}", crate::clean_text(err))
            };
            self.finish(&id, SessionState::Failed, None, Some(reason.clone()));
            return if err == "access_denied" {
                CallbackOutcome::Denied {
                    provider: p.name.clone(),
                    reason,
                }
            } else {
                CallbackOutcome::Failed {
                    provider: p.name.clone(),
                    reason,
                }
            };
        }
        let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
            let reason = "the provider sent neither a code nor an error".to_string();
            self.finish(&id, SessionState::Failed, None, Some(reason.clone()));
            return CallbackOutcome::Failed {
                provider: p.name.clone(),
                reason,
            };
        };
        // The completion's audit entries name the agent that started the session.
        let entry = |outcome: &str| {
            let e = crate::audit::Entry::new("connect", outcome).provider(&p.code);
            match &owner {
                Some(a) => e.agent(&a.id, &a.name),
                None => e,
            }
        };
        match self
            .connect_with_code(
                &p,
                &redirect_uri,
                code,
                verifier.as_ref(),
                label,
                owner.is_some(),
            )
            .await
        {
            Ok(account) => {
                self.record(entry("connected").account(Some(&account)));
                self.finish(&id, SessionState::Completed, Some(account.clone()), None);
                CallbackOutcome::Connected {
                    provider: p.name.clone(),
                    account,
                }
            }
            Err(BrokerError::ConnectionExists { account, message }) => {
                self.record(entry("conflict").account(Some(&account)).detail(
                    "an agent's session would have replaced this connection; nothing was stored",
                ));
                self.finish_with_code(
                    &id,
                    SessionState::Failed,
                    None,
                    Some(format!("CONNECTION_EXISTS: {message}")),
                    Some("CONNECTION_EXISTS".into()),
                );
                CallbackOutcome::Conflict {
                    provider: p.name.clone(),
                    account,
                }
            }
            Err(e) => {
                let reason = e.to_string();
                self.record(entry("failed").detail(&reason));
                self.finish(&id, SessionState::Failed, None, Some(reason.clone()));
                CallbackOutcome::Failed {
                    provider: p.name.clone(),
                    reason,
                }
            }
        }
    }

    fn finish(
        &self,
        id: &str,
        state: SessionState,
        account: Option<String>,
        error: Option<String>,
    ) {
        self.finish_with_code(id, state, account, error, None);
    }

    fn finish_with_code(
        &self,
        id: &str,
        state: SessionState,
        account: Option<String>,
        error: Option<String>,
        error_code: Option<String>,
    ) {
        if let Some(s) = self.sessions().by_id.get_mut(id) {
            s.state = state;
            s.account = account;
            s.error = error;
            s.error_code = error_code;
            s.pkce_verifier = None;
        }
    }

    /// Exchanges the code and stores the connection. `new_only` (a session an agent started):
    /// the connection must be new; if its label, or the account name the provider reports, is
    /// already connected, the tokens are discarded (revoked at the provider where the catalog
    /// says how) and nothing is written.
    async fn connect_with_code(
        &self,
        p: &Provider,
        redirect_uri: &str,
        code: &str,
        verifier: Option<&SecretString>,
        label: Option<String>,
        new_only: bool,
    ) -> Result<String, BrokerError> {
        let creds = self.client_for(p)?;
        let tokens = self
            .http
            .exchange_code(p, &creds, redirect_uri, code, verifier)
            .await
            .map_err(|e| self.oauth_error(p, e, "exchange"))?;
        let userinfo = match &p.userinfo_url {
            Some(u) => match self.http.get_json(u, &tokens.access_token).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(provider = %p.code, error = %e, "could not read the account's identity");
                    None
                }
            },
            None => None,
        };
        let mut public = BTreeMap::new();
        if p.has_quirk(Quirk::JiraAccessibleResources)
            && let Some(resources) = &p.resources_url
        {
            // Quirk: Atlassian APIs are addressed by cloud id, known only after the exchange.
            let v = self
                .http
                .get_json(resources, &tokens.access_token)
                .await
                .map_err(|e| self.oauth_error(p, e, "exchange"))?;
            if let Some(id) = oauth::lookup(&v, "0.id").and_then(|v| v.as_str()) {
                public.insert("cloudId".to_owned(), id.to_owned());
            }
            if let Some(url) = oauth::lookup(&v, "0.url").and_then(|v| v.as_str()) {
                public.insert("siteUrl".to_owned(), url.to_owned());
            }
        }
        let named = |a: &str| crate::vault::validate_account(&crate::clean_text(a)).ok();
        let identity = oauth::account_name(p, &tokens.extra, userinfo.as_ref())
            .as_deref()
            .and_then(named);
        let account = label
            .as_deref()
            .and_then(named)
            .or_else(|| identity.clone())
            .unwrap_or_else(|| "default".to_owned());
        let info = if new_only {
            let values = token_values(&tokens, None);
            let also_free: Vec<&str> = identity.as_deref().into_iter().collect();
            let stored = self.vault.put_new_connection(
                p,
                &account,
                &also_free,
                &values,
                public,
                tokens.scopes.clone(),
                tokens.expires_at,
            )?;
            match stored {
                Ok(_) => self.vault.open_connection(&p.code, Some(&account))?.0,
                Err(taken) => {
                    tracing::warn!(provider = %p.code, account = %taken, "an agent's consent session would have replaced a connection; refused");
                    self.revoke_discarded(p, &tokens).await;
                    return Err(connection_exists(p, &taken));
                }
            }
        } else {
            self.store_tokens(p, &account, &tokens, None, public)?.0
        };
        // A new consent replaces whatever an earlier refresh could not commit.
        self.uncommitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&info.id);
        tracing::info!(provider = %p.code, account = %account, "connected");
        Ok(account)
    }

    /// Revokes, best effort, tokens that were obtained but will never be stored.
    async fn revoke_discarded(&self, p: &Provider, t: &TokenSet) {
        if p.revoke_url.is_none() {
            return;
        }
        let Ok(client) = self.client_for(p) else {
            return;
        };
        let (token, hint) = match &t.refresh_token {
            Some(r) => (r, "refresh_token"),
            None => (&t.access_token, "access_token"),
        };
        if let Err(e) = self.http.revoke(p, &client, token, hint).await {
            tracing::warn!(provider = %p.code, error = %e, "could not revoke the discarded tokens at the provider");
        }
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

    fn refresh_lock(&self, conn_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.refresh_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(conn_id.to_owned())
            .or_default()
            .clone()
    }

    /// A connection's credentials, refreshed first when they expire within the margin.
    /// Concurrent callers for one connection share a single refresh.
    pub async fn fresh_credentials(
        &self,
        p: &Provider,
        account: Option<&str>,
    ) -> Result<(Arc<ConnectionInfo>, Credentials), BrokerError> {
        let (info, creds) = self.vault.open_connection(&p.code, account)?;
        if p.auth != AuthType::Oauth2 {
            return Ok((info, creds));
        }
        if !needs_refresh(&info) {
            return check_usable(p, info, creds);
        }
        let seen_expiry = info.expires_at;
        let lock = self.refresh_lock(&info.id);
        let _guard = lock.lock().await;
        // Someone else may have refreshed while we waited: take their token if it is still good.
        let (info, creds) = self.vault.open_connection(&p.code, Some(&info.account))?;
        let refreshed_meanwhile =
            info.expires_at != seen_expiry && info.expires_at.is_none_or(|t| t > now_unix());
        if refreshed_meanwhile || !needs_refresh(&info) {
            return check_usable(p, info, creds);
        }
        self.refresh_locked(p, info, creds).await
    }

    /// The provider refused `rejected` (an API answered 401 to it): refreshes the connection
    /// now, whatever its expiry says, unless another caller already replaced that token, in
    /// which case the current one is returned. Shares the per-connection lock with
    /// [`Broker::fresh_credentials`], so concurrent callers cause at most one refresh.
    pub async fn refresh_rejected(
        &self,
        p: &Provider,
        account: Option<&str>,
        rejected: &str,
    ) -> Result<(Arc<ConnectionInfo>, Credentials), BrokerError> {
        let (info, creds) = self.vault.open_connection(&p.code, account)?;
        if p.auth != AuthType::Oauth2 {
            return Ok((info, creds));
        }
        let lock = self.refresh_lock(&info.id);
        let _guard = lock.lock().await;
        let (info, creds) = self.vault.open_connection(&p.code, Some(&info.account))?;
        let current = creds.get("accessToken").map(|t| t.expose());
        let still_current = current.is_some_and(|c| {
            c.len() == rejected.len() && bool::from(c.as_bytes().ct_eq(rejected.as_bytes()))
        });
        if !still_current {
            return check_usable(p, info, creds);
        }
        self.refresh_locked(p, info, creds).await
    }

    /// Refreshes a connection; the caller holds its refresh lock.
    async fn refresh_locked(
        &self,
        p: &Provider,
        info: Arc<ConnectionInfo>,
        creds: Credentials,
    ) -> Result<(Arc<ConnectionInfo>, Credentials), BrokerError> {
        if info.status == "needs_reconnect" {
            return Err(BrokerError::TokenExpired(reconnect_message(p, "")));
        }
        // An earlier refresh's answer that could not be committed comes first: its refresh
        // token is the live one. It is handed out only once it is durably stored.
        let pending = self
            .uncommitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&info.id);
        let (info, creds) = match pending {
            None => (info, creds),
            Some(u) => {
                let public = info.public_fields.clone();
                match self.store_tokens(
                    p,
                    &info.account,
                    &u.tokens,
                    Some(&u.previous_refresh),
                    public,
                ) {
                    Ok((info, creds)) => {
                        tracing::info!(provider = %p.code, account = %info.account, "committed a refreshed token set held while the vault could not be written");
                        if !needs_refresh(&info) {
                            return Ok((info, creds));
                        }
                        (info, creds)
                    }
                    Err(e) => {
                        self.uncommitted
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(info.id.clone(), u);
                        return Err(e);
                    }
                }
            }
        };
        let Some(refresh_token) = creds.get("refreshToken").cloned() else {
            return Err(BrokerError::TokenExpired(format!(
                "the {} token expired and {} gave no refresh token to renew it; the user must reconnect it: `akhrot connect {}` with `--account`, or Connections in the Akhrot window",
                p.name, p.name, p.code
            )));
        };
        let client = self.client_for(p)?;
        match self.http.refresh(p, &client, &refresh_token).await {
            Ok(tokens) => {
                let public = info.public_fields.clone();
                let out = match self.store_tokens(
                    p,
                    &info.account,
                    &tokens,
                    Some(&refresh_token),
                    public,
                ) {
                    Ok(out) => out,
                    Err(e) => {
                        tracing::error!(provider = %p.code, account = %info.account, error = %e, "a refreshed token set could not be committed; it is kept in memory and committed at the next use");
                        self.uncommitted
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(
                                info.id.clone(),
                                Uncommitted {
                                    tokens,
                                    previous_refresh: refresh_token,
                                },
                            );
                        return Err(e);
                    }
                };
                tracing::info!(provider = %p.code, account = %info.account, rotated = tokens.refresh_token.is_some(), "token refreshed");
                self.record(
                    crate::audit::Entry::new("refresh", "refreshed")
                        .provider(&p.code)
                        .account(Some(&info.account)),
                );
                Ok(out)
            }
            Err(OAuthError::InvalidGrant(d)) => {
                self.vault
                    .set_connection_status(&info.id, "needs_reconnect")?;
                self.record(
                    crate::audit::Entry::new("refresh", "needs_reconnect")
                        .provider(&p.code)
                        .account(Some(&info.account))
                        .detail("the provider refused the refresh token (invalid_grant)"),
                );
                tracing::warn!(provider = %p.code, account = %info.account, "refresh token refused (invalid_grant)");
                Err(BrokerError::TokenExpired(reconnect_message(p, &d)))
            }
            Err(e) => {
                let err = self.oauth_error(p, e, "refresh");
                self.record(
                    crate::audit::Entry::new("refresh", "failed")
                        .provider(&p.code)
                        .account(Some(&info.account))
                        .detail(err.to_string()),
                );
                Err(err)
            }
        }
    }

    /// Removes a connection: revokes at the provider where the catalog says how (best effort),
    /// and always deletes it locally. Returns the removed connection and whether it was revoked.
    pub async fn disconnect(
        &self,
        provider: &str,
        account: Option<&str>,
    ) -> Result<(ConnectionInfo, bool), BrokerError> {
        let p = self.provider(provider)?;
        let mut revoked = false;
        if p.auth == AuthType::Oauth2
            && p.revoke_url.is_some()
            && let Ok((_, creds)) = self.vault.open_connection(&p.code, account)
            && let Ok(Some(client)) = self.vault.oauth_client(&p.code)
        {
            let (token, hint) = match creds.get("refreshToken") {
                Some(r) => (r.clone(), "refresh_token"),
                None => (
                    creds.get("accessToken").cloned().unwrap_or_default(),
                    "access_token",
                ),
            };
            match self.http.revoke(&p, &client, &token, hint).await {
                Ok(()) => revoked = true,
                Err(e) => {
                    tracing::warn!(provider = %p.code, error = %e, "revocation at the provider failed; removing locally anyway")
                }
            }
        }
        let removed = self.vault.delete_connection(&p.code, account)?;
        self.record(
            crate::audit::Entry::new(
                "disconnect",
                if revoked {
                    "revoked_and_removed"
                } else {
                    "removed"
                },
            )
            .provider(&p.code)
            .account(Some(&removed.account)),
        );
        Ok((removed, revoked))
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

/// `CONNECTION_EXISTS` for `account` of `p`: what happened and what the person can do.
fn connection_exists(p: &Provider, account: &str) -> BrokerError {
    BrokerError::ConnectionExists {
        account: account.to_owned(),
        message: format!(
            "{name} account `{account}` is already connected in Akhrot, and a session an agent starts never replaces a connection; nothing was changed. \
             To reconnect it, the person runs `akhrot connect {code} --account \"{account}\"` (or uses Connections in the Akhrot window or the desktop app).",
            name = p.name,
            code = p.code,
        ),
    }
}

/// Whether to refresh before handing out: within [`REFRESH_MARGIN_SECS`] of expiry, or within
/// half the token's lifetime for tokens that live less than twice the margin.
fn needs_refresh(info: &ConnectionInfo) -> bool {
    info.expires_at.is_some_and(|t| {
        let lifetime = (t - info.updated_at).max(0);
        t - REFRESH_MARGIN_SECS.min(lifetime / 2) <= now_unix()
    })
}

fn check_usable(
    p: &Provider,
    info: Arc<ConnectionInfo>,
    creds: Credentials,
) -> Result<(Arc<ConnectionInfo>, Credentials), BrokerError> {
    if info.status == "needs_reconnect" {
        return Err(BrokerError::TokenExpired(reconnect_message(p, "")));
    }
    Ok((info, creds))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;
    use crate::vault::Unlock;

    fn broker(dir: &std::path::Path) -> Broker {
        let paths = Paths {
            data_dir: dir.join("data"),
            config_dir: dir.join("config"),
        };
        let vault = Arc::new(
            Vault::open(
                &paths,
                Unlock::Passphrase(SecretString::from("unit test pass")),
            )
            .unwrap(),
        );
        vault
            .set_oauth_client("github", "cid", Some(&SecretString::from("sec")), None)
            .unwrap();
        Broker::new(
            vault,
            Arc::new(Catalog::builtin().unwrap()),
            OAuthHttp::new(std::time::Duration::from_secs(2)),
            "http://127.0.0.1:9/oauth/callback".into(),
        )
    }

    fn agent(id: &str) -> Agent {
        Agent {
            id: id.into(),
            name: format!("{id} name"),
        }
    }

    fn state_of(url: &str) -> String {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned()
    }

    #[tokio::test]
    async fn sessions_expire_after_ten_minutes_and_states_work_once() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        let v = b
            .start_session(Some(&agent("agent-a")), "github", &[], None)
            .unwrap();
        let state = state_of(v.url.as_deref().unwrap());
        // Age the session past its 10 minutes.
        b.sessions()
            .by_id
            .get_mut(&v.session_id)
            .unwrap()
            .created_at -= SESSION_TTL_SECS + 1;
        assert_eq!(
            b.session(Some("agent-a"), &v.session_id).unwrap().status,
            SessionState::Expired
        );
        let params = CallbackParams {
            state: Some(state.clone()),
            code: Some("c".into()),
            ..Default::default()
        };
        // The expired session's state is gone: the callback cannot complete it.
        let out = b.complete_loopback(params.clone()).await;
        assert_eq!(
            out,
            CallbackOutcome::Expired {
                provider: "github".into()
            }
        );
        assert_eq!(out.http_status(), 410);
        assert_eq!(
            b.complete_loopback(params).await,
            CallbackOutcome::UnknownState,
            "used up"
        );

        // A fresh session: an error answer uses the state up; a replay is unknown.
        let v = b
            .start_session(Some(&agent("agent-a")), "github", &[], None)
            .unwrap();
        let state = state_of(v.url.as_deref().unwrap());
        let denied = CallbackParams {
            state: Some(state.clone()),
            error: Some("access_denied".into()),
            ..Default::default()
        };
        let out = b.complete_loopback(denied.clone()).await;
        assert!(matches!(out, CallbackOutcome::Denied { .. }), "{out:?}");
        assert_eq!(out.http_status(), 403);
        assert_eq!(
            b.complete_loopback(denied).await,
            CallbackOutcome::UnknownState
        );
        let s = b.session(Some("agent-a"), &v.session_id).unwrap();
        assert_eq!(s.status, SessionState::Failed);
        assert!(
            s.url.is_none(),
            "a finished session no longer shows its URL"
        );
        // Sessions belong to the agent that started them.
        assert!(matches!(
            b.session(Some("agent-b"), &v.session_id),
            Err(BrokerError::SessionNotFound(_))
        ));
        assert!(
            b.session(None, &v.session_id).is_ok(),
            "the user sees every session"
        );
    }

    #[tokio::test]
    async fn a_repeated_parameter_completes_nothing_and_spends_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        let v = b
            .start_session(Some(&agent("a")), "github", &[], None)
            .unwrap();
        let state = state_of(v.url.as_deref().unwrap());
        for q in [
            format!("code=c&state={state}&state=forged"),
            format!("code=c&state=forged&state={state}"),
            format!("code=c&code=d&state={state}"),
            format!("code=c&state={state}&error=x&error=y"),
        ] {
            let p = CallbackParams::from_query(&q);
            assert!(p.repeated, "{q}");
            assert!(
                matches!(b.complete_loopback(p).await, CallbackOutcome::Malformed(_)),
                "{q}"
            );
            // The same through the deep link (the desktop app's way in).
            assert!(
                matches!(
                    b.complete_deep_link(&format!("akhrot://oauth/callback?{q}"))
                        .await,
                    CallbackOutcome::Malformed(_)
                ),
                "{q}"
            );
        }
        assert_eq!(
            b.session(Some("a"), &v.session_id).unwrap().status,
            SessionState::Pending,
            "nothing touched the session"
        );
        // A deep link with a code and no state, or an empty one.
        for q in ["code=c", "code=c&state="] {
            assert!(matches!(
                b.complete_deep_link(&format!("akhrot://oauth/callback?{q}"))
                    .await,
                CallbackOutcome::Malformed(_)
            ));
        }
        // The state is still good once: used (the loopback session refuses the deep link, so
        // it fails), then a replay of the same link is an unknown state.
        let link = format!("akhrot://oauth/callback?code=c&state={state}");
        assert!(matches!(
            b.complete_deep_link(&link).await,
            CallbackOutcome::Failed { .. }
        ));
        assert_eq!(
            b.complete_deep_link(&link).await,
            CallbackOutcome::UnknownState
        );
    }

    #[test]
    fn an_agent_cannot_start_a_session_for_a_connected_label_but_the_person_can() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        let p = b.provider("github").unwrap();
        let mut values = Credentials::new();
        values.insert("accessToken".into(), SecretString::from("victim-token"));
        b.vault
            .put_connection(
                &p,
                "victim@example.com",
                &values,
                BTreeMap::new(),
                vec![],
                None,
            )
            .unwrap();
        let bot = agent("bot");
        match b.start_session(Some(&bot), "github", &[], Some("victim@example.com")) {
            Err(BrokerError::ConnectionExists { account, message }) => {
                assert_eq!(account, "victim@example.com");
                assert!(message.contains("akhrot connect github"), "{message}");
            }
            other => panic!("{:?}", other.map(|v| v.session_id)),
        }
        assert!(
            matches!(
                b.start_session(Some(&bot), "github", &[], Some("Victim@Example.COM")),
                Err(BrokerError::ConnectionExists { account, .. }) if account == "victim@example.com"
            ),
            "a label that differs only in case is the same account"
        );
        // A fresh label, no label, and the person's own session are fine.
        b.start_session(Some(&bot), "github", &[], Some("new"))
            .unwrap();
        b.start_session(Some(&bot), "github", &[], None).unwrap();
        b.start_session(None, "github", &[], Some("victim@example.com"))
            .unwrap();
        // The vault refuses a new connection whose label or identity is taken.
        let taken = b
            .vault
            .put_new_connection(
                &p,
                "other",
                &["victim@example.com"],
                &values,
                BTreeMap::new(),
                vec![],
                None,
            )
            .unwrap();
        assert_eq!(taken.map(|_| ()), Err("victim@example.com".to_owned()));
        assert!(b.vault.find_connection("github", Some("other")).is_none());
        let first = b
            .vault
            .put_new_connection(&p, "other", &[], &values, BTreeMap::new(), vec![], None)
            .unwrap();
        assert!(first.is_ok());
        let second = b
            .vault
            .put_new_connection(&p, "other", &[], &values, BTreeMap::new(), vec![], None)
            .unwrap();
        assert_eq!(second.map(|_| ()), Err("other".to_owned()));
    }

    #[tokio::test]
    async fn a_loopback_session_cannot_be_completed_through_a_deep_link() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        let v = b.start_session(None, "github", &[], None).unwrap();
        let state = state_of(v.url.as_deref().unwrap());
        let out = b
            .complete_deep_link(&format!("akhrot://oauth/callback?code=c&state={state}"))
            .await;
        assert!(matches!(out, CallbackOutcome::Failed { .. }), "{out:?}");
        for bad in [
            "akhrot://evil/callback?state=x",
            "https://x/oauth/callback?state=x",
            "not a url",
        ] {
            assert!(
                matches!(
                    b.complete_deep_link(bad).await,
                    CallbackOutcome::Malformed(_)
                ),
                "{bad}"
            );
        }
        let out = b
            .complete_deep_link("akhrot://oauth/callback?code=c&state=forged")
            .await;
        assert_eq!(out, CallbackOutcome::UnknownState);
    }
}
