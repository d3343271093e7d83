//! What every request shares: [`AppState`], built once by [`crate::Owner::start`].

use std::sync::Arc;
use std::time::Duration;

use akhrot_core::SecretString;
use akhrot_core::approvals::Approvals;
use akhrot_core::audit::Audit;
use akhrot_core::broker::Broker;
use akhrot_core::catalog::Catalog;
use akhrot_core::vault::Vault;

use crate::error::ApiError;
use crate::ratelimit::RateLimiter;
use crate::ui_session::UiAuth;

/// Shared by every request.
pub struct AppState {
    pub vault: Arc<Vault>,
    pub catalog: Arc<Catalog>,
    pub broker: Arc<Broker>,
    pub approvals: Arc<Approvals>,
    pub audit: Audit,
    /// "Pause all agents": every agent request is denied while on (persisted).
    pub paused: std::sync::atomic::AtomicBool,
    pub admin_token: SecretString,
    pub port: u16,
    pub base_url: String,
    pub started_at: String,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub limiter: RateLimiter,
    pub skill_md: String,
    /// The web UI's sign-in links and sessions.
    pub ui: UiAuth,
    /// Where `config.toml` lives (the Settings page writes it).
    pub config_dir: std::path::PathBuf,
    /// Turns true when shutdown starts, so long-lived answers (the event stream) end and do not
    /// hold the graceful shutdown open.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The client `/proxy/…` forwards with (redirects never followed).
    pub proxy_http: reqwest::Client,
    /// How long a provider may take to answer (token endpoints; proxied calls until headers).
    pub provider_timeout: Duration,
}

impl AppState {
    /// A catalog provider, or `PROVIDER_NOT_FOUND`.
    pub fn provider(&self, code: &str) -> Result<Arc<akhrot_core::catalog::Provider>, ApiError> {
        self.catalog
            .get(code)
            .cloned()
            .ok_or_else(|| ApiError::provider_not_found(code))
    }
}
