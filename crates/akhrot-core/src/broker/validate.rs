//! Token validation for providers that require it (catalog `validate`; Twitch: "validate the
//! OAuth token when it starts and on an hourly basis thereafter"): checking one connection's
//! token, and the loop the owner runs from its start until shutdown.
//!
//! A `401` marks the connection `needs_reconnect` (with an audit entry); a token our records
//! say has expired is refreshed first instead (an expired token is expected to be refused); any
//! other failure changes nothing and is tried again at the next round. No vault lock is held
//! while a request is on the network: the vault hands out copies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::{Broker, BrokerError};
use crate::catalog::{AuthType, Provider};
use crate::oauth::Validation;
use crate::vault::{ConnectionInfo, ConnectionStatus};

/// What validating one connection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidateOutcome {
    /// The provider accepted the token.
    Valid,
    /// The provider refused the token: the connection is now `needs_reconnect`.
    Refused,
    /// Nothing to do: the provider validates nothing, the connection already needs
    /// reconnecting, or its token changed while it was being validated.
    Skipped,
    /// Nothing is known (provider unreachable, 5xx, a refresh that failed for a while); tried
    /// again at the next round.
    Failed(String),
}

impl Broker {
    /// Validates one connection's token at the provider's validation endpoint now (refreshing
    /// it first when it has expired by our records), and marks the connection
    /// `needs_reconnect` when the provider refuses it.
    pub async fn validate_connection(&self, p: &Provider, account: &str) -> ValidateOutcome {
        let Some(v) = p.validate.as_ref().filter(|_| p.auth == AuthType::Oauth2) else {
            return ValidateOutcome::Skipped;
        };
        let creds = match self.fresh_credentials(p, Some(account)).await {
            Ok((info, _)) if info.status == ConnectionStatus::NeedsReconnect => {
                return ValidateOutcome::Skipped;
            }
            Ok((_, creds)) => creds,
            // The refresh was refused (and marked so by the refresh), or there is no refresh
            // token: nothing to validate.
            Err(BrokerError::TokenExpired(_)) => return ValidateOutcome::Skipped,
            Err(e) => return ValidateOutcome::Failed(e.to_string()),
        };
        let Some(token) = creds.get("accessToken").cloned() else {
            return ValidateOutcome::Skipped;
        };
        drop(creds);
        match self.http.validate_token(v, &token).await {
            Validation::Valid(_) => {
                tracing::debug!(provider = %p.code, account, "token validated");
                ValidateOutcome::Valid
            }
            Validation::Failed(e) => {
                tracing::info!(provider = %p.code, account, error = %e, "could not validate the token; trying again at the next round");
                ValidateOutcome::Failed(e)
            }
            Validation::Refused => self.mark_refused(p, account, token.expose()).await,
        }
    }

    /// The provider refused `refused`: marks the connection, unless a refresh replaced that
    /// token meanwhile (under the connection's refresh lock, so it cannot happen while marking).
    async fn mark_refused(&self, p: &Provider, account: &str, refused: &str) -> ValidateOutcome {
        let Ok((info, _)) = self.vault.open_connection(&p.code, Some(account)) else {
            return ValidateOutcome::Skipped;
        };
        let lock = self.refresh_lock(&info.id);
        let _guard = lock.lock().await;
        let Ok((info, creds)) = self.vault.open_connection(&p.code, Some(account)) else {
            return ValidateOutcome::Skipped;
        };
        let still_current = creds.get("accessToken").is_some_and(|c| {
            let c = c.expose();
            c.len() == refused.len() && bool::from(c.as_bytes().ct_eq(refused.as_bytes()))
        });
        if !still_current || info.status == ConnectionStatus::NeedsReconnect {
            return ValidateOutcome::Skipped;
        }
        if let Err(e) = self.mark_needs_reconnect(
            p,
            &info,
            format!(
                "{} refused the access token at its validation endpoint (HTTP 401): access was revoked or the app disconnected; the user must reconnect",
                p.name
            ),
        ) {
            return ValidateOutcome::Failed(e.to_string());
        }
        tracing::warn!(provider = %p.code, account = %info.account, "the provider refused the token at its validation endpoint; the connection needs reconnecting");
        ValidateOutcome::Refused
    }

    /// Validates every connection of every provider with `validate`: at once, then each one
    /// `every` seconds after its last validation; a failed one is tried again at the next
    /// round. Returns when `closing` turns true (or its sender goes away).
    pub async fn run_validation(self: Arc<Self>, mut closing: tokio::sync::watch::Receiver<bool>) {
        let providers: Vec<Arc<Provider>> = self
            .catalog
            .iter()
            .filter(|p| p.auth == AuthType::Oauth2 && p.validate.is_some())
            .cloned()
            .collect();
        let Some(tick) = providers
            .iter()
            .filter_map(|p| p.validate.as_ref().map(|v| v.every))
            .min()
        else {
            return;
        };
        let tick = Duration::from_secs(tick.max(1));
        let mut last: HashMap<String, Instant> = HashMap::new();
        loop {
            let round = Instant::now();
            let conns = self.vault.list_connections();
            last.retain(|id, _| conns.iter().any(|c| &c.id == id));
            let due: Vec<(Arc<Provider>, ConnectionInfo)> = conns
                .into_iter()
                .filter_map(|c| {
                    let p = providers.iter().find(|p| p.code == c.provider)?;
                    let every = Duration::from_secs(p.validate.as_ref()?.every);
                    let recent = last
                        .get(&c.id)
                        .is_some_and(|t| round.duration_since(*t) < every);
                    (!recent && c.status != ConnectionStatus::NeedsReconnect)
                        .then(|| (p.clone(), c))
                })
                .collect();
            for (p, c) in due {
                let outcome = tokio::select! {
                    o = self.validate_connection(&p, &c.account) => o,
                    _ = closing.wait_for(|c| *c) => return,
                };
                if !matches!(outcome, ValidateOutcome::Failed(_)) {
                    last.insert(c.id, round);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
        }
    }
}
