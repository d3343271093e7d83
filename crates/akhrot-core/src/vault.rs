//! The vault: one SQLite database (WAL, `synchronous=FULL`) holding agents, policies and
//! connections. Every secret column is sealed (see [`crate::crypto`]) and bound to its row.
//!
//! Reads are served from an in-memory copy of the (still sealed) rows, so handing out a
//! credential never waits on SQLite; writes go to the database first and then to that copy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::agent_key;
use crate::catalog::{AuthType, Provider};
use crate::crypto::{self, Binding, Sealer};
use crate::keystore::{self, KdfParams, KeystoreError};
use crate::paths::{self, Paths};
use crate::secret::{Key32, SecretString};
use crate::{Error, Result, now_unix};

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
];

const KCV_PLAINTEXT: &[u8] = b"akhrot key check value v1";
const MAX_FIELD_LEN: usize = 16 * 1024;

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

/// A policy mode of an agent key for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Allow,
    Ask,
    Deny,
    /// `POST /tokens/fetch` is refused; calls through `/proxy/{provider}/…` are allowed (the
    /// agent uses the credential without ever holding it).
    #[serde(rename = "proxy-only")]
    ProxyOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Allow => "allow",
            Mode::Ask => "ask",
            Mode::Deny => "deny",
            Mode::ProxyOnly => "proxy-only",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Mode::Allow),
            "ask" => Some(Mode::Ask),
            "deny" => Some(Mode::Deny),
            "proxy-only" | "proxy_only" | "proxyonly" => Some(Mode::ProxyOnly),
            _ => None,
        }
    }
}

/// A stored policy: mode, and for time-bounded allows (and proxy-only), until when (unix
/// seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

impl Policy {
    /// The mode in force at `now`: an expired time-bounded allow (or proxy-only) falls back to
    /// `ask`.
    pub fn effective(&self, now: i64) -> Mode {
        match (self.mode, self.until) {
            (Mode::Allow | Mode::ProxyOnly, Some(t)) if t <= now => Mode::Ask,
            (m, _) => m,
        }
    }
}

/// The wildcard provider in a policy: applies to every provider without its own policy.
pub const ANY_PROVIDER: &str = "*";

#[derive(Debug)]
struct AgentEntry {
    id: String,
    name: String,
    key_hash: [u8; 32],
    created_at: i64,
    revoked_at: Option<i64>,
    last_used: AtomicI64,
    dirty: AtomicBool,
}

/// An agent key as the owner sees it (never the key itself).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub policies: BTreeMap<String, Policy>,
}

/// The identity of an authenticated agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub name: String,
}

#[derive(Debug)]
struct ConnRow {
    info: Arc<ConnectionInfo>,
    sealed: Vec<u8>,
}

/// A connection's public facts (no secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    pub id: String,
    pub provider: String,
    pub account: String,
    pub auth_type: String,
    pub status: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    /// Values the catalog marks as not secret (account SID, domain, project ref, API id).
    pub public_fields: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What is known of an OAuth app without opening its secret.
#[derive(Debug, Clone)]
pub struct OAuthClientInfo {
    pub client_id: String,
    pub has_secret: bool,
    /// The user's choice of redirect, overriding the catalog's.
    pub redirect: Option<crate::catalog::Redirect>,
}

/// The opened secret values of a connection, by field name.
pub type Credentials = BTreeMap<String, SecretString>;

#[derive(Default)]
struct Cache {
    agents: HashMap<String, Arc<AgentEntry>>,
    /// agent id → provider (or `*`) → policy.
    policies: HashMap<String, HashMap<String, Policy>>,
    /// Every connection, oldest first.
    conns: Vec<Arc<ConnRow>>,
    /// The same rows by provider, and by provider and account: a hand-out finds its connection
    /// without walking the whole list, however many connections are stored.
    by_provider: HashMap<String, ProviderRows>,
}

