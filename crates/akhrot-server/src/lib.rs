//! The Akhrot loopback API.
//!
//! [`Owner::start`] takes the data directory's owner lock, opens the vault, loads the catalog,
//! binds `127.0.0.1`, and writes the admin credential and `server.json`; [`Owner::serve`] runs
//! until the shutdown future resolves, then flushes and removes those files. `akhrot serve` and
//! the desktop shell both use it, so there is exactly one vault owner per data directory.

mod access;
pub mod actions;
mod admin;
mod agent;
pub mod error;
pub mod guard;
pub mod listener;
pub mod mcp;
pub mod models;
mod oauth;
pub mod openapi;
mod owner_options;
mod page;
mod proxy;
mod ratelimit;
mod redact;
mod render;
pub mod running;
mod settings;
#[cfg(test)]
mod skill_folder;
pub mod ui;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, delete, get, post};

use akhrot_core::approvals::Approvals;
use akhrot_core::audit::Audit;
use akhrot_core::broker::Broker;
use akhrot_core::catalog::Catalog;
use akhrot_core::oauth::OAuthHttp;
use akhrot_core::paths::{self, Paths};
use akhrot_core::vault::{Unlock, Vault};
use akhrot_core::{SecretString, now_rfc3339};

pub use owner_options::{OwnerOverrides, ResolveError};
pub use ratelimit::RateLimiter;

/// The port `akhrot serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 47420;
/// Agent requests per minute per key unless told otherwise.
pub const DEFAULT_RATE_LIMIT: u32 = 600;
/// How long a token request waits for the user's answer unless told otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 120;
/// How long a provider's token endpoint may take unless told otherwise.
pub const DEFAULT_PROVIDER_TIMEOUT_SECS: u64 = 15;

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
    pub ui: ui::UiAuth,
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
    pub fn provider(
        &self,
        code: &str,
    ) -> Result<Arc<akhrot_core::catalog::Provider>, error::ApiError> {
        self.catalog
            .get(code)
            .cloned()
            .ok_or_else(|| error::ApiError::provider_not_found(code))
    }
}

/// What the OS says about the processes at the other end of an agent's connection, as JSON
/// for the prompt and the audit log: an [`akhrot_core::peer::Peer`] (`verified`, `note`,
/// `processes`), never null: when nothing is known its note says so.
pub async fn peer_json(port: u16, peer: std::net::SocketAddr) -> serde_json::Value {
    let local = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Bounded: reading another process's /proc entries can block on its memory lock; a prompt
    // that says "unknown process" is better than one that comes late.
    let found = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::task::spawn_blocking(move || akhrot_core::peer::identify(local, peer)),
    )
    .await;
    let answer = match found {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => akhrot_core::peer::Peer::unknown(akhrot_core::peer::NOTE_UNKNOWN),
        Err(_) => {
            tracing::warn!(
                "identifying the calling process took over 500 ms; the prompt says unknown"
            );
            akhrot_core::peer::Peer::unknown("the OS took too long to say which process this is")
        }
    };
    serde_json::to_value(answer).unwrap_or_else(|_| {
        serde_json::json!({ "verified": false, "note": akhrot_core::peer::NOTE_UNKNOWN, "processes": [] })
    })
}

/// What an owner is started with.
#[derive(Debug, Clone)]
pub struct OwnerOptions {
    pub paths: Paths,
    /// `0` picks a free port.
    pub port: u16,
    pub unlock: Unlock,
    /// Requests per minute per agent key; `0` turns limiting off.
    pub rate_limit_per_min: u32,
    /// How long a token request waits for the user's answer.
    pub approval_timeout: Duration,
    /// How long a call to a provider's token endpoint may take.
    pub provider_timeout: Duration,
    /// The connection cap and the request-head deadline.
    pub limits: listener::ConnLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "another Akhrot owner is already running for {data_dir}{}: use it (the `akhrot` commands talk to it), or stop it first",
        .port.map(|p| format!(" (pid {}, port {p})", .pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()))).unwrap_or_default()
    )]
    AlreadyRunning {
        data_dir: String,
        pid: Option<u32>,
        port: Option<u16>,
    },
    #[error("cannot listen on 127.0.0.1:{port}: {source}{}", if .source.kind() == std::io::ErrorKind::AddrInUse { " (another program uses that port; pick another with --port, or --port 0 for a free one)" } else { "" })]
    Bind { port: u16, source: std::io::Error },
    #[error(transparent)]
    Core(#[from] akhrot_core::Error),
}

/// What `server.json` says about a running owner.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub pid: u32,
    pub port: u16,
    pub base_url: String,
    pub started_at: String,
    pub version: String,
}

