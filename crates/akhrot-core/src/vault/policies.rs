//! Policies: what an agent key may do with a provider (allow, ask, deny, proxy-only), per
//! provider or for every provider (`*`).

use rusqlite::params;
use serde::Serialize;

use super::keys::AgentInfo;
use super::{Vault, storage};
use crate::Result;

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

impl Vault {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pass, paths};
    use super::*;
    use crate::now_unix;

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
}
