//! Owner settings (e.g. `paused`): plain key-value pairs, never a secret.

use rusqlite::{OptionalExtension, params};

use super::{Vault, storage};
use crate::Result;

impl Vault {
    /// An owner setting (e.g. `paused`), if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.db()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(storage)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.db()
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(storage)?;
        Ok(())
    }
}
