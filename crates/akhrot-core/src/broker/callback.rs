//! Completing a consent session: the provider's answer at the loopback callback or through
//! the deep link, the code exchange, and storing the new connection.

use super::sessions::{SessionState, connection_exists, state_key};
use super::{Broker, BrokerError, DEEP_LINK_REDIRECT, token_values};
use crate::catalog::Provider;
use crate::oauth;
use crate::{SecretString, now_unix};

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

impl Broker {
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
            let reason = p.with_error_hint(if desc.is_empty() {
                crate::clean_text(err)
            } else {
                format!("{}: {desc}", crate::clean_text(err))
            });
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
        let entry = |outcome: crate::audit::Outcome| {
            let e =
                crate::audit::Entry::new(crate::audit::Action::Connect, outcome).provider(&p.code);
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
                self.record(entry(crate::audit::Outcome::Connected).account(Some(&account)));
                self.finish(&id, SessionState::Completed, Some(account.clone()), None);
                CallbackOutcome::Connected {
                    provider: p.name.clone(),
                    account,
                }
            }
            Err(BrokerError::ConnectionExists { account, message }) => {
                self.record(entry(crate::audit::Outcome::Conflict).account(Some(&account)).detail(
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
                let reason = p.with_error_hint(e.to_string());
                self.record(entry(crate::audit::Outcome::Failed).detail(&reason));
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
        // The client's settings (tenant, server) fill the identity and resources URLs too.
        let resolved =
            oauth::with_settings(p, &creds).map_err(|e| self.oauth_error(p, e, "exchange"))?;
        let p: &Provider = &resolved;
        let mut tokens = self
            .http
            .exchange_code(p, &creds, redirect_uri, code, verifier)
            .await
            .map_err(|e| self.oauth_error(p, e, "exchange"))?;
        if !p.refresh {
            // The catalog's `refresh = false`: Akhrot never refreshes this provider's tokens,
            // so a refresh token in the answer is not kept.
            tokens.refresh_token = None;
        }
        // A provider that requires validation (catalog `validate`) sees each new token
        // validated before it is stored; a refused one fails the connect.
        let validated = match &p.validate {
            Some(v) => match self.http.validate_token(v, &tokens.access_token).await {
                oauth::Validation::Valid(doc) => Some(doc),
                oauth::Validation::Refused => {
                    return Err(BrokerError::ProviderError(format!(
                        "{} refused the new token at its validation endpoint (HTTP 401); nothing was stored, start a new session",
                        p.name
                    )));
                }
                oauth::Validation::Failed(e) => {
                    tracing::warn!(provider = %p.code, error = %e, "could not validate the new token; it is validated again later");
                    None
                }
            },
            None => None,
        };
        let userinfo = match &p.userinfo_url {
            Some(u) => match self
                .http
                .get_json(u, &tokens.access_token, p.userinfo_body.as_deref())
                .await
            {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(provider = %p.code, error = %e, "could not read the account's identity");
                    None
                }
            },
            // Without a userinfo endpoint, the validation answer is the identity document.
            None => validated,
        };
        // Quirk jira_accessible_resources: values the services' URLs need, read once now.
        let public = crate::quirks::after_exchange(p, &self.http, &tokens.access_token)
            .await
            .map_err(|e| self.oauth_error(p, e, "exchange"))?;
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
}
