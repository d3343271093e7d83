//! The Akhrot loopback API.
//!
//! [`Owner::start`] takes the data directory's owner lock, opens the vault, loads the catalog,
//! binds `127.0.0.1`, and writes the admin credential and `server.json`; [`Owner::serve`] runs
//! until the shutdown future resolves, then flushes and removes those files. `akhrot serve` and
//! the desktop shell both use it, so there is exactly one vault owner per data directory.
//!
//! The modules are layered; a module only names modules below it (the `layers` test checks):
//!
//! - **Shared pieces**: [`error`] (the envelope and its codes), `page` (small HTML pages),
//!   `render` (snippets and the skill document), `redact`, `ratelimit`, [`listener`],
//!   [`running`], `proxy_path` (the proxy's path check), `ui_session` (the web UI's sign-in
//!   links and sessions), `token` (the token answer).
//! - **State**: `state` ([`AppState`]).
//! - **HTTP pieces on the state**: [`guard`] (hygiene, extractors, authentication), `access`
//!   (may this agent act now?), [`actions`] (what the user does to approvals and the pause
//!   switch), `consent` (a consent session's request and answer).
//! - **Routes**, none naming another: `agent`, `oauth`, `proxy`, [`mcp`], `admin`, `settings`,
//!   [`ui`].
//! - **On top**: `router` (every route behind the hygiene layer), [`openapi`] (documents the
//!   agent routes), `owner` ([`Owner`]: starts and serves it all).

mod access;
pub mod actions;
mod admin;
mod agent;
mod consent;
pub mod error;
pub mod guard;
#[cfg(test)]
mod layers;
pub mod listener;
pub mod mcp;
pub mod models;
mod oauth;
pub mod openapi;
mod owner;
mod owner_options;
mod page;
mod proxy;
mod proxy_path;
mod ratelimit;
mod redact;
mod render;
mod router;
pub mod running;
mod settings;
#[cfg(test)]
mod skill_folder;
mod state;
mod token;
pub mod ui;
mod ui_session;

pub use access::peer_json;
pub use owner::{Owner, OwnerOptions, StartError};
pub use owner_options::{OwnerOverrides, ResolveError};
pub use ratelimit::RateLimiter;
pub use router::router;
pub use running::ServerInfo;
pub use state::AppState;

/// The port `akhrot serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 47420;
/// Agent requests per minute per key unless told otherwise.
pub const DEFAULT_RATE_LIMIT: u32 = 600;
/// How long a token request waits for the user's answer unless told otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 120;
/// How long a provider's token endpoint may take unless told otherwise.
pub const DEFAULT_PROVIDER_TIMEOUT_SECS: u64 = 15;
