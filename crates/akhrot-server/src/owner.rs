//! The vault owner: [`Owner::start`] takes the owner lock, opens the vault, binds the listener
//! and writes `server.json` and the admin credential; [`Owner::serve`] serves the [`router`]
//! until shutdown and then removes those files.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use akhrot_core::approvals::Approvals;
use akhrot_core::audit::Audit;
use akhrot_core::broker::Broker;
use akhrot_core::catalog::Catalog;
use akhrot_core::oauth::OAuthHttp;
use akhrot_core::paths::{self, Paths};
use akhrot_core::vault::{Unlock, Vault};
use akhrot_core::{SecretString, now_rfc3339};

use crate::ratelimit::RateLimiter;
use crate::render::render_skill;
use crate::router::router;
use crate::running::ServerInfo;
use crate::state::AppState;
use crate::ui_session::UiAuth;
use crate::{actions, listener, proxy, ui};

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
            ui: UiAuth::new(port),
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
        // Providers that require it (catalog `validate`) have their tokens validated at start
        // and every `every` seconds, until shutdown.
        let validation = tokio::spawn(
            self.state
                .broker
                .clone()
                .run_validation(self.state.closing.subscribe()),
        );
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
        validation.abort();
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
    SecretString::new(format!(
        "akhrot-admin-{}",
        akhrot_core::text::random_hex(32)
    ))
}
