//! The user's OAuth apps, one per provider: the client id, the secret sealed to its row and
//! the user's choice of redirect.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};

use super::seal::client_binding;
use super::{Vault, storage};
use crate::secret::SecretString;
use crate::{Error, Result, now_unix};

/// What is known of an OAuth app without opening its secret.
#[derive(Debug, Clone)]
pub struct OAuthClientInfo {
    pub client_id: String,
    pub has_secret: bool,
    /// The user's choice of redirect, overriding the catalog's.
    pub redirect: Option<crate::catalog::Redirect>,
}

impl Vault {
    /// Stores the user's OAuth app for a provider (the secret sealed to its row).
    pub fn set_oauth_client(
        &self,
        provider: &str,
        client_id: &str,
        secret: Option<&SecretString>,
        redirect: Option<crate::catalog::Redirect>,
    ) -> Result<()> {
        let client_id = client_id.trim();
        if client_id.is_empty() || client_id.len() > 1024 || client_id.chars().any(char::is_control)
        {
            return Err(Error::BadRequest(
                "a client id is 1-1024 printable characters".into(),
            ));
        }
        let sealed = secret.filter(|s| !s.expose().trim().is_empty()).map(|s| {
            self.sealer
                .seal(client_binding(provider), s.expose().trim().as_bytes())
        });
        self.db()
            .execute(
                "INSERT INTO oauth_clients (provider, client_id, secret, updated_at, redirect)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (provider) DO UPDATE SET client_id = excluded.client_id,
                     secret = excluded.secret, updated_at = excluded.updated_at,
                     redirect = excluded.redirect",
                params![
                    provider,
                    client_id,
                    sealed,
                    now_unix(),
                    redirect.map(redirect_str)
                ],
            )
            .map_err(storage)?;
        Ok(())
    }

    /// The OAuth app for a provider, if the user set one.
    pub fn oauth_client(&self, provider: &str) -> Result<Option<crate::oauth::ClientCreds>> {
        let row: Option<(String, Option<Vec<u8>>)> = self
            .db()
            .query_row(
                "SELECT client_id, secret FROM oauth_clients WHERE provider = ?1",
                params![provider],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(storage)?;
        let Some((client_id, sealed)) = row else {
            return Ok(None);
        };
        let client_secret = match sealed {
            None => None,
            Some(s) => {
                let plain = self.sealer.open(client_binding(provider), &s).map_err(|_| {
                    Error::Integrity(format!(
                        "the stored OAuth client secret of {provider} failed its integrity check; set it again with `akhrot clients set {provider}`"
                    ))
                })?;
                Some(SecretString::new(
                    String::from_utf8_lossy(&plain).into_owned(),
                ))
            }
        };
        Ok(Some(crate::oauth::ClientCreds {
            client_id,
            client_secret,
        }))
    }

    /// The OAuth apps that are set, without opening any secret: provider → what is known.
    pub fn oauth_clients_info(&self) -> Result<BTreeMap<String, OAuthClientInfo>> {
        self.query_clients_info(
            "SELECT provider, client_id, secret IS NOT NULL, redirect FROM oauth_clients",
            [],
        )
    }

    /// One provider's OAuth app, without opening its secret.
    pub fn oauth_client_info(&self, provider: &str) -> Result<Option<OAuthClientInfo>> {
        Ok(self
            .query_clients_info(
                "SELECT provider, client_id, secret IS NOT NULL, redirect FROM oauth_clients WHERE provider = ?1",
                [provider],
            )?
            .remove(provider))
    }

    fn query_clients_info<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<BTreeMap<String, OAuthClientInfo>> {
        let db = self.db();
        let mut st = db.prepare(sql).map_err(storage)?;
        let rows = st
            .query_map(params, |r| {
                let redirect: Option<String> = r.get(3)?;
                Ok((
                    r.get::<_, String>(0)?,
                    OAuthClientInfo {
                        client_id: r.get(1)?,
                        has_secret: r.get(2)?,
                        redirect: redirect.as_deref().and_then(parse_redirect),
                    },
                ))
            })
            .map_err(storage)?;
        rows.collect::<rusqlite::Result<_>>().map_err(storage)
    }
}

fn redirect_str(r: crate::catalog::Redirect) -> &'static str {
    match r {
        crate::catalog::Redirect::Loopback => "loopback",
        crate::catalog::Redirect::DeepLink => "deep_link",
    }
}

fn parse_redirect(s: &str) -> Option<crate::catalog::Redirect> {
    match s {
        "loopback" => Some(crate::catalog::Redirect::Loopback),
        "deep_link" => Some(crate::catalog::Redirect::DeepLink),
        _ => None,
    }
}
