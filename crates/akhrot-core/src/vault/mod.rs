//! The vault: one SQLite database (WAL, `synchronous=FULL`) holding agents, policies and
//! connections. Every secret column is sealed (see [`crate::crypto`]) and bound to its row.
//!
//! Reads are served from an in-memory copy of the (still sealed) rows, so handing out a
//! credential never waits on SQLite; writes go to the database first and then to that copy.
//!
//! One file per concern: `migrations` (the schema), `unlock` (opening, creating and the
//! master key), `seal` (what each sealed value is bound to), `cache` (the in-memory copy),
//! `keys` (agent keys), `policies`, `connections`, `oauth_clients` and `settings`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;
use serde::Serialize;

use crate::crypto::Sealer;
use crate::paths::{self, Paths};
use crate::secret::SecretString;
use crate::{Error, Result};

mod cache;
mod connections;
mod keys;
mod migrations;
mod oauth_clients;
mod policies;
mod seal;
mod settings;
mod unlock;

use cache::Cache;
use connections::conn_row;
pub use connections::{ConnectionInfo, ConnectionStatus, Credentials, validate_account};
use keys::AgentEntry;
pub use keys::{Agent, AgentInfo};
use migrations::migrate;
pub use oauth_clients::OAuthClientInfo;
pub use policies::{ANY_PROVIDER, Mode, Policy};
use unlock::{create_private_file, first_run, has_tables, read_meta, unlock_existing};

/// How the master key is unlocked.
#[derive(Debug, Clone)]
pub enum Unlock {
    /// From the OS keyring (the default).
    Keyring,
    /// From a passphrase (opt-in for machines without a keyring).
    Passphrase(SecretString),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    Keyring,
    Passphrase,
}

pub struct Vault {
    db: Mutex<Connection>,
    sealer: Sealer,
    vault_id: String,
    path: PathBuf,
    key_source: KeySource,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("vault_id", &self.vault_id)
            .field("key_source", &self.key_source)
            .finish_non_exhaustive()
    }
}

fn storage(e: rusqlite::Error) -> Error {
    Error::from(e)
}

impl Vault {
    /// Opens the vault in `paths.data_dir`, creating it on the first run.
    ///
    /// An existing vault is never re-keyed: a missing, locked or different keyring key is an
    /// error that names the problem, and nothing in the database is written until the master
    /// key has been proven to be the vault's own.
    pub fn open(paths: &Paths, unlock: Unlock) -> Result<Self> {
        paths::ensure_private_dir(&paths.data_dir)?;
        let path = paths.vault_db();
        let existed = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        if !existed {
            create_private_file(&path)?;
        }
        let conn = Connection::open(&path)
            .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(storage)?;
        let meta = read_meta(&conn)?;
        let (vault_id, key, key_source) = match meta {
            Some(meta) => {
                let (key, source) = unlock_existing(&path, &meta, &unlock)?;
                (meta.vault_id.clone(), key, source)
            }
            None if existed && has_tables(&conn)? => {
                return Err(Error::Storage(format!(
                    "{} is not an Akhrot vault (it has tables but no vault metadata); move it aside",
                    path.display()
                )));
            }
            None => match first_run(&conn, &unlock) {
                Ok(v) => v,
                Err(e) => {
                    // Leave nothing behind, so the next start is a clean first run too.
                    drop(conn);
                    if !existed {
                        let _ = std::fs::remove_file(&path);
                    }
                    return Err(e);
                }
            },
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(storage)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(storage)?;
        migrate(&conn)?;
        for suffix in ["-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            paths::set_mode(Path::new(&p), 0o600)?;
        }
        let vault = Self {
            db: Mutex::new(conn),
            sealer: Sealer::new(&key, &vault_id),
            vault_id,
            path,
            key_source,
            cache: RwLock::new(Cache::default()),
        };
        vault.reload()?;
        Ok(vault)
    }

    pub fn vault_id(&self) -> &str {
        &self.vault_id
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn key_source(&self) -> KeySource {
        self.key_source
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn cache_read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }
    fn cache_write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads the in-memory copy from the database.
    pub fn reload(&self) -> Result<()> {
        let db = self.db();
        let mut cache = Cache::default();
        {
            let mut st = db
                .prepare(
                    "SELECT id, name, key_hash, created_at, last_used_at, revoked_at FROM agents",
                )
                .map_err(storage)?;
            let rows = st
                .query_map([], |r| {
                    let hash: Vec<u8> = r.get(2)?;
                    Ok(AgentEntry {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        key_hash: hash.try_into().unwrap_or([0u8; 32]),
                        created_at: r.get(3)?,
                        last_used: AtomicI64::new(r.get::<_, Option<i64>>(4)?.unwrap_or(0)),
                        revoked_at: r.get(5)?,
                        dirty: AtomicBool::new(false),
                    })
                })
                .map_err(storage)?;
            for a in rows {
                let a = a.map_err(storage)?;
                cache.agents.insert(a.id.clone(), Arc::new(a));
            }
            let mut st = db
                .prepare("SELECT agent_id, provider, mode, until FROM policies")
                .map_err(storage)?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .map_err(storage)?;
            for row in rows {
                let (agent, provider, mode, until) = row.map_err(storage)?;
                if let Some(mode) = Mode::parse(&mode) {
                    cache
                        .policies
                        .entry(agent)
                        .or_default()
                        .insert(provider, Policy { mode, until });
                }
            }
            let mut st = db
                .prepare(
                    "SELECT id, provider, account, auth_type, status, scopes, expires_at, public_fields,
                            secret, created_at, updated_at
                     FROM connections ORDER BY created_at, rowid",
                )
                .map_err(storage)?;
            let rows = st.query_map([], conn_row).map_err(storage)?;
            for row in rows {
                cache.upsert(Arc::new(row.map_err(storage)?));
            }
        }
        *self.cache_write() = cache;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::keystore::KeystoreError;

    pub(super) fn paths(dir: &Path) -> Paths {
        Paths {
            data_dir: dir.join("data"),
            config_dir: dir.join("config"),
        }
    }

    pub(super) fn pass(s: &str) -> Unlock {
        Unlock::Passphrase(SecretString::from(s))
    }

    #[test]
    fn passphrase_vault_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let catalog = crate::catalog::Catalog::builtin().unwrap();
        let openai = catalog.get("openai").unwrap();
        {
            let v = Vault::open(&p, pass("correct horse")).unwrap();
            let (_, key) = v.create_agent("bot", &["openai".into()], false).unwrap();
            assert!(v.authenticate(key.expose()).is_some());
            let mut vals = BTreeMap::new();
            let field = openai.token_field().unwrap().name.clone();
            vals.insert(field.clone(), SecretString::from("sk-test-123"));
            v.put_key_connection(openai, "default", vals).unwrap();
        }
        let v = Vault::open(&p, pass("correct horse")).unwrap();
        let (_, creds) = v.open_connection("openai", None).unwrap();
        assert_eq!(creds.values().next().unwrap().expose(), "sk-test-123");
        drop(v);
        let err = Vault::open(&p, pass("wrong horse!")).unwrap_err();
        assert!(
            matches!(err, Error::Keystore(KeystoreError::WrongPassphrase { .. })),
            "{err}"
        );
        let err = Vault::open(&p, Unlock::Keyring).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Keystore(KeystoreError::PassphraseRequired { .. })
            ),
            "{err}"
        );
    }
}
