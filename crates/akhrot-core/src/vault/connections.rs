//! Connections: a provider account's values sealed to their row, stored, looked up (by
//! provider, and by provider and account), opened and removed.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::seal::conn_binding;
use super::{Vault, storage};
use crate::catalog::{AuthType, Provider};
use crate::crypto;
use crate::secret::SecretString;
use crate::{Error, Result, now_unix};

const MAX_FIELD_LEN: usize = 16 * 1024;

#[derive(Debug)]
pub(super) struct ConnRow {
    pub(super) info: Arc<ConnectionInfo>,
    pub(super) sealed: Vec<u8>,
}

/// Whether a connection can be used. Stored and shown as `connected` / `needs_reconnect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    #[default]
    Connected,
    /// The provider refused the refresh token: the person must connect again.
    NeedsReconnect,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::NeedsReconnect => "needs_reconnect",
        }
    }

    /// Reads a stored status; anything but `connected` is not usable as is.
    fn from_stored(s: &str) -> Self {
        match s {
            "connected" => ConnectionStatus::Connected,
            _ => ConnectionStatus::NeedsReconnect,
        }
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection's public facts (no secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    pub id: String,
    pub provider: String,
    pub account: String,
    pub auth_type: String,
    pub status: ConnectionStatus,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    /// Values the catalog marks as not secret (account SID, domain, project ref, API id).
    pub public_fields: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The opened secret values of a connection, by field name.
pub type Credentials = BTreeMap<String, SecretString>;

impl Vault {
    /// Stores an API-key or MTProto connection (replacing the same account's values).
    /// Values are checked against the catalog's field list. Returns the record and whether
    /// an existing connection was replaced.
    pub fn put_key_connection(
        &self,
        provider: &Provider,
        account: &str,
        values: BTreeMap<String, SecretString>,
    ) -> Result<(ConnectionInfo, bool)> {
        if provider.auth == AuthType::Oauth2 {
            return Err(Error::BadRequest(format!(
                "{} connects with OAuth, not with pasted values: start a consent session instead",
                provider.name
            )));
        }
        let account = validate_account(account)?;
        let values = validate_fields(provider, values)?;
        let public_fields: BTreeMap<String, String> = provider
            .fields
            .iter()
            .filter(|f| !f.secret)
            .filter_map(|f| {
                values
                    .get(&f.name)
                    .map(|v| (f.name.clone(), v.expose().to_owned()))
            })
            .collect();
        self.put_connection(provider, &account, &values, public_fields, Vec::new(), None)
    }

    /// Stores a connection's values sealed to its row (insert, or replace the same account).
    pub fn put_connection(
        &self,
        provider: &Provider,
        account: &str,
        values: &Credentials,
        public_fields: BTreeMap<String, String>,
        scopes: Vec<String>,
        expires_at: Option<i64>,
    ) -> Result<(ConnectionInfo, bool)> {
        let db = self.db();
        let existing = self.find_connection(&provider.code, Some(account));
        self.write_connection(
            &db,
            existing,
            provider,
            account,
            values,
            public_fields,
            scopes,
            expires_at,
        )
    }

    /// The stored account of `provider` that `label` would be mistaken for: the same label,
    /// ignoring case (`Victim@Example.com` is `victim@example.com` to a person, and to most
    /// providers' account names).
    pub fn taken_label(&self, provider: &str, label: &str) -> Option<String> {
        let c = self.cache_read();
        let p = c.by_provider.get(provider)?;
        let wanted = label.to_lowercase();
        p.rows
            .iter()
            .map(|r| &r.info.account)
            .find(|a| **a == label || a.to_lowercase() == wanted)
            .cloned()
    }

    /// Stores a new connection, never replacing one: if `account`, or any label in `also_free`,
    /// is already an account of this provider (see [`Vault::taken_label`]), nothing is written
    /// and the inner `Err` names the stored account. The check and the write happen under the
    /// database lock, so of two callers racing for one new label exactly one stores it.
    #[allow(clippy::too_many_arguments)]
    pub fn put_new_connection(
        &self,
        provider: &Provider,
        account: &str,
        also_free: &[&str],
        values: &Credentials,
        public_fields: BTreeMap<String, String>,
        scopes: Vec<String>,
        expires_at: Option<i64>,
    ) -> Result<std::result::Result<ConnectionInfo, String>> {
        let db = self.db();
        let taken = std::iter::once(account)
            .chain(also_free.iter().copied())
            .find_map(|label| self.taken_label(&provider.code, label));
        if let Some(label) = taken {
            return Ok(Err(label));
        }
        let (info, _) = self.write_connection(
            &db,
            None,
            provider,
            account,
            values,
            public_fields,
            scopes,
            expires_at,
        )?;
        Ok(Ok(info))
    }

    /// Inserts or (when `existing` is the same account's row) replaces a connection. The
    /// caller holds the database lock (`db`) from its check of `existing` to here.
    #[allow(clippy::too_many_arguments)]
    fn write_connection(
        &self,
        db: &Connection,
        existing: Option<ConnectionInfo>,
        provider: &Provider,
        account: &str,
        values: &Credentials,
        public_fields: BTreeMap<String, String>,
        scopes: Vec<String>,
        expires_at: Option<i64>,
    ) -> Result<(ConnectionInfo, bool)> {
        let id = existing
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_else(|| crate::text::random_hex(12));
        // The one place a connection's values are exposed to be written: as JSON, sealed at once.
        let exposed: BTreeMap<&str, &str> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&exposed).map_err(|e| Error::Io(e.to_string()))?,
        );
        let sealed = self.sealer.seal(conn_binding(&id), &plaintext);
        let now = now_unix();
        let info = ConnectionInfo {
            id: id.clone(),
            provider: provider.code.clone(),
            account: account.to_owned(),
            auth_type: provider.auth.as_str().to_owned(),
            status: ConnectionStatus::Connected,
            scopes,
            expires_at,
            public_fields,
            created_at: existing.as_ref().map(|c| c.created_at).unwrap_or(now),
            updated_at: now,
        };
        let scopes_json = serde_json::to_string(&info.scopes).unwrap_or_else(|_| "[]".into());
        let public_json =
            serde_json::to_string(&info.public_fields).unwrap_or_else(|_| "{}".into());
        db.execute(
            "INSERT INTO connections (id, provider, account, auth_type, status, scopes, expires_at,
                                          public_fields, secret, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, scopes = excluded.scopes,
                     expires_at = excluded.expires_at, public_fields = excluded.public_fields,
                     secret = excluded.secret, updated_at = excluded.updated_at",
            params![
                info.id,
                info.provider,
                info.account,
                info.auth_type,
                info.status.as_str(),
                scopes_json,
                info.expires_at,
                public_json,
                sealed,
                info.created_at,
                info.updated_at
            ],
        )
        .map_err(storage)?;
        let row = Arc::new(ConnRow {
            info: Arc::new(info.clone()),
            sealed,
        });
        self.cache_write().upsert(row);
        Ok((info, existing.is_some()))
    }

    /// Every connection, oldest first.
    pub fn list_connections(&self) -> Vec<ConnectionInfo> {
        self.cache_read()
            .conns
            .iter()
            .map(|r| (*r.info).clone())
            .collect()
    }

    /// A provider's connection: the named account, or else the first connected one.
    pub fn find_connection(&self, provider: &str, account: Option<&str>) -> Option<ConnectionInfo> {
        self.find_row(provider, account).map(|r| (*r.info).clone())
    }

    fn find_row(&self, provider: &str, account: Option<&str>) -> Option<Arc<ConnRow>> {
        let c = self.cache_read();
        let p = c.by_provider.get(provider)?;
        match account {
            Some(a) => p.by_account.get(a).cloned(),
            None => p
                .rows
                .iter()
                .find(|r| r.info.status == ConnectionStatus::Connected)
                .or(p.rows.first())
                .cloned(),
        }
    }

    /// Fails with `IntegrationNotFound` unless the provider (or that account) is connected;
    /// opens nothing.
    pub fn require_connection(&self, provider: &str, account: Option<&str>) -> Result<()> {
        let c = self.cache_read();
        let found = c.by_provider.get(provider).is_some_and(|p| match account {
            Some(a) => p.by_account.contains_key(a),
            None => !p.rows.is_empty(),
        });
        if found {
            Ok(())
        } else {
            Err(not_connected(provider, account))
        }
    }

    /// A connection and its opened values. A value that fails to open is reported as an
    /// integrity error (the vault was changed outside Akhrot), never as "not connected".
    pub fn open_connection(
        &self,
        provider: &str,
        account: Option<&str>,
    ) -> Result<(Arc<ConnectionInfo>, Credentials)> {
        let row = self
            .find_row(provider, account)
            .ok_or_else(|| not_connected(provider, account))?;
        let plain = self
            .sealer
            .open(conn_binding(&row.info.id), &row.sealed)
            .map_err(|crypto::OpenError| {
                Error::Integrity(format!(
                    "the stored credentials of {} (account `{}`) failed their integrity check: the vault \
                     was modified outside Akhrot. Disconnect and connect it again.",
                    row.info.provider, row.info.account
                ))
            })?;
        let values: Credentials = serde_json::from_slice(&plain).map_err(|_| {
            Error::Integrity(format!(
                "the stored credentials of {} (account `{}`) are unreadable; connect it again",
                row.info.provider, row.info.account
            ))
        })?;
        Ok((row.info.clone(), values))
    }

    /// Marks a connection's status (`connected`, `needs_reconnect`).
    pub fn set_connection_status(&self, id: &str, status: ConnectionStatus) -> Result<()> {
        let now = now_unix();
        self.db()
            .execute(
                "UPDATE connections SET status = ?1, updated_at = ?2 WHERE id = ?3",
                params![status.as_str(), now, id],
            )
            .map_err(storage)?;
        let mut c = self.cache_write();
        if let Some(slot) = c.conns.iter().find(|r| r.info.id == id) {
            let mut info = (*slot.info).clone();
            info.status = status;
            info.updated_at = now;
            let row = Arc::new(ConnRow {
                info: Arc::new(info),
                sealed: slot.sealed.clone(),
            });
            c.upsert(row);
        }
        Ok(())
    }

    /// Removes a connection. With no account: the provider's only connection (an error if it has several).
    pub fn delete_connection(
        &self,
        provider: &str,
        account: Option<&str>,
    ) -> Result<ConnectionInfo> {
        let of_provider: Vec<ConnectionInfo> = self
            .list_connections()
            .into_iter()
            .filter(|c| c.provider == provider)
            .collect();
        let target = match account {
            Some(a) => of_provider.into_iter().find(|c| c.account == a),
            None if of_provider.len() > 1 => {
                return Err(Error::BadRequest(format!(
                    "{provider} has {} accounts ({}); name the one to remove with account",
                    of_provider.len(),
                    of_provider
                        .iter()
                        .map(|c| c.account.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            None => of_provider.into_iter().next(),
        }
        .ok_or_else(|| {
            Error::IntegrationNotFound(match account {
                Some(a) => format!("{provider} has no connected account `{a}`"),
                None => format!("{provider} is not connected"),
            })
        })?;
        self.db()
            .execute("DELETE FROM connections WHERE id = ?1", params![target.id])
            .map_err(storage)?;
        self.cache_write().remove(&target.id);
        Ok(target)
    }
}

fn not_connected(provider: &str, account: Option<&str>) -> Error {
    Error::IntegrationNotFound(match account {
        Some(a) => format!(
            "{provider} has no connected account `{a}`; GET /ai/context/{provider} lists the accounts"
        ),
        None => format!(
            "{provider} is not connected; GET /ai/context/{provider} says how to connect it"
        ),
    })
}

pub(super) fn conn_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConnRow> {
    let scopes: String = r.get(5)?;
    let public: String = r.get(7)?;
    Ok(ConnRow {
        info: Arc::new(ConnectionInfo {
            id: r.get(0)?,
            provider: r.get(1)?,
            account: r.get(2)?,
            auth_type: r.get(3)?,
            status: ConnectionStatus::from_stored(&r.get::<_, String>(4)?),
            scopes: serde_json::from_str(&scopes).unwrap_or_default(),
            expires_at: r.get(6)?,
            public_fields: serde_json::from_str(&public).unwrap_or_default(),
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        }),
        sealed: r.get(8)?,
    })
}

/// Account labels: printable, at most 200 characters, no control characters.
pub fn validate_account(account: &str) -> Result<String> {
    let a = account.trim();
    if a.is_empty() || a.chars().count() > 200 || a.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "an account label is 1-200 printable characters".into(),
        ));
    }
    Ok(a.to_owned())
}

/// Checks values against the catalog's fields: every required field present and non-empty,
/// no unknown field, no control characters, numeric where the catalog says so.
fn validate_fields(
    provider: &Provider,
    values: BTreeMap<String, SecretString>,
) -> Result<Credentials> {
    for name in values.keys() {
        if !provider.fields.iter().any(|f| &f.name == name) {
            return Err(Error::BadRequest(format!(
                "{} has no field `{name}`; its fields are: {}",
                provider.name,
                field_list(provider)
            )));
        }
    }
    let mut out = Credentials::new();
    for f in &provider.fields {
        let v = values.get(&f.name).map(|v| v.expose().trim()).unwrap_or("");
        if v.is_empty() {
            if f.optional {
                continue;
            }
            return Err(Error::BadRequest(format!(
                "{} needs `{}` ({}); its fields are: {}",
                provider.name,
                f.name,
                f.label,
                field_list(provider)
            )));
        }
        if v.len() > MAX_FIELD_LEN || v.chars().any(char::is_control) {
            return Err(Error::BadRequest(format!(
                "`{}` must be a single line of at most {MAX_FIELD_LEN} bytes",
                f.name
            )));
        }
        if !f.values.is_empty() && !f.values.contains_key(v) {
            let allowed: Vec<&str> = f.values.keys().map(String::as_str).collect();
            return Err(Error::BadRequest(format!(
                "`{}` must be one of: {}",
                f.name,
                allowed.join(", ")
            )));
        }
        if f.name == "apiId" && !v.parse::<i32>().is_ok_and(|n| n > 0) {
            return Err(Error::BadRequest(
                "`apiId` must be the positive integer API ID from my.telegram.org".into(),
            ));
        }
        out.insert(f.name.clone(), SecretString::from(v));
    }
    if provider.auth == AuthType::Mtproto {
        check_telegram_session(provider, &out)?;
    }
    Ok(out)
}

/// An MTProto connection's session must parse as a Telethon or GramJS StringSession, so that
/// the token answer can give it in both formats. The value is stored as given.
fn check_telegram_session(provider: &Provider, values: &Credentials) -> Result<()> {
    let Some(field) = provider.token_field() else {
        return Ok(());
    };
    if let Some(session) = values.get(&field.name) {
        crate::telegram::StringSession::parse(session.expose())
            .map_err(|e| Error::BadRequest(format!("`{}`: {e}", field.name)))?;
    }
    Ok(())
}

fn field_list(p: &Provider) -> String {
    p.fields
        .iter()
        .map(|f| {
            if f.optional {
                format!("{} (optional)", f.name)
            } else {
                f.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pass, paths};
    use super::*;

    #[test]
    fn connection_lookups_follow_every_change_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let catalog = crate::catalog::Catalog::builtin().unwrap();
        let openai = catalog.get("openai").unwrap();
        let field = openai.token_field().unwrap().name.clone();
        let put = |v: &Vault, account: &str, key: &str| {
            let vals = BTreeMap::from([(field.clone(), SecretString::from(key))]);
            v.put_key_connection(openai, account, vals).unwrap()
        };
        let key_of = |v: &Vault, account: Option<&str>| {
            let (info, creds) = v.open_connection("openai", account).unwrap();
            (info.account.clone(), creds[&field].expose().to_owned())
        };
        let v = Vault::open(&p, pass("correct horse")).unwrap();
        assert!(v.require_connection("openai", None).is_err());
        assert!(v.find_connection("openai", None).is_none());
        for i in 0..50 {
            put(&v, &format!("acct-{i:02}"), &format!("sk-{i:02}"));
        }
        assert_eq!(
            key_of(&v, Some("acct-37")),
            ("acct-37".into(), "sk-37".into())
        );
        assert_eq!(
            key_of(&v, None),
            ("acct-00".into(), "sk-00".into()),
            "the oldest by default"
        );
        assert!(v.require_connection("openai", Some("acct-49")).is_ok());
        assert!(v.require_connection("openai", Some("acct-50")).is_err());
        assert!(v.require_connection("github", None).is_err());
        // Replacing keeps the id and the place; the default skips a connection needing reconnect.
        let (first, replaced) = put(&v, "acct-00", "sk-00-new");
        assert!(replaced);
        assert_eq!(key_of(&v, Some("acct-00")).1, "sk-00-new");
        v.set_connection_status(&first.id, ConnectionStatus::NeedsReconnect)
            .unwrap();
        assert_eq!(key_of(&v, None).0, "acct-01");
        assert_eq!(v.list_connections().len(), 50);
        assert_eq!(
            v.list_connections()[0].status,
            ConnectionStatus::NeedsReconnect
        );
        v.delete_connection("openai", Some("acct-01")).unwrap();
        assert!(v.require_connection("openai", Some("acct-01")).is_err());
        assert_eq!(key_of(&v, None).0, "acct-02");
        let before: Vec<(String, ConnectionStatus)> = v
            .list_connections()
            .into_iter()
            .map(|c| (c.account, c.status))
            .collect();
        drop(v);
        let v = Vault::open(&p, pass("correct horse")).unwrap();
        let after: Vec<(String, ConnectionStatus)> = v
            .list_connections()
            .into_iter()
            .map(|c| (c.account, c.status))
            .collect();
        assert_eq!(
            before, after,
            "the same rows in the same order after a reopen"
        );
        assert_eq!(key_of(&v, None).0, "acct-02");
        assert_eq!(key_of(&v, Some("acct-00")).1, "sk-00-new");
        for i in 2..50 {
            v.delete_connection("openai", Some(&format!("acct-{i:02}")))
                .unwrap();
        }
        v.delete_connection("openai", None).unwrap();
        assert!(v.require_connection("openai", None).is_err());
        assert!(v.list_connections().is_empty());
    }

    #[test]
    fn a_telegram_connection_needs_a_string_session_and_a_positive_api_id() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(&paths(dir.path()), pass("correct horse")).unwrap();
        let catalog = crate::catalog::Catalog::builtin().unwrap();
        let tg = catalog.get("telegram").unwrap();
        let session = crate::telegram::StringSession::new(
            2,
            "149.154.167.51".parse().unwrap(),
            443,
            &[7; crate::telegram::AUTH_KEY_LEN],
        )
        .unwrap()
        .to_gramjs();
        let put = |api_id: &str, session: &str| {
            let vals = BTreeMap::from([
                ("apiId".to_string(), SecretString::from(api_id)),
                (
                    "apiHash".to_string(),
                    SecretString::from("0123456789abcdef"),
                ),
                ("session".to_string(), SecretString::from(session)),
            ]);
            v.put_key_connection(tg, "default", vals)
        };
        for (api_id, s, want) in [
            (
                "123",
                "1BVtsOK-not-a-session",
                "`session`: the Telegram session",
            ),
            ("0", session.expose(), "positive integer"),
            ("-5", session.expose(), "positive integer"),
            ("99999999999", session.expose(), "positive integer"),
        ] {
            match put(api_id, s) {
                Err(Error::BadRequest(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{want}: {:?}", other.map(|_| ())),
            }
        }
        assert!(v.list_connections().is_empty(), "nothing stored");
        put("123", session.expose()).unwrap();
        let (_, creds) = v.open_connection("telegram", None).unwrap();
        assert_eq!(
            creds["session"].expose(),
            session.expose(),
            "stored as given"
        );
    }
}
