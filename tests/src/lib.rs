//! Harness for the end-to-end tests: starts the real `akhrot serve` binary on a free port with
//! its own temporary data and config directories, and talks HTTP to it.
//!
//! The tests expect a real Secret Service on the session bus (run them through
//! `scripts/with-keyring`, as `scripts/test` does).
//!
//! The harness in modules: `server` ([`Server`], [`Opts`], [`Dirs`]), [`secrets`] (the
//! plaintext-secret scanner every server and data dir goes through), `cli` (running `akhrot`),
//! `http` (client, envelope, query parameters), `vault` (a vault's files and keyring entry),
//! `standin` (stand-in provider APIs), `telegram` (StringSessions), `oidc` (a real authorization server), `browser` (a scripted
//! person, a fake `xdg-open`) and `oauth` (OAuth sessions end to end).
//! Everything is re-exported here, so a test needs only `use akhrot_e2e::*;`.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod browser;
mod cli;
mod http;
mod oauth;
mod oidc;
pub mod secrets;
mod server;
mod standin;
mod telegram;
mod vault;

pub use browser::{Browser, FakeBrowser};
pub use cli::{akhrot_cmd, bin, cli_in, run_fed, stderr, stdout};
pub use http::{code, http_agent, key_record, param, query_params};
pub use oauth::OauthEnv;
pub use oidc::Oidc;
pub use server::{Dirs, Opts, Server, ServerLog};
pub use standin::{Answer, INJECT_X_API_KEY, Seen, StandIn, api_key_provider, write_provider_file};
pub use telegram::{random_auth_key, telethon_session};
pub use vault::{contains, keyring_entry, vault_bytes, vault_id};
