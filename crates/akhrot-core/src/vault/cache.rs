//! The in-memory copy of the vault's rows (secrets still sealed): reads never wait on SQLite.

use std::collections::HashMap;
use std::sync::Arc;

use super::connections::ConnRow;
use super::keys::AgentEntry;
use super::policies::Policy;

#[derive(Default)]
pub(super) struct Cache {
    pub(super) agents: HashMap<String, Arc<AgentEntry>>,
    /// agent id → provider (or `*`) → policy.
    pub(super) policies: HashMap<String, HashMap<String, Policy>>,
    /// Every connection, oldest first.
    pub(super) conns: Vec<Arc<ConnRow>>,
    /// The same rows by provider, and by provider and account: a hand-out finds its connection
    /// without walking the whole list, however many connections are stored.
    pub(super) by_provider: HashMap<String, ProviderRows>,
}

#[derive(Default)]
pub(super) struct ProviderRows {
    /// Oldest first.
    pub(super) rows: Vec<Arc<ConnRow>>,
    pub(super) by_account: HashMap<String, Arc<ConnRow>>,
}

impl Cache {
    /// Inserts a connection, or replaces the row with its id.
    pub(super) fn upsert(&mut self, row: Arc<ConnRow>) {
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

    pub(super) fn remove(&mut self, id: &str) {
        self.conns.retain(|r| r.info.id != id);
        for p in self.by_provider.values_mut() {
            p.rows.retain(|r| r.info.id != id);
            p.by_account.retain(|_, r| r.info.id != id);
        }
        self.by_provider.retain(|_, p| !p.rows.is_empty());
    }
}
