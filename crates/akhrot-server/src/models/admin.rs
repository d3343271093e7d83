//! The admin API's requests and answers (`/admin/…`: the user's own CLI and web UI), one type
//! per body. Field order is the order on the wire; the web UI in `ui/` reads these shapes.
//!
//! Records the core owns (connections, agent keys) have a mirror here with the same fields, so
//! the CLI can read them without the core knowing of HTTP.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use akhrot_core::SecretString;
use akhrot_core::approvals::{Answer, AskKind, Prompt};
use akhrot_core::audit::{Action, Entry, Outcome};
use akhrot_core::vault::{AgentInfo, ConnectionInfo, ConnectionStatus, KeySource};

// ---- requests ----

/// `POST /admin/keys`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// Providers this agent may use without asking.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Every provider without asking.
    #[serde(default)]
    pub allow_all: bool,
}

/// `POST /admin/policies`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPolicy {
    /// The agent key's name or id.
    pub agent: String,
    /// A provider code, or `*` for every provider without its own policy.
    pub provider: String,
    /// `allow`, `ask`, `deny` or `proxy-only`.
    #[schema(example = "allow")]
    pub mode: String,
    /// For `allow` and `proxy-only`: seconds from now until it lapses back to `ask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
}

/// `POST /admin/connections`: an API-key provider's values. (Read only: a body with secrets is
/// never serialized from a typed value, so a secret is exposed only where it is written.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddConnection {
    pub provider: String,
    /// A label to keep several accounts apart [default: `default`].
    #[serde(default)]
    pub account: Option<String>,
    /// The provider's fields by name (see `GET /admin/providers/{code}`).
    #[schema(value_type = BTreeMap<String, String>)]
    pub fields: BTreeMap<String, SecretString>,
}

/// `POST /admin/token`: the user's own token request (no policy: the user is the owner).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// `POST /admin/clients`: the user's OAuth app for a provider. (Read only, as [`AddConnection`].)
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetClient {
    pub provider: String,
    pub client_id: String,
    /// None for a public client (PKCE only).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<SecretString>,
    /// `loopback` or `deep_link`; absent: the catalog's choice.
    #[serde(default)]
    pub redirect: Option<String>,
    /// The provider's client settings (`tenant` for Microsoft, `host` for GitLab), by name;
    /// a setting left out takes its default. They replace the ones set before.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// `POST /admin/approvals/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerApproval {
    /// `deny`, `once`, `hour`, `quit`, `always`, or `for:<seconds>`.
    #[schema(value_type = String, example = "once")]
    #[serde(with = "answer_request")]
    pub answer: Answer,
}

/// A string schema listing `words`.
fn words_schema(words: Vec<&str>, description: &str) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(words))
        .description(Some(description))
        .build()
}

fn connection_status_schema() -> utoipa::openapi::Object {
    words_schema(
        vec![
            ConnectionStatus::Connected.as_str(),
            ConnectionStatus::NeedsReconnect.as_str(),
        ],
        "`connected`, or `needs_reconnect` when the provider refused the refresh token (or, for a provider that validates tokens, the access token).",
    )
}

fn action_schema() -> utoipa::openapi::Object {
    words_schema(
        Action::ALL.iter().map(Action::as_str).collect(),
        "What the entry is about.",
    )
}

/// An approval answer as a request names it (`deny`, `once`, `hour`, `quit`, `always`,
/// `for:<seconds>`); an unknown one is refused without echoing it.
pub mod answer_request {
    use super::Answer;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Answer, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.request_word())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Answer, D::Error> {
        let s = String::deserialize(d)?;
        Answer::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(
                "the answer is not one of deny, once, hour, quit, always, for:<seconds>",
            )
        })
    }
}

/// An approval answer as shown (`deny`, `once`, `for <n>s`, `until quit`, `always`).
pub mod answer_shown {
    use super::Answer;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Answer, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Answer, D::Error> {
        let s = String::deserialize(d)?;
        Answer::parse_shown(&s).ok_or_else(|| {
            serde::de::Error::custom(
                "the answer is not one of deny, once, for <n>s, until quit, always",
            )
        })
    }
}

/// `POST /admin/pause`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPause {
    pub paused: bool,
}

/// `GET /admin/audit`'s query.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this agent (name or id).
    pub agent: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this action (token, approval, connect, disconnect, refresh, key, policy, client, pause).
    pub action: Option<String>,
    /// Only entries before this time (unix milliseconds).
    pub before: Option<i64>,
    /// How many entries [default: 100].
    pub limit: Option<usize>,
}

// ---- answers ----

/// `GET /admin/status`: the owner, the vault, and what it holds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub server: ServerStatus,
    pub paused: bool,
    /// The prompts waiting for an answer, as `GET /admin/approvals` lists them.
    pub pending_approvals: Vec<Approval>,
    pub vault: VaultStatus,
    pub connections: Vec<StatusConnection>,
    pub agents: AgentCounts,
    pub catalog: CatalogStatus,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub version: String,
    pub pid: u32,
    pub port: u16,
    pub base_url: String,
    /// RFC 3339.
    pub started_at: String,
    pub rate_limit_per_minute: u32,
    pub approval_timeout_secs: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultStatus {
    pub path: String,
    pub vault_id: String,
    /// `keyring` or `passphrase`.
    pub key_source: String,
}

