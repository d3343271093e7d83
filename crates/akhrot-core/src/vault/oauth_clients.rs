//! The user's OAuth apps, one per provider: the client id, the secret sealed to its row, the
//! user's choice of redirect, and the client settings (tenant, server address) sealed to it too,
//! since they decide where tokens are sent.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};

use super::seal::{client_binding, client_settings_binding};
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
    /// The client settings the user set (see [`crate::catalog::Setting`]); defaults not included.
    pub settings: BTreeMap<String, String>,
}

impl Vault {
    /// Stores the user's OAuth app for a provider (the secret and the settings sealed to its
    /// row). `settings` must have been checked against the catalog
    /// ([`crate::catalog::Provider::check_settings`]).
    pub fn set_oauth_client(
        &self,
        provider: &str,
        client_id: &str,
        secret: Option<&SecretString>,
        redirect: Option<crate::catalog::Redirect>,
        settings: &BTreeMap<String, String>,
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
        let sealed_settings = if settings.is_empty() {
            None
        } else {
            let json = serde_json::to_vec(settings)
                .map_err(|e| Error::BadRequest(format!("the client settings: {e}")))?;
            Some(self.sealer.seal(client_settings_binding(provider), &json))
        };
        self.db()
            .execute(
                "INSERT INTO oauth_clients (provider, client_id, secret, updated_at, redirect, settings)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (provider) DO UPDATE SET client_id = excluded.client_id,
                     secret = excluded.secret, updated_at = excluded.updated_at,
                     redirect = excluded.redirect, settings = excluded.settings",
                params![
                    provider,
                    client_id,
                    sealed,
                    now_unix(),
                    redirect.map(redirect_str),
                    sealed_settings
                ],
            )
            .map_err(storage)?;
        Ok(())
    }

    /// Opens a client's sealed settings; a row that fails its integrity check is an error.
    fn open_settings(
        &self,
        provider: &str,
        sealed: Option<Vec<u8>>,
    ) -> Result<BTreeMap<String, String>> {
        let Some(sealed) = sealed else {
            return Ok(BTreeMap::new());
        };
        let bad = || {
            Error::Integrity(format!(
                "the stored OAuth client settings of {provider} failed their integrity check; set them again with `akhrot clients set {provider}`"
            ))
        };
        let plain = self
            .sealer
            .open(client_settings_binding(provider), &sealed)
            .map_err(|_| bad())?;
        serde_json::from_slice(&plain).map_err(|_| bad())
    }

    /// The settings of a provider's OAuth client (empty when none is set).
    pub fn client_settings(&self, provider: &str) -> Result<BTreeMap<String, String>> {
        let sealed: Option<Option<Vec<u8>>> = self
            .db()
            .query_row(
                "SELECT settings FROM oauth_clients WHERE provider = ?1",
                params![provider],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage)?;
        self.open_settings(provider, sealed.flatten())
    }

    /// The OAuth app for a provider, if the user set one.
    pub fn oauth_client(&self, provider: &str) -> Result<Option<crate::oauth::ClientCreds>> {
        type Sealed = Option<Vec<u8>>;
        let row: Option<(String, Sealed, Sealed)> = self
            .db()
            .query_row(
                "SELECT client_id, secret, settings FROM oauth_clients WHERE provider = ?1",
                params![provider],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(storage)?;
        let Some((client_id, sealed, sealed_settings)) = row else {
            return Ok(None);
        };
        let settings = self.open_settings(provider, sealed_settings)?;
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
            settings,
        }))
    }

    /// The OAuth apps that are set, without opening any secret: provider → what is known.
    pub fn oauth_clients_info(&self) -> Result<BTreeMap<String, OAuthClientInfo>> {
        self.query_clients_info(
            "SELECT provider, client_id, secret IS NOT NULL, redirect, settings FROM oauth_clients",
            [],
        )
    }

    /// One provider's OAuth app, without opening its secret.
    pub fn oauth_client_info(&self, provider: &str) -> Result<Option<OAuthClientInfo>> {
        Ok(self
            .query_clients_info(
                "SELECT provider, client_id, secret IS NOT NULL, redirect, settings FROM oauth_clients WHERE provider = ?1",
                [provider],
            )?
            .remove(provider))
    }

    fn query_clients_info<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<BTreeMap<String, OAuthClientInfo>> {
        type Row = (String, String, bool, Option<String>, Option<Vec<u8>>);
        let rows: Vec<Row> = {
            let db = self.db();
            let mut st = db.prepare(sql).map_err(storage)?;
            st.query_map(params, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(storage)?
            .collect::<rusqlite::Result<_>>()
            .map_err(storage)?
        };
        rows.into_iter()
            .map(|(provider, client_id, has_secret, redirect, settings)| {
                let settings = self.open_settings(&provider, settings)?;
                Ok((
                    provider,
                    OAuthClientInfo {
                        client_id,
                        has_secret,
                        redirect: redirect.as_deref().and_then(parse_redirect),
                        settings,
                    },
                ))
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::super::tests::{pass, paths};
    use super::*;

    /// A client's settings decide where its tokens and secret are sent, so they are sealed to
    /// their row: settings moved to another provider's row, or changed in place, fail to open
    /// instead of sending anything elsewhere.
    #[test]
    fn client_settings_are_sealed_to_their_row() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(&paths(dir.path()), pass("correct horse")).unwrap();
        let gitlab = BTreeMap::from([("host".to_owned(), "https://git.example.com".to_owned())]);
        v.set_oauth_client("gitlab", "gl", None, None, &gitlab)
            .unwrap();
        v.set_oauth_client("microsoft", "ms", None, None, &BTreeMap::new())
            .unwrap();
        assert_eq!(v.client_settings("gitlab").unwrap(), gitlab);
        assert_eq!(v.oauth_client("gitlab").unwrap().unwrap().settings, gitlab);
        assert!(v.client_settings("microsoft").unwrap().is_empty());
        assert!(v.client_settings("nobody").unwrap().is_empty());

        // Moved to another row.
        v.db()
            .execute(
                "UPDATE oauth_clients SET settings = (SELECT settings FROM oauth_clients WHERE provider = 'gitlab') WHERE provider = 'microsoft'",
                [],
            )
            .unwrap();
        let e = v.client_settings("microsoft").unwrap_err().to_string();
        assert!(e.contains("integrity"), "{e}");
        assert!(v.oauth_client("microsoft").is_err());
        assert!(v.oauth_clients_info().is_err());

        // Changed in place (a flipped byte).
        v.db()
            .execute(
                "UPDATE oauth_clients SET settings = CAST(settings AS BLOB) || x'00' WHERE provider = 'gitlab'",
                [],
            )
            .unwrap();
        assert!(v.client_settings("gitlab").is_err());
    }
}