#[derive(Default)]
struct ProviderRows {
    /// Oldest first.
    rows: Vec<Arc<ConnRow>>,
    by_account: HashMap<String, Arc<ConnRow>>,
}

impl Cache {
    /// Inserts a connection, or replaces the row with its id.
    fn upsert(&mut self, row: Arc<ConnRow>) {
        let p = self
            .by_provider
            .entry(row.info.provider.clone())
            .or_default();
        let known = p
            .by_account
            .get(&row.info.account)
            .is_some_and(|r| r.info.id == row.info.id);
        if known {
            if let Some(r) = p.rows.iter_mut().find(|r| r.info.id == row.info.id) {
                *r = row.clone();
            }
            if let Some(r) = self.conns.iter_mut().find(|r| r.info.id == row.info.id) {
                *r = row.clone();
            }
        } else {
            p.rows.push(row.clone());
            self.conns.push(row.clone());
        }
        p.by_account.insert(row.info.account.clone(), row);
    }

    fn remove(&mut self, id: &str) {
        self.conns.retain(|r| r.info.id != id);
        for p in self.by_provider.values_mut() {
            p.rows.retain(|r| r.info.id != id);
            p.by_account.retain(|_, r| r.info.id != id);
        }
        self.by_provider.retain(|_, p| !p.rows.is_empty());
    }
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

fn random_id(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
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

    // ----- agents -------------------------------------------------------------------------

    /// Creates an agent key. Returns its record and the key, which is never stored.
    pub fn create_agent(
        &self,
        name: &str,
        allow: &[String],
        allow_all: bool,
    ) -> Result<(AgentInfo, SecretString)> {
        let name = validate_agent_name(name)?;
        if self.cache_read().agents.values().any(|a| a.name == name) {
            return Err(Error::Conflict(format!(
                "an agent key named `{name}` already exists; pick another name or revoke it first"
            )));
        }
        let (id, key) = agent_key::generate();
        let parsed = agent_key::parse(key.expose())
            .ok_or_else(|| Error::Io("generated an unparsable key".into()))?;
        let hash = agent_key::hash_secret(parsed.secret.expose());
        let now = now_unix();
        let mut policies: Vec<(String, Policy)> = allow
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Policy {
                        mode: Mode::Allow,
                        until: None,
                    },
                )
            })
            .collect();
        if allow_all {
            policies.push((
                ANY_PROVIDER.into(),
                Policy {
                    mode: Mode::Allow,
                    until: None,
                },
            ));
        }
        {
            let mut db = self.db();
            let tx = db.transaction().map_err(storage)?;
            tx.execute(
                "INSERT INTO agents (id, name, key_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, &hash[..], now],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Error::Conflict(format!("an agent key named `{name}` already exists"))
                }
                e => storage(e),
            })?;
            for (provider, p) in &policies {
                tx.execute(
                    "INSERT OR REPLACE INTO policies (agent_id, provider, mode, until) VALUES (?1, ?2, ?3, ?4)",
                    params![id, provider, p.mode.as_str(), p.until],
                )
                .map_err(storage)?;
            }
            tx.commit().map_err(storage)?;
        }
        let entry = Arc::new(AgentEntry {
            id: id.clone(),
            name: name.clone(),
            key_hash: hash,
            created_at: now,
            revoked_at: None,
            last_used: AtomicI64::new(0),
            dirty: AtomicBool::new(false),
        });
        {
            let mut c = self.cache_write();
            c.agents.insert(id.clone(), entry.clone());
            c.policies.entry(id.clone()).or_default().extend(policies);
        }
        let info = self.agent_info(&entry);
        Ok((info, key))
    }

    fn agent_info(&self, a: &AgentEntry) -> AgentInfo {
        let c = self.cache_read();
        let policies = c
            .policies
            .get(&a.id)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let last = a.last_used.load(Ordering::Relaxed);
        AgentInfo {
            id: a.id.clone(),
            name: a.name.clone(),
            created_at: a.created_at,
            last_used_at: (last > 0).then_some(last),
            revoked_at: a.revoked_at,
            policies,
        }
    }

    /// Every agent key, oldest first.
    pub fn list_agents(&self) -> Vec<AgentInfo> {
        let agents: Vec<Arc<AgentEntry>> = self.cache_read().agents.values().cloned().collect();
        let mut out: Vec<AgentInfo> = agents.iter().map(|a| self.agent_info(a)).collect();
        out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        out
    }

    fn find_agent(&self, name_or_id: &str) -> Result<Arc<AgentEntry>> {
        let c = self.cache_read();
        c.agents
            .get(name_or_id)
            .or_else(|| c.agents.values().find(|a| a.name == name_or_id))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no agent key named `{name_or_id}`")))
    }

    /// Revokes a key by name or id: it stops working at once; its record stays for the audit.
    pub fn revoke_agent(&self, name_or_id: &str) -> Result<AgentInfo> {
        let a = self.find_agent(name_or_id)?;
        if a.revoked_at.is_some() {
            return Ok(self.agent_info(&a));
        }
        let now = now_unix();
        self.db()
            .execute(
                "UPDATE agents SET revoked_at = ?1 WHERE id = ?2",
                params![now, a.id],
            )
            .map_err(storage)?;
        let revoked = Arc::new(AgentEntry {
            id: a.id.clone(),
            name: a.name.clone(),
            key_hash: a.key_hash,
            created_at: a.created_at,
            revoked_at: Some(now),
            last_used: AtomicI64::new(a.last_used.load(Ordering::Relaxed)),
            dirty: AtomicBool::new(a.dirty.load(Ordering::Relaxed)),
        });
        self.cache_write()
            .agents
            .insert(a.id.clone(), revoked.clone());
        Ok(self.agent_info(&revoked))
    }

    /// Checks a presented key. Unknown, malformed and revoked keys are all `None`; the secret
    /// comparison is constant-time and runs even for unknown ids.
    pub fn authenticate(&self, presented: &str) -> Option<Agent> {
        let parsed = agent_key::parse(presented)?;
        let entry = self.cache_read().agents.get(&parsed.id).cloned();
        let stored = entry.as_ref().map(|a| a.key_hash).unwrap_or([0xA5; 32]);
        let ok = agent_key::verify(parsed.secret.expose(), &stored);
        let entry = entry?;
        if !ok || entry.revoked_at.is_some() {
            return None;
        }
        let now = now_unix();
        if entry.last_used.swap(now, Ordering::Relaxed) != now {
            entry.dirty.store(true, Ordering::Relaxed);
        }
        Some(Agent {
            id: entry.id.clone(),
            name: entry.name.clone(),
        })
    }

    /// Writes the coalesced `last used` times (called periodically and at shutdown).
    pub fn flush_last_used(&self) -> Result<usize> {
        let dirty: Vec<(String, i64)> = self
            .cache_read()
            .agents
            .values()
            .filter(|a| a.dirty.swap(false, Ordering::Relaxed))
            .map(|a| (a.id.clone(), a.last_used.load(Ordering::Relaxed)))
            .collect();
        if dirty.is_empty() {
            return Ok(0);
        }
        let mut db = self.db();
        let tx = db.transaction().map_err(storage)?;
        for (id, t) in &dirty {
            tx.execute(
                "UPDATE agents SET last_used_at = ?1 WHERE id = ?2",
                params![t, id],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(dirty.len())
    }

    /// Sets an agent's policy for a provider (or `*` for every provider).
    pub fn set_policy(
        &self,
        agent: &str,
        provider: &str,
        mode: Mode,
        until: Option<i64>,
    ) -> Result<AgentInfo> {
        let a = self.find_agent(agent)?;
        let until = if matches!(mode, Mode::Allow | Mode::ProxyOnly) {
            until
        } else {
            None
        };
        self.db()
            .execute(
                "INSERT OR REPLACE INTO policies (agent_id, provider, mode, until) VALUES (?1, ?2, ?3, ?4)",
                params![a.id, provider, mode.as_str(), until],
            )
            .map_err(storage)?;
        self.cache_write()
            .policies
            .entry(a.id.clone())
            .or_default()
            .insert(provider.to_owned(), Policy { mode, until });
        Ok(self.agent_info(&a))
    }

    /// The policy in force for an agent and provider: its own, else its `*`, else `ask`.
    pub fn policy_for(&self, agent_id: &str, provider: &str) -> Policy {
        let c = self.cache_read();
        c.policies
            .get(agent_id)
            .and_then(|m| m.get(provider).or_else(|| m.get(ANY_PROVIDER)))
            .copied()
            .unwrap_or(Policy {
                mode: Mode::Ask,
                until: None,
            })
    }

    // ----- connections --------------------------------------------------------------------

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
            .unwrap_or_else(|| random_id(12));
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(values).map_err(|e| Error::Io(e.to_string()))?,
        );
        let sealed = self.sealer.seal(conn_binding(&id), &plaintext);
        let now = now_unix();
        let info = ConnectionInfo {
            id: id.clone(),
            provider: provider.code.clone(),
            account: account.to_owned(),
            auth_type: provider.auth.as_str().to_owned(),
            status: "connected".into(),
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
                info.status,
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
                .find(|r| r.info.status == "connected")
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
    pub fn set_connection_status(&self, id: &str, status: &str) -> Result<()> {
        let now = now_unix();
        self.db()
            .execute(
                "UPDATE connections SET status = ?1, updated_at = ?2 WHERE id = ?3",
                params![status, now, id],
            )
            .map_err(storage)?;
        let mut c = self.cache_write();
        if let Some(slot) = c.conns.iter().find(|r| r.info.id == id) {
            let mut info = (*slot.info).clone();
            info.status = status.to_owned();
            info.updated_at = now;
            let row = Arc::new(ConnRow {
                info: Arc::new(info),
                sealed: slot.sealed.clone(),
            });
            c.upsert(row);
        }
        Ok(())
    }

    // ----- settings -------------------------------------------------------------------------

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

    // ----- OAuth clients ------------------------------------------------------------------

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

fn client_binding(provider: &str) -> Binding<'_> {
    Binding {
        table: "oauth_clients",
        row: provider,
        purpose: "client-secret",
    }
}

fn conn_binding(id: &str) -> Binding<'_> {
    Binding {
        table: "connections",
        row: id,
        purpose: "credentials",
    }
}