impl VaultStatus {
    pub fn key_source_name(k: KeySource) -> &'static str {
        match k {
            KeySource::Keyring => "keyring",
            KeySource::Passphrase => "passphrase",
        }
    }
}

/// A connection in the status answer: the connection and its provider's display name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusConnection {
    #[serde(flatten)]
    pub connection: Connection,
    pub provider_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentCounts {
    pub total: usize,
    pub active: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogStatus {
    /// How many providers the catalog has.
    pub providers: usize,
    /// Problems in `providers.d/*.toml`, one sentence each.
    pub issues: Vec<String>,
}

/// A connection's public facts (no secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: String,
    pub provider: String,
    pub account: String,
    /// `oauth2`, `api_key`, …
    pub auth_type: String,
    /// `connected`, or `needs_reconnect` when the provider refused the refresh token (or, for a provider that validates tokens, the access token).
    #[schema(schema_with = connection_status_schema)]
    pub status: ConnectionStatus,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Values the catalog marks as not secret (account SID, domain, project ref, API id).
    pub public_fields: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<ConnectionInfo> for Connection {
    fn from(c: ConnectionInfo) -> Self {
        Self {
            id: c.id,
            provider: c.provider,
            account: c.account,
            auth_type: c.auth_type,
            status: c.status,
            scopes: c.scopes,
            expires_at: c.expires_at,
            public_fields: c.public_fields,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// An agent key as the owner sees it (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentKey {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// By provider code (`*`: every provider without its own).
    pub policies: BTreeMap<String, PolicyView>,
}

/// A policy: mode, and for time-bounded allows (and proxy-only), until when (unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// `allow`, `ask`, `deny` or `proxy-only`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

impl From<AgentInfo> for AgentKey {
    fn from(a: AgentInfo) -> Self {
        Self {
            id: a.id,
            name: a.name,
            created_at: a.created_at,
            last_used_at: a.last_used_at,
            revoked_at: a.revoked_at,
            policies: a
                .policies
                .into_iter()
                .map(|(p, v)| {
                    (
                        p,
                        PolicyView {
                            mode: v.mode.as_str().to_owned(),
                            until: v.until,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// `POST /admin/keys`: the new key, shown this once, and its record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyCreated {
    /// `akhrot_<id>_<secret>`; never stored, never shown again.
    pub key: String,
    pub agent: AgentKey,
}

/// `POST /admin/connections`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionAdded {
    pub connection: Connection,
    /// An existing connection with the same provider and account was replaced.
    pub replaced: bool,
}

/// `DELETE /admin/connections/{provider}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRemoved {
    pub removed: Connection,
    /// The provider confirmed revoking the token (OAuth providers with a revocation endpoint).
    pub revoked_at_provider: bool,
}

/// A catalog provider, as the admin API shows it (`GET /admin/providers[/{code}]`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInfo {
    pub code: String,
    pub name: String,
    /// `oauth2`, `api_key`, …
    pub auth_type: String,
    pub description: String,
    pub console_url: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub scopes: Vec<String>,
    pub docs_url: Option<String>,
    pub fields: Vec<ProviderField>,
    /// The provider documentation pages the catalog entry was checked against.
    #[serde(default)]
    pub sources: Vec<String>,
    /// From `providers.d`, not built in.
    pub custom: bool,
}

/// A value an API-key provider needs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderField {
    pub name: String,
    pub label: String,
    pub secret: bool,
    pub optional: bool,
    pub hint: Option<String>,
    /// What an optional field left empty means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The values the field may take (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A client setting of an OAuth provider, and its value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSetting {
    pub name: String,
    pub label: String,
    pub hint: Option<String>,
    /// The value when none is set.
    pub default: Option<String>,
    /// `name` (a plain name) or `origin` (a server address).
    pub kind: String,
    /// The value set with the client, if any.
    pub value: Option<String>,
}

/// `GET /admin/clients`: an OAuth provider and the app set for it, if any.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub provider: String,
    pub name: String,
    pub configured: bool,
    pub client_id: Option<String>,
    pub has_secret: Option<bool>,
    /// The redirect URI to register with the provider.
    pub redirect_uri: String,
    pub console_url: Option<String>,
    /// The provider's client settings (empty for most providers).
    #[serde(default)]
    pub settings: Vec<ClientSetting>,
}

/// `POST /admin/clients`: what was stored, and the redirect URI to register.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSet {
    pub provider: String,
    pub client_id: String,
    pub has_secret: bool,
    pub redirect_uri: String,
    pub console_url: Option<String>,
    /// The settings in force (the ones set, and the defaults of the rest).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// `POST /admin/pause`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Paused {
    pub paused: bool,
}

/// `POST /admin/settings`: the settings the web UI's Settings page changes; at least one.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetSettings {
    /// 5 to 86400; applies at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_secs: Option<u64>,
    /// 0 (off) to 1000000; applies at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<u32>,
    /// Applies at the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `GET /admin/settings` (and `POST`'s answer): what this owner runs with.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The port this owner listens on.
    pub port: u16,
    /// `config.toml`'s port, if it sets one.
    pub configured_port: Option<u16>,
    pub approval_timeout_secs: u64,
    pub rate_limit_per_minute: u32,
    pub paused: bool,
    /// `keyring` or `passphrase`.
    pub key_source: String,
    pub vault_path: String,
    pub data_dir: Option<String>,
    pub config_path: String,
    pub version: String,
    pub base_url: String,
    /// In `POST`'s answer only: the port changed, and applies at the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_required: Option<bool>,
}

/// `POST /admin/ui-link`: a one-time sign-in link to the web UI.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UiLink {
    /// `http://127.0.0.1:<port>/ui/login?code=…`; works once.
    pub url: String,
    pub expires_in_secs: u64,
}

/// `POST /admin/logout`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedOut {
    pub signed_out: bool,
}

