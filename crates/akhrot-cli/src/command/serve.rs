//! `akhrot serve`: the headless vault owner (the API and no tray), until SIGTERM or SIGINT.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use clap::Args;

use akhrot_core::SecretString;
use akhrot_core::paths::Paths;
use akhrot_server::{Owner, OwnerOptions, OwnerOverrides};

#[derive(Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1; 0 picks a free one (it is printed and written to server.json)
    /// [default: config.toml `port`, else 47420]
    #[arg(long, env = "AKHROT_PORT")]
    pub port: Option<u16>,
    /// Seconds a token request waits for your approval [default: config.toml, else 120]
    #[arg(long, value_name = "SECS")]
    pub approval_timeout: Option<u64>,
    /// Agent requests per minute per key; 0 turns the limit off [default: config.toml, else 600]
    #[arg(long, value_name = "PER_MIN")]
    pub rate_limit: Option<u32>,
    /// Protect the vault with a passphrase instead of the OS keyring (asked on the terminal;
    /// AKHROT_PASSPHRASE also works). For machines without a keyring.
    #[arg(long)]
    pub passphrase: bool,
}

pub fn run(paths: Paths, args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A non-empty AKHROT_PASSPHRASE wins over the prompt (`OwnerOptions::resolve` reads it).
    let in_env = std::env::var("AKHROT_PASSPHRASE").is_ok_and(|p| !p.is_empty());
    let passphrase = if args.passphrase && !in_env {
        let p = rpassword::prompt_password("Vault passphrase: ")
            .context("cannot read the passphrase from the terminal")?;
        Some(SecretString::new(p))
    } else {
        None
    };
    let opts = OwnerOptions::resolve(
        paths.clone(),
        OwnerOverrides {
            port: args.port,
            rate_limit_per_min: args.rate_limit,
            approval_timeout_secs: args.approval_timeout,
            passphrase,
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        // Signal handlers exist before anyone can read the ready line, so an early SIGTERM is
        // a clean shutdown rather than the default (immediate death).
        let shutdown = shutdown_signal()?;
        let owner = Owner::start(opts).await?;
        println!(
            "akhrot: serving on {} (data dir {})",
            owner.base_url(),
            paths.data_dir.display()
        );
        // The sign-in link is a credential: only a person at a terminal sees it. Service logs
        // (systemd, a redirected stdout) keep stdout, so there the way in is `akhrot ui`.
        if std::io::stdout().is_terminal() {
            println!(
                "akhrot: web UI: {}  (one-time sign-in link, valid for an hour; `akhrot ui` makes another)",
                owner.ui_login_url()
            );
        } else {
            println!("akhrot: web UI: run `akhrot ui` for a one-time sign-in link");
        }
        let _ = std::io::stdout().flush();
        owner.serve(shutdown).await?;
        Ok(())
    })
}

/// Installs the SIGTERM/SIGINT handlers now; the returned future resolves on either.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}