fn conn_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConnRow> {
    let scopes: String = r.get(5)?;
    let public: String = r.get(7)?;
    Ok(ConnRow {
        info: Arc::new(ConnectionInfo {
            id: r.get(0)?,
            provider: r.get(1)?,
            account: r.get(2)?,
            auth_type: r.get(3)?,
            status: r.get(4)?,
            scopes: serde_json::from_str(&scopes).unwrap_or_default(),
            expires_at: r.get(6)?,
            public_fields: serde_json::from_str(&public).unwrap_or_default(),
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        }),
        sealed: r.get(8)?,
    })
}

fn validate_agent_name(name: &str) -> Result<String> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Error::BadRequest(
            "an agent name is 1-64 characters: letters, digits, space, `-`, `_` or `.`".into(),
        ))
    }
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
        if f.name == "apiId" && v.parse::<u64>().is_err() {
            return Err(Error::BadRequest(
                "`apiId` must be the integer API ID from my.telegram.org".into(),
            ));
        }
        out.insert(f.name.clone(), SecretString::from(v));
    }
    Ok(out)
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

// ----- opening and creating ---------------------------------------------------------------

struct Meta {
    vault_id: String,
    key_source: String,
    kcv: Vec<u8>,
    wrapped_key: Option<Vec<u8>>,
    kdf: Option<String>,
}

