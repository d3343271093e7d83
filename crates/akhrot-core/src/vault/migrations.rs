//! The vault's schema: migrations applied in order, `PRAGMA user_version` counting them.

use rusqlite::Connection;

use super::storage;
use crate::{Error, Result};

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: agents, policies, connections.
    "CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        key_hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE TABLE policies (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('allow', 'ask', 'deny')),
        until INTEGER,
        PRIMARY KEY (agent_id, provider)
    );
    CREATE TABLE connections (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        auth_type TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'connected',
        scopes TEXT NOT NULL DEFAULT '[]',
        expires_at INTEGER,
        public_fields TEXT NOT NULL DEFAULT '{}',
        secret BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
                UNIQUE (provider, account)
    );",
    // 2: the user's OAuth apps, one per provider; the secret sealed to its row.
    "CREATE TABLE oauth_clients (
        provider TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        secret BLOB,
                updated_at INTEGER NOT NULL
    );",
    // 3: the user's choice of redirect per OAuth client (NULL: the catalog's).
    "ALTER TABLE oauth_clients ADD COLUMN redirect TEXT CHECK (redirect IN ('loopback', 'deep_link'));",
    // 4: the audit log (never a secret) and owner settings.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        agent_id TEXT,
        agent TEXT,
        provider TEXT,
        account TEXT,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        peer TEXT,
        count INTEGER NOT NULL DEFAULT 1,
        last_at INTEGER
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 5: policy mode `proxy-only` (SQLite cannot change a CHECK in place: copy the table).
    "CREATE TABLE policies_v5 (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('allow', 'ask', 'deny', 'proxy-only')),
        until INTEGER,
        PRIMARY KEY (agent_id, provider)
    );
    INSERT INTO policies_v5 (agent_id, provider, mode, until)
        SELECT agent_id, provider, mode, until FROM policies;
    DROP TABLE policies;
    ALTER TABLE policies_v5 RENAME TO policies;",
    // 6: an OAuth client's settings (`{tenant}`, `{host}`, …): JSON sealed to its row, so a
    // changed row cannot send tokens to another server.
    "ALTER TABLE oauth_clients ADD COLUMN settings BLOB;",
];

pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(storage)?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(Error::Storage(format!(
            "the vault was written by a newer Akhrot (schema {current}, this one knows {}); upgrade Akhrot",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK;");
            Error::Storage(format!("migration {version} failed: {e}"))
        })?;
        tracing::info!(version, "applied vault schema migration");
    }
    Ok(())
}
