//! Akhrot core: everything the vault owner knows, free of any UI or HTTP framework.
//!
//! - [`secret`]: the types secrets live in (redacted `Debug`/`Display`, zeroized on drop).
//! - [`crypto`]: XChaCha20-Poly1305 sealing bound to a row and a purpose.
//! - [`keystore`]: where the master key lives (OS keyring, or a passphrase-wrapped copy).
//! - [`vault`]: the SQLite store of agents, policies and connections.
//! - [`catalog`]: providers as data (built-in file plus `providers.d/*.toml`).
//! - [`agent_key`]: the `akhrot_<id>_<secret>` key format.
//! - [`paths`]: data and config directories, owner files, private file modes.
//! - [`child`]: the environment of programs Akhrot starts (no `AKHROT_*` secret), the browser.
//! - [`telegram`]: Telegram StringSessions (Telethon's and GramJS's formats), parsed and written.
//! - [`text`]: small shared helpers (random hex, percent-encoding, cleaning text from outside).

pub mod agent_key;
pub mod approvals;
pub mod audit;
pub mod broker;
pub mod catalog;
pub mod child;
pub mod config;
pub mod crypto;
pub mod error;
pub mod keystore;
pub mod oauth;
pub mod paths;
pub mod peer;
pub mod quirks;
pub mod secret;
pub mod telegram;
pub mod text;
pub mod vault;

pub use error::{Error, Result};
pub use secret::SecretString;
pub use text::clean_text;

/// The current time as RFC 3339 (UTC, second precision).
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 (UTC, second precision).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Formats unix seconds as RFC 3339.
pub fn unix_to_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(rfc3339)
        .unwrap_or_else(|_| secs.to_string())
}