impl ServerInfo {
    pub fn read(paths: &Paths) -> Option<Self> {
        let text = std::fs::read_to_string(paths.server_file()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

pub struct Owner {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    limits: listener::ConnLimits,
    paths: Paths,
    _lock: File,
}

impl Owner {
    pub async fn start(opts: OwnerOptions) -> Result<Self, StartError> {
        let started = std::time::Instant::now();
        paths::ensure_private_dir(&opts.paths.data_dir)?;
        let lock = take_owner_lock(&opts.paths)?;
        let vault = Arc::new(Vault::open(&opts.paths, opts.unlock.clone())?);
        let catalog = Arc::new(Catalog::load(&opts.paths.providers_d())?);
        for issue in &catalog.issues {
            tracing::warn!(%issue, "skipped a providers.d entry");
        }
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port)))
                .await
                .map_err(|source| StartError::Bind {
                    port: opts.port,
                    source,
                })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                port: opts.port,
                source,
            })?
            .port();
        let base_url = format!("http://127.0.0.1:{port}");
        let admin_token = new_admin_token();
        paths::write_private_file(&opts.paths.admin_token(), admin_token.expose().as_bytes())?;
        let audit = Audit::start(vault.path())?;
        let broker = Arc::new(
            Broker::new(
                vault.clone(),
                catalog.clone(),
                OAuthHttp::new(opts.provider_timeout),
                format!("{base_url}/oauth/callback"),
            )
            .with_audit(audit.clone()),
        );
        let paused = vault.setting("paused")?.as_deref() == Some("1");
        let state = Arc::new(AppState {
            skill_md: render_skill(&base_url, &catalog),
            vault,
            catalog,
            broker,
            approvals: Approvals::new(opts.approval_timeout),
            audit,
            paused: std::sync::atomic::AtomicBool::new(paused),
            admin_token,
            port,
            allowed_hosts: vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ],
            allowed_origins: vec![
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}"),
                format!("http://[::1]:{port}"),
            ],
            base_url: base_url.clone(),
            started_at: now_rfc3339(),
            limiter: RateLimiter::new(opts.rate_limit_per_min),
            ui: ui::UiAuth::new(port),
            config_dir: opts.paths.config_dir.clone(),
            closing: tokio::sync::watch::Sender::new(false),
            proxy_http: proxy::client(opts.provider_timeout),
            provider_timeout: opts.provider_timeout,
        });
        let info = ServerInfo {
            pid: std::process::id(),
            port,
            base_url,
            started_at: state.started_at.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
        paths::write_private_file(&opts.paths.server_file(), &json)?;
        tracing::info!(
            port,
            vault = %state.vault.path().display(),
            key_source = ?state.vault.key_source(),
            providers = state.catalog.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "akhrot owner ready"
        );
        Ok(Self {
            state,
            listener,
            limits: opts.limits,
            paths: opts.paths,
            _lock: lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.state.port
    }

    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// A one-time sign-in link for the web UI (valid for an hour, spent when opened).
    pub fn ui_login_url(&self) -> String {
        ui::login_url(&self.state)
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// The broker, e.g. for the desktop shell to complete `akhrot://oauth/callback` deep links.
    pub fn broker(&self) -> Arc<Broker> {
        self.state.broker.clone()
    }

    /// Serves until `shutdown` resolves, then writes what is pending and removes the owner files.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let vault = self.state.vault.clone();
        let flusher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Err(e) = vault.flush_last_used() {
                    tracing::warn!(error = %e, "could not record last-used times");
                }
            }
        });
        let app = router(self.state.clone());
        let state = self.state.clone();
        tokio::spawn(async move {
            shutdown.await;
            state.closing.send_replace(true);
            // Waiting token requests are in flight: answer them now, or the graceful shutdown
            // would wait for their prompts to time out.
            actions::deny_all_at_shutdown(&state);
        });
        let result = listener::serve(
            self.listener,
            app,
            self.limits,
            self.state.closing.subscribe(),
        )
        .await;
        self.state.audit.close();
        flusher.abort();
        if let Err(e) = self.state.vault.flush_last_used() {
            tracing::warn!(error = %e, "could not record last-used times");
        }
        if ServerInfo::read(&self.paths).is_some_and(|i| i.pid == std::process::id()) {
            let _ = std::fs::remove_file(self.paths.server_file());
            let _ = std::fs::remove_file(self.paths.admin_token());
        }
        tracing::info!("akhrot owner stopped");
        result
    }
}

