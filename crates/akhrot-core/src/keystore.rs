//! Where the vault's master key lives.
//!
//! Normally in the OS keyring (Secret Service on Linux, Keychain on macOS, Credential Manager
//! on Windows), under service `akhrot` and user `vault-<vault id>`. On a machine without a
//! keyring the user may opt in to a passphrase instead: the master key is then stored in the
//! database wrapped under an Argon2id-derived key. There is no plaintext mode.

use std::path::PathBuf;

use crate::secret::Key32;

pub const KEYRING_SERVICE: &str = "akhrot";

/// The keyring user name of a vault's master key.
pub fn keyring_user(vault_id: &str) -> String {
    format!("vault-{vault_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error(
        "the vault at {vault} was sealed with a master key kept in the OS keyring, but the keyring has no entry for it \
         (service `akhrot`, user `{user}`). If your keyring is locked or belongs to another login session, unlock it \
         (log in to the desktop, or run `gnome-keyring-daemon --unlock`) and start again. If the keyring was reset, \
         the secrets in this vault cannot be recovered: move the data directory aside to start over. Nothing was changed."
    )]
    Missing { vault: PathBuf, user: String },
    #[error(
        "the OS keyring holds a different key than the one that sealed the vault at {vault} (service `akhrot`, \
         user `{user}`): was the keyring restored from another machine, or the data directory copied? Restore the \
         matching keyring entry, or move the data directory aside to start over. Nothing was changed."
    )]
    WrongKey { vault: PathBuf, user: String },
    #[error(
        "the OS keyring could not be used: {detail}. Akhrot keeps its master key there. Start or unlock a Secret \
         Service (gnome-keyring, KeePassXC) in this session, or — on a headless machine — opt in to a passphrase \
         with AKHROT_PASSPHRASE or `akhrot serve --passphrase`. Nothing was changed."
    )]
    Unavailable { detail: String },
    #[error(
        "the vault at {vault} is protected by a passphrase: set AKHROT_PASSPHRASE or start with \
         `akhrot serve --passphrase` to be asked for it. Nothing was changed."
    )]
    PassphraseRequired { vault: PathBuf },
    #[error("the passphrase does not open the vault at {vault}. Nothing was changed.")]
    WrongPassphrase { vault: PathBuf },
    #[error(
        "the vault's key settings are unreadable ({0}); the database was modified outside Akhrot"
    )]
    Corrupt(String),
}

/// Reads the master key from the OS keyring. `Ok(None)` is "no such entry" — which for an
/// existing vault is an error the caller reports, never a reason to make a new key.
pub fn keyring_get(vault_id: &str) -> Result<Option<Key32>, KeystoreError> {
    let entry = entry(vault_id)?;
    match entry.get_secret() {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            Key32::from_slice(&bytes).map(Some).ok_or_else(|| {
                KeystoreError::Corrupt(format!(
                    "the keyring entry for this vault holds {} bytes, not a 256-bit key",
                    bytes.len()
                ))
            })
        }
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

/// Stores the master key in the OS keyring and reads it back to prove it is really kept there.
pub fn keyring_set(vault_id: &str, key: &Key32) -> Result<(), KeystoreError> {
    let entry = entry(vault_id)?;
    entry.set_secret(key.as_bytes()).map_err(unavailable)?;
    match keyring_get(vault_id)? {
        Some(back) if back.as_bytes() == key.as_bytes() => Ok(()),
        _ => Err(KeystoreError::Unavailable {
            detail: "the keyring accepted the master key but did not return it".into(),
        }),
    }
}

/// Removes a vault's keyring entry (used when a first run fails half-way).
pub fn keyring_delete(vault_id: &str) {
    if let Ok(e) = entry(vault_id) {
        let _ = e.delete_credential();
    }
}

fn entry(vault_id: &str) -> Result<keyring::Entry, KeystoreError> {
    keyring::Entry::new(KEYRING_SERVICE, &keyring_user(vault_id)).map_err(unavailable)
}

fn unavailable(e: keyring::Error) -> KeystoreError {
    let detail = match &e {
        keyring::Error::NoStorageAccess(inner) => {
            format!("no access to the keyring (is it locked?): {inner}")
        }
        keyring::Error::PlatformFailure(inner) => format!("keyring platform error: {inner}"),
        other => other.to_string(),
    };
    KeystoreError::Unavailable { detail }
}

/// Argon2id parameters of a passphrase-wrapped master key (stored next to it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt_hex: String,
}

impl KdfParams {
    /// OWASP's recommended Argon2id minimum (19 MiB, 2 passes), with a fresh salt.
    pub fn new_default() -> Self {
        use rand::RngCore;
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
            salt_hex: hex::encode(salt),
        }
    }
}

/// Derives the key that wraps the master key from a passphrase.
pub fn derive_from_passphrase(passphrase: &str, p: &KdfParams) -> Result<Key32, KeystoreError> {
    let salt = hex::decode(&p.salt_hex).map_err(|e| KeystoreError::Corrupt(e.to_string()))?;
    let params = argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| KeystoreError::Corrupt(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, out.as_mut())
        .map_err(|e| KeystoreError::Corrupt(e.to_string()))?;
    Ok(Key32::from_bytes(*out))
}
