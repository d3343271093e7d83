//! Opening and creating a vault: its metadata, proving the master key (keyring or
//! passphrase) against the key check value, and the first run.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::seal::{KCV_PLAINTEXT, kcv_binding, wrap_aad};
use super::{KeySource, Unlock, storage};
use crate::crypto::{self, Sealer};
use crate::keystore::{self, KdfParams, KeystoreError};
use crate::secret::Key32;
use crate::{Error, Result, now_unix};

pub(super) struct Meta {
    pub(super) vault_id: String,
    key_source: String,
    kcv: Vec<u8>,
    wrapped_key: Option<Vec<u8>>,
    kdf: Option<String>,
}

pub(super) fn create_private_file(path: &Path) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map(drop)
        .map_err(|e| Error::Storage(format!("cannot create {}: {e}", path.display())))
}

pub(super) fn has_tables(conn: &Connection) -> Result<bool> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(storage)?;
    Ok(n > 0)
}

pub(super) fn read_meta(conn: &Connection) -> Result<Option<Meta>> {
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(|e| Error::Storage(format!("the vault file is unreadable: {e}")))?
        > 0;
    if !has_meta {
        return Ok(None);
    }
    let get = |k: &str| -> Result<Option<Vec<u8>>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .optional()
            .map_err(storage)
    };
    let text = |k: &str| -> Result<Option<String>> {
        Ok(get(k)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let Some(vault_id) = text("vault_id")? else {
        return Ok(None);
    };
    Ok(Some(Meta {
        vault_id,
        key_source: text("key_source")?.unwrap_or_else(|| "keyring".into()),
        kcv: get("kcv")?.unwrap_or_default(),
        wrapped_key: get("wrapped_key")?,
        kdf: text("kdf")?,
    }))
}

pub(super) fn unlock_existing(
    path: &Path,
    meta: &Meta,
    unlock: &Unlock,
) -> Result<(Key32, KeySource)> {
    let user = keystore::keyring_user(&meta.vault_id);
    let (key, source) = match meta.key_source.as_str() {
        "passphrase" => {
            let Unlock::Passphrase(pass) = unlock else {
                return Err(KeystoreError::PassphraseRequired {
                    vault: path.to_owned(),
                }
                .into());
            };
            let kdf: KdfParams = meta
                .kdf
                .as_deref()
                .and_then(|k| serde_json::from_str(k).ok())
                .ok_or_else(|| KeystoreError::Corrupt("missing KDF parameters".into()))?;
            let kek = keystore::derive_from_passphrase(pass.expose(), &kdf)?;
            let wrapped = meta
                .wrapped_key
                .as_deref()
                .ok_or_else(|| KeystoreError::Corrupt("missing wrapped key".into()))?;
            let raw =
                crypto::open_with(&kek, &wrap_aad(&meta.vault_id), wrapped).map_err(|_| {
                    KeystoreError::WrongPassphrase {
                        vault: path.to_owned(),
                    }
                })?;
            let key = Key32::from_slice(&raw)
                .ok_or_else(|| KeystoreError::Corrupt("wrapped key has the wrong size".into()))?;
            (key, KeySource::Passphrase)
        }
        _ => {
            let key =
                keystore::keyring_get(&meta.vault_id)?.ok_or_else(|| KeystoreError::Missing {
                    vault: path.to_owned(),
                    user: user.clone(),
                })?;
            (key, KeySource::Keyring)
        }
    };
    let sealer = Sealer::new(&key, &meta.vault_id);
    match sealer.open(kcv_binding(), &meta.kcv) {
        Ok(v) if v.as_slice() == KCV_PLAINTEXT => Ok((key, source)),
        _ => Err(match source {
            KeySource::Keyring => KeystoreError::WrongKey {
                vault: path.to_owned(),
                user,
            },
            KeySource::Passphrase => KeystoreError::WrongPassphrase {
                vault: path.to_owned(),
            },
        }
        .into()),
    }
}

pub(super) fn first_run(conn: &Connection, unlock: &Unlock) -> Result<(String, Key32, KeySource)> {
    let vault_id = crate::text::random_hex(8);
    let key = Key32::generate();
    let sealer = Sealer::new(&key, &vault_id);
    let kcv = sealer.seal(kcv_binding(), KCV_PLAINTEXT);
    let (source, wrapped, kdf) = match unlock {
        Unlock::Keyring => {
            keystore::keyring_set(&vault_id, &key)?;
            (KeySource::Keyring, None, None)
        }
        Unlock::Passphrase(pass) => {
            if pass.len() < 8 {
                return Err(Error::BadRequest(
                    "a vault passphrase needs at least 8 characters".into(),
                ));
            }
            let kdf = KdfParams::new_default();
            let kek = keystore::derive_from_passphrase(pass.expose(), &kdf)?;
            let wrapped = crypto::seal_with(&kek, &wrap_aad(&vault_id), key.as_bytes());
            (
                KeySource::Passphrase,
                Some(wrapped),
                Some(serde_json::to_string(&kdf).unwrap_or_default()),
            )
        }
    };
    let result = (|| -> rusqlite::Result<()> {
        conn.execute_batch(
            "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )?;
        let put = |k: &str, v: &[u8]| {
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
        };
        put("vault_id", vault_id.as_bytes())?;
        put(
            "key_source",
            match source {
                KeySource::Keyring => b"keyring".as_slice(),
                KeySource::Passphrase => b"passphrase".as_slice(),
            },
        )?;
        put("kcv", &kcv)?;
        put("created_at", now_unix().to_string().as_bytes())?;
        if let Some(w) = &wrapped {
            put("wrapped_key", w)?;
        }
        if let Some(k) = &kdf {
            put("kdf", k.as_bytes())?;
        }
        conn.execute_batch("COMMIT;")
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK;");
        if source == KeySource::Keyring {
            keystore::keyring_delete(&vault_id);
        }
        return Err(storage(e));
    }
    tracing::info!(vault_id = %vault_id, key_source = ?source, "created a new vault");
    Ok((vault_id, key, source))
}