fn take_owner_lock(paths: &Paths) -> Result<File, StartError> {
    let path = paths.owner_lock();
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts
        .open(&path)
        .map_err(|e| akhrot_core::Error::Io(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let info = ServerInfo::read(paths);
            Err(StartError::AlreadyRunning {
                data_dir: paths.data_dir.display().to_string(),
                pid: info.as_ref().map(|i| i.pid),
                port: info.map(|i| i.port),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(akhrot_core::Error::Io(format!("cannot lock {}: {e}", path.display())).into())
        }
    }
}

fn new_admin_token() -> SecretString {
    use rand::RngCore;
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(b.as_mut());
    SecretString::new(format!("akhrot-admin-{}", hex::encode(b.as_ref())))
}

fn render_skill(base_url: &str, catalog: &Catalog) -> String {
    let rows: Vec<String> = catalog
        .iter()
        .map(|p| {
            let kind = match p.auth {
                akhrot_core::catalog::AuthType::Oauth2 => "OAuth Bearer",
                akhrot_core::catalog::AuthType::ApiKey => "API Key",
                akhrot_core::catalog::AuthType::Mtproto => "MTProto Session",
            };
            format!("{} {} {} {}", p.name, p.code, kind, p.description)
        })
        .collect();
    include_str!("skill.md")
        .replace("{{BASE_URL}}", base_url)
        .replace("{{PROVIDERS}}", &rows.join("\n"))
}

/// The whole API behind the loopback hygiene layer.
pub fn router(state: Arc<AppState>) -> Router {
    // `/mcp` runs its tools through the same API in-process, as the caller's own requests; that
    // router has no `/mcp` of its own, so nothing loops.
    let agent_api = routes(state.clone(), None);
    routes(state, Some(agent_api))
}

/// The API; with `/mcp` (whose tools call `mcp_api`) when `mcp_api` is given.
fn routes(state: Arc<AppState>, mcp_api: Option<Router>) -> Router {
    let mut r = Router::new()
        .route("/ai/skill", get(agent::skill))
        .route("/ai/context/summary", get(agent::summary))
        .route("/ai/context/{provider}", get(agent::provider_context))
        .route(
            "/ai/context/{provider}/{service}",
            get(agent::service_context),
        )
        .route("/tokens/fetch", post(agent::fetch_token))
        .route("/ai/approvals", get(agent::own_approvals))
        .route("/proxy/{*rest}", any(proxy::handle))
        .route("/oauth/sessions", post(oauth::start_session))
        .route("/oauth/sessions/{id}", get(oauth::get_session))
        .route("/oauth/callback", get(oauth::callback))
        .route("/openapi.json", get(openapi::openapi_json))
        .route(
            "/admin/clients",
            get(admin::list_clients).post(admin::set_client),
        )
        .route("/admin/sessions", post(admin::start_session))
        .route("/admin/sessions/{id}", get(admin::get_session))
        .route("/admin/approvals", get(admin::list_approvals))
        .route("/admin/approvals/{id}", post(admin::answer_approval))
        .route("/admin/pause", post(admin::set_pause))
        .route("/admin/audit", get(admin::audit_log))
        .route("/admin/events", get(admin::events))
        .route("/admin/status", get(admin::status))
        .route(
            "/admin/settings",
            get(settings::get_settings).post(settings::set_settings),
        )
        .route("/admin/ui-link", post(ui::new_link))
        .route("/admin/logout", post(ui::logout))
        .route("/", get(ui::root))
        .route("/ui", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/login", get(ui::login))
        .route("/ui/session", get(ui::session))
        .route("/ui/{*path}", get(ui::file))
        .route("/admin/keys", get(admin::list_keys).post(admin::create_key))
        .route("/admin/keys/{name}", delete(admin::revoke_key))
        .route("/admin/policies", post(admin::set_policy))
        .route(
            "/admin/connections",
            get(admin::list_connections).post(admin::add_connection),
        )
        .route(
            "/admin/connections/{provider}",
            delete(admin::remove_connection),
        )
        .route("/admin/token", post(admin::token))
        .route("/admin/providers", get(admin::list_providers))
        .route("/admin/providers/{code}", get(admin::get_provider));
    if let Some(api) = mcp_api {
        r = r.merge(
            Router::new()
                .route_service("/mcp", mcp::http_service(&state, api))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    mcp::require_agent,
                )),
        );
    }
    r
        // Before the 405 fallback is set, so a wrong method is a 405, not a content-type 400.
        .route_layer(axum::middleware::from_fn(guard::require_json))
        .fallback(|| async { admin::not_found() })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                error::Code::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::hygiene,
        ))
        .with_state(state)
}
