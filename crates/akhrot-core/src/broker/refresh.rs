//! Fresh credentials: refreshing at most once per connection at a time, keeping a refreshed
//! token set the vault could not commit, reporting a rejected token, and disconnecting.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::{Broker, BrokerError, REFRESH_MARGIN_SECS, reconnect_message};
use crate::catalog::{AuthType, Provider, RevokeToken};
use crate::oauth::{OAuthError, TokenSet};
use crate::vault::{ConnectionInfo, Credentials};
use crate::{SecretString, now_unix};

/// A refresh answer waiting for the vault to become writable again.
pub(super) struct Uncommitted {
    tokens: TokenSet,
    previous_refresh: SecretString,
}

impl Broker {
    pub(super) fn refresh_lock(&self, conn_id: &str) -> Arc<tokio::sync::Mutex<()>> {
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
        // A provider Akhrot does not refresh (`refresh = false`): its token is good until it expires.
        if !needs_refresh(&info) || (!p.refresh && info.expires_at.is_none_or(|t| t > now_unix())) {
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
        if info.status == crate::vault::ConnectionStatus::NeedsReconnect {
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
        if !p.refresh {
            return Err(BrokerError::TokenExpired(format!(
                "the {} token expired; Akhrot does not refresh {} tokens (the catalog says `refresh = false`), so the user must reconnect it: `akhrot connect {}` with `--account`, or Connections in the Akhrot window",
                p.name, p.name, p.code
            )));
        }
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
                    crate::audit::Entry::new(
                        crate::audit::Action::Refresh,
                        crate::audit::Outcome::Refreshed,
                    )
                    .provider(&p.code)
                    .account(Some(&info.account)),
                );
                Ok(out)
            }
            Err(OAuthError::InvalidGrant(d)) => {
                self.mark_needs_reconnect(
                    p,
                    &info,
                    "the provider refused the refresh token (invalid_grant)".into(),
                )?;
                tracing::warn!(provider = %p.code, account = %info.account, "refresh token refused (invalid_grant)");
                Err(BrokerError::TokenExpired(reconnect_message(p, &d)))
            }
            Err(e) => {
                let err = self.oauth_error(p, e, "refresh");
                self.record(
                    crate::audit::Entry::new(
                        crate::audit::Action::Refresh,
                        crate::audit::Outcome::Failed,
                    )
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
        let by_access = p.revoke_token_kind() == RevokeToken::AccessToken;
        let creds = if p.auth == AuthType::Oauth2 && p.revoke_url.is_some() {
            // A revocation by access token needs one the provider still accepts: refreshed
            // first when it has expired (best effort; else the stored one is tried).
            let fresh = if by_access {
                self.fresh_credentials(&p, account).await.ok()
            } else {
                None
            };
            fresh.or_else(|| self.vault.open_connection(&p.code, account).ok())
        } else {
            None
        };
        if let Some((_, creds)) = creds
            && let Ok(Some(client)) = self.vault.oauth_client(&p.code)
        {
            let (token, hint) = match creds.get("refreshToken").filter(|_| !by_access) {
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
                crate::audit::Action::Disconnect,
                if revoked {
                    crate::audit::Outcome::RevokedAndRemoved
                } else {
                    crate::audit::Outcome::Removed
                },
            )
            .provider(&p.code)
            .account(Some(&removed.account)),
        );
        Ok((removed, revoked))
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
    if info.status == crate::vault::ConnectionStatus::NeedsReconnect {
        return Err(BrokerError::TokenExpired(reconnect_message(p, "")));
    }
    Ok((info, creds))
}