/// An approval prompt waiting for the user (`GET /admin/approvals`, `pendingApprovals` in the
/// status).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    /// `token` (a hand-out), `proxy` (a call through `/proxy/…`) or `connect` (a consent
    /// session an agent started).
    #[schema(example = "token")]
    pub kind: String,
    pub agent_id: String,
    pub agent: String,
    pub provider: String,
    pub provider_name: String,
    /// The connection's account; for `connect`, the label the agent asked for (empty: none).
    pub account: String,
    pub scopes: Vec<String>,
    pub reason: Option<String>,
    /// What the OS says about the calling processes (not what the agent claims).
    #[schema(value_type = Option<PeerView>)]
    pub peer: Option<Value>,
    /// Method and path, for proxied calls.
    pub request: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    /// Requests waiting on this prompt.
    pub waiting: usize,
}

impl Approval {
    /// The calling processes, read from `peer`.
    pub fn peer_view(&self) -> Option<PeerView> {
        self.peer
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }
}

/// The calling processes as the OS named them. `verified` only when exactly one process holds
/// the connection and every fact about it could be read; otherwise `note` says why not.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub processes: Vec<PeerProcessView>,
}

/// A calling process (besides these: `cwd`, `uid`, `parent`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerProcessView {
    pub pid: u32,
    /// The executable; absent when it cannot be read.
    #[serde(default)]
    pub exe: Option<String>,
    /// The command line, cut; the process can rewrite it.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

impl From<Prompt> for Approval {
    fn from(p: Prompt) -> Self {
        let a = p.ask;
        Self {
            id: p.id,
            kind: match a.kind {
                AskKind::Token => "token",
                AskKind::Proxy => "proxy",
                AskKind::Connect => "connect",
            }
            .to_owned(),
            agent_id: a.agent_id,
            agent: a.agent,
            provider: a.provider,
            provider_name: a.provider_name,
            account: a.account,
            scopes: a.scopes,
            reason: a.reason,
            peer: a.peer,
            request: a.request,
            created_at: p.created_at,
            expires_at: p.expires_at,
            waiting: p.waiting,
        }
    }
}

/// `POST /admin/approvals/{id}`: the prompt answered, and how.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApprovalAnswered {
    pub approval: Approval,
    /// `deny`, `once`, `for <n>s`, `until quit` or `always`.
    #[schema(value_type = String)]
    #[serde(with = "answer_shown")]
    pub answer: Answer,
}

/// One audit entry (`GET /admin/audit`, newest first).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub agent_id: Option<String>,
    pub agent: Option<String>,
    pub provider: Option<String>,
    pub account: Option<String>,
    /// `token`, `proxy`, `connect`, `disconnect`, `refresh`, `approval`, `pause`, `settings`,
    /// `key`, `policy` or `client`.
    #[schema(schema_with = action_schema)]
    pub action: Action,
    /// A word (`handed_out`, `denied`, `timeout`, …), an upstream HTTP status for `proxy`
    /// (`200`), the answer for `approval` (`for 3600s`), the mode for `policy`.
    #[schema(value_type = String)]
    pub outcome: Outcome,
    pub detail: Option<String>,
    /// What the OS said about the calling process, when known.
    #[schema(value_type = Option<Object>)]
    pub peer: Option<Value>,
    /// Identical events within one commit group are one entry: how many, and when the last one
    /// was (unix milliseconds).
    pub count: i64,
    pub last_at: Option<i64>,
}

impl From<Entry> for AuditEntry {
    fn from(e: Entry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            agent_id: e.agent_id,
            agent: e.agent,
            provider: e.provider,
            account: e.account,
            action: e.action,
            outcome: e.outcome,
            detail: e.detail,
            peer: e.peer,
            count: e.count,
            last_at: e.last_at,
        }
    }
}

/// `POST /admin/sessions` and `GET /admin/sessions/{id}`: the same consent session agents see.
pub use crate::consent::{Session, SessionStatus};
