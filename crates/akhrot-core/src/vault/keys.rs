//! Agent keys: creating, listing, revoking and authenticating them (only a hash is stored),
//! and their coalesced `last used` times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use rusqlite::params;
use serde::Serialize;

use super::policies::{ANY_PROVIDER, Mode, Policy};
use super::{Vault, storage};
use crate::agent_key;
use crate::secret::SecretString;
use crate::{Error, Result, now_unix};

#[derive(Debug)]
pub(super) struct AgentEntry {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) key_hash: [u8; 32],
    pub(super) created_at: i64,
    pub(super) revoked_at: Option<i64>,
    pub(super) last_used: AtomicI64,
    pub(super) dirty: AtomicBool,
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

impl Vault {
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

    pub(super) fn agent_info(&self, a: &AgentEntry) -> AgentInfo {
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

    pub(super) fn find_agent(&self, name_or_id: &str) -> Result<Arc<AgentEntry>> {
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
