//! Looking at a vault from outside the server: its id, its keyring entry and its raw bytes.

use std::path::{Path, PathBuf};

/// The keyring entry holding a vault's master key.
pub fn keyring_entry(vault_id: &str) -> keyring::Entry {
    keyring::Entry::new("akhrot", &format!("vault-{vault_id}")).unwrap()
}

/// Reads a vault's id from its database (read-only).
pub fn vault_id(vault: &Path) -> String {
    let c =
        rusqlite::Connection::open_with_flags(vault, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let v: Vec<u8> = c
        .query_row("SELECT value FROM meta WHERE key = 'vault_id'", [], |r| {
            r.get(0)
        })
        .unwrap();
    String::from_utf8(v).unwrap()
}

/// All bytes of the vault's files (db, WAL, SHM).
pub fn vault_bytes(vault: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = vault.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(b) = std::fs::read(PathBuf::from(p)) {
            out.extend(b);
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
