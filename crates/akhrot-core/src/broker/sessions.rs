//! Consent sessions: starting one (state, PKCE, the authorization URL), checking beforehand
//! what it would refuse (a label already connected, for a session an agent starts), and what
//! its owner sees while polling it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Broker, BrokerError, SESSION_TTL_SECS};
use crate::catalog::{AuthType, Provider};
use crate::oauth;
use crate::text::random_hex;
use crate::vault::Agent;
use crate::{Error, SecretString, now_unix};

/// Finished sessions are remembered this long, so agents polling them see the outcome.
const SESSION_KEEP_SECS: i64 = 3600;

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

pub(super) struct Session {
    pub(super) id: String,
    pub(super) provider: String,
    /// Who started it (an agent, or `None` for the person's own CLI/UI/desktop). A session an
    /// agent started never replaces a stored connection.
    pub(super) owner: Option<Agent>,
    pub(super) redirect_uri: String,
    pub(super) url: String,
    pub(super) pkce_verifier: Option<SecretString>,
    pub(super) account_label: Option<String>,
    pub(super) created_at: i64,
    pub(super) state: SessionState,
    pub(super) account: Option<String>,
    pub(super) error: Option<String>,
    pub(super) error_code: Option<String>,
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
pub(super) struct Sessions {
    pub(super) by_id: HashMap<String, Session>,
    /// SHA-256 of `state` → session id. Removed on first use.
    pub(super) by_state: HashMap<[u8; 32], String>,
}

impl Sessions {
    /// Marks overdue pending sessions expired and forgets old finished ones.
    pub(super) fn sweep(&mut self, now: i64) {
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

pub(super) fn state_key(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

impl Broker {
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
        // A client setting the provider's URLs need (a tenant, a server) is part of the client.
        oauth::with_settings(&p, &creds)
            .map_err(|e| BrokerError::ClientNotConfigured(e.to_string()))?;
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
}

/// `CONNECTION_EXISTS` for `account` of `p`: what happened and what the person can do.
pub(super) fn connection_exists(p: &Provider, account: &str) -> BrokerError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{CallbackOutcome, CallbackParams};
    use crate::catalog::Catalog;
    use crate::oauth::OAuthHttp;
    use crate::paths::Paths;
    use crate::vault::Unlock;
    use crate::vault::{Credentials, Vault};
    use std::collections::BTreeMap;

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
            .set_oauth_client(
                "github",
                "cid",
                Some(&SecretString::from("sec")),
                None,
                &Default::default(),
            )
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