fn create_private_file(path: &Path) -> Result<()> {
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

fn has_tables(conn: &Connection) -> Result<bool> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(storage)?;
    Ok(n > 0)
}

fn read_meta(conn: &Connection) -> Result<Option<Meta>> {
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

fn kcv_binding() -> Binding<'static> {
    Binding {
        table: "meta",
        row: "kcv",
        purpose: "key-check",
    }
}

fn wrap_aad(vault_id: &str) -> Vec<u8> {
    format!("akhrot/v1|{vault_id}|meta|wrapped_key|master-key").into_bytes()
}

fn unlock_existing(path: &Path, meta: &Meta, unlock: &Unlock) -> Result<(Key32, KeySource)> {
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

fn first_run(conn: &Connection, unlock: &Unlock) -> Result<(String, Key32, KeySource)> {
    let vault_id = random_id(8);
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

fn migrate(conn: &Connection) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            data_dir: dir.join("data"),
            config_dir: dir.join("config"),
        }
    }

    fn pass(s: &str) -> Unlock {
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

    #[test]
    fn policy_precedence_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(&paths(dir.path()), pass("correct horse")).unwrap();
        let (a, _) = v.create_agent("bot", &[], true).unwrap();
        assert_eq!(v.policy_for(&a.id, "github").mode, Mode::Allow);
        v.set_policy("bot", "github", Mode::Deny, None).unwrap();
        assert_eq!(v.policy_for(&a.id, "github").mode, Mode::Deny);
        assert_eq!(v.policy_for(&a.id, "openai").mode, Mode::Allow);
        v.set_policy("bot", "openai", Mode::Allow, Some(now_unix() - 1))
            .unwrap();
        assert_eq!(
            v.policy_for(&a.id, "openai").effective(now_unix()),
            Mode::Ask
        );
        assert!(
            v.create_agent("bot", &[], false).is_err(),
            "names are unique"
        );
    }

    #[test]
    fn proxy_only_is_stored_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let id = {
            let v = Vault::open(&p, pass("correct horse")).unwrap();
            let (a, _) = v.create_agent("bot", &["openai".into()], false).unwrap();
            v.set_policy("bot", "github", Mode::ProxyOnly, None)
                .unwrap();
            v.set_policy("bot", "gitlab", Mode::ProxyOnly, Some(now_unix() - 1))
                .unwrap();
            v.set_policy("bot", "slack", Mode::Deny, Some(now_unix() + 60))
                .unwrap();
            a.id
        };
        let v = Vault::open(&p, pass("correct horse")).unwrap();
        let pol = v.policy_for(&id, "github");
        assert_eq!(pol.mode, Mode::ProxyOnly);
        assert_eq!(pol.until, None);
        assert_eq!(
            v.policy_for(&id, "gitlab").effective(now_unix()),
            Mode::Ask,
            "an expired proxy-only falls back to ask"
        );
        assert_eq!(
            v.policy_for(&id, "slack").until,
            None,
            "deny takes no time bound"
        );
        assert_eq!(v.policy_for(&id, "openai").mode, Mode::Allow);
        assert_eq!(Mode::parse("proxy-only"), Some(Mode::ProxyOnly));
        assert_eq!(Mode::ProxyOnly.as_str(), "proxy-only");
    }

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
        v.set_connection_status(&first.id, "needs_reconnect")
            .unwrap();
        assert_eq!(key_of(&v, None).0, "acct-01");
        assert_eq!(v.list_connections().len(), 50);
        assert_eq!(v.list_connections()[0].status, "needs_reconnect");
        v.delete_connection("openai", Some("acct-01")).unwrap();
        assert!(v.require_connection("openai", Some("acct-01")).is_err());
        assert_eq!(key_of(&v, None).0, "acct-02");
        let before: Vec<(String, String)> = v
            .list_connections()
            .into_iter()
            .map(|c| (c.account, c.status))
            .collect();
        drop(v);
        let v = Vault::open(&p, pass("correct horse")).unwrap();
        let after: Vec<(String, String)> = v
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
}
