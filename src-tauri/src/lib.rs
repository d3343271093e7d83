//! The Akhrot desktop app: a thin Tauri shell around the same vault owner as `akhrot serve`.
//!
//! The process starts [`akhrot_server::Owner`] on its own tokio runtime (one vault owner per data
//! directory: when `akhrot serve` already owns it, the window says so instead of fighting) and
//! adds only what a desktop needs: a tray menu, the web UI in a window (signed in with a one-time
//! link), a small always-on-top prompt window plus a notification when an agent waits for
//! approval, and the `akhrot://oauth/callback` deep link (a second launch forwards its URL to the
//! running app, which completes the session through the broker). Every decision goes through the
//! server crate's shared actions; the shell has no rules of its own.

pub mod ipc;
mod tray;
mod windows;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tauri::{AppHandle, Manager, RunEvent, Runtime};

use akhrot_core::approvals::Event as ApprovalEvent;
use akhrot_core::paths::Paths;
use akhrot_core::{SecretString, broker::CallbackOutcome};
use akhrot_server::{AppState, Owner, OwnerOptions, StartError};

pub use ipc::{Core, handler};

/// The app's Tauri context: configuration, the prompt page's assets, and the capabilities.
pub fn context<R: Runtime>() -> tauri::Context<R> {
    tauri::generate_context!()
}

/// The running owner: how to stop it, and the task serving it.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    served: Mutex<Option<tauri::async_runtime::JoinHandle<std::io::Result<()>>>>,
}

/// Runs the app until Quit (tray), SIGTERM or SIGINT.
pub fn run() -> ExitCode {
    #[cfg(target_os = "linux")]
    reexec_clean();
    init_tracing();
    let hidden = std::env::args().skip(1).any(|a| a == "--hidden");
    // Two workers are plenty for a loopback API with a handful of agents, and keep the idle
    // footprint small.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("akhrot-rt")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("akhrot-desktop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tauri::async_runtime::set(rt.handle().clone());
    let built = tauri::Builder::default()
        // First: a second launch hands its arguments (an akhrot:// URL, with the deep-link
        // feature) to this process and exits before it touches anything.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            let has_link = argv.iter().skip(1).any(|a| a.starts_with("akhrot:"));
            if !has_link {
                windows::open_main(app);
            }
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--hidden"]),
        ))
        .invoke_handler(ipc::handler())
        .setup(move |app| {
            setup(app.handle(), hidden);
            Ok(())
        })
        .build(context());
    let app = match built {
        Ok(app) => app,
        Err(e) => {
            eprintln!("akhrot-desktop: cannot start the window system: {e}");
            return ExitCode::FAILURE;
        }
    };
    app.run(|app, event| match event {
        // The last window closed: the app stays in the tray while it owns the vault.
        RunEvent::ExitRequested {
            code: None, api, ..
        } if app.try_state::<Running>().is_some() => api.prevent_exit(),
        RunEvent::Exit => stop_owner(app),
        _ => {}
    });
    drop(rt);
    ExitCode::SUCCESS
}

/// Set next to `GDK_GL=disable` when this process set it, so that programs it starts for the
/// person (their browser) do not inherit it.
#[cfg(target_os = "linux")]
pub(crate) const NO_GL_MARK: &str = "AKHROT_SET_GDK_GL";

/// Set when this process moved `AKHROT_PASSPHRASE` out of its environment: the passphrase is on
/// stdin (a pipe the previous image of this process filled before re-executing).
#[cfg(target_os = "linux")]
const PASSPHRASE_ON_STDIN: &str = "AKHROT_PASSPHRASE_ON_STDIN";

/// The largest passphrase moved through the pipe (it must fit in the pipe's buffer, which is
/// filled before anyone reads it); a longer one stays in the environment.
#[cfg(target_os = "linux")]
const PIPE_MAX: usize = 16 * 1024;

/// Re-executes this process (same pid, same arguments) once, when needed for either of:
///
/// - GTK 3 on X11 initialises OpenGL (GLX, and with it the Mesa driver: libLLVM for llvmpipe,
///   ~50 MB resident) as soon as it opens the display, only to pick visuals for GL areas that
///   this app never draws. `GDK_GL=disable` skips that; it is read once, when GTK starts, so the
///   process re-executes itself with it set unless `GDK_GL` is already set, which also lets a
///   person choose otherwise. WebKit does not need it: it renders web pages in its own processes
///   and, without a GL context shared with GTK, hands them over as mapped buffers.
/// - No `AKHROT_*` secret may stay in this process's environment: WebKit's web and network
///   processes, and anything else GTK or a plugin starts, inherit it (and the environment of a
///   process is readable in /proc). The vault passphrase moves to a pipe on stdin, read once by
///   [`owner_options`]; other `AKHROT_*` secrets (an agent key) are dropped: the app never uses
///   them. (Removing a variable in place needs `unsafe` in Rust 2024, which this workspace
///   forbids; programs this app starts are scrubbed too, see `akhrot_core::child`.)
#[cfg(target_os = "linux")]
fn reexec_clean() {
    use std::io::Write as _;
    use std::os::unix::process::CommandExt as _;
    let gl = std::env::var_os("GDK_GL").is_none();
    // Our own marks are not secrets (and must not cause a second re-execution).
    let secrets = std::env::vars_os().any(|(k, _)| {
        akhrot_core::child::is_secret_var(&k) && k != NO_GL_MARK && k != PASSPHRASE_ON_STDIN
    });
    if !gl && !secrets {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg0(arg0).args(args);
    akhrot_core::child::scrub_env(&mut cmd);
    if gl {
        cmd.env("GDK_GL", "disable").env(NO_GL_MARK, "1");
    } else if std::env::var_os(NO_GL_MARK).is_some() {
        cmd.env(NO_GL_MARK, "1");
    }
    match std::env::var("AKHROT_PASSPHRASE") {
        Ok(p) if !p.is_empty() && p.len() <= PIPE_MAX => {
            let piped = std::io::pipe().and_then(|(r, mut w)| {
                w.write_all(p.as_bytes())?;
                Ok(r)
            });
            match piped {
                Ok(r) => {
                    cmd.stdin(r).env(PASSPHRASE_ON_STDIN, "1");
                }
                Err(e) => {
                    eprintln!("akhrot-desktop: cannot move the passphrase to a pipe: {e}");
                    cmd.env("AKHROT_PASSPHRASE", &p);
                }
            }
        }
        Ok(p) if !p.is_empty() => {
            cmd.env("AKHROT_PASSPHRASE", &p);
        }
        _ => {}
    }
    let err = cmd.exec();
    // Still here: the re-exec failed (the binary was replaced or removed); run as we are.
    eprintln!("akhrot-desktop: cannot re-execute {}: {err}", exe.display());
}

/// The vault passphrase, from the stdin pipe [`reexec_clean`] filled, else `AKHROT_PASSPHRASE`.
fn passphrase() -> Option<String> {
    #[cfg(target_os = "linux")]
    if std::env::var_os(PASSPHRASE_ON_STDIN).is_some() {
        use std::io::{IsTerminal as _, Read as _};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            let mut p = String::new();
            if stdin
                .lock()
                .take(PIPE_MAX as u64)
                .read_to_string(&mut p)
                .is_ok()
                && !p.is_empty()
            {
                return Some(p);
            }
        }
    }
    std::env::var("AKHROT_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Why the app could not start its owner.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    /// The data directory could not be found.
    #[error(transparent)]
    Core(#[from] akhrot_core::Error),
    /// `AKHROT_PORT` or `config.toml` is wrong.
    #[error(transparent)]
    Options(#[from] akhrot_server::ResolveError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The owner's options, resolved as `akhrot serve` resolves them
/// ([`OwnerOptions::resolve`]), with the passphrase from [`passphrase`].
fn owner_options() -> Result<OwnerOptions, SetupError> {
    let paths = Paths::resolve(None, None)?;
    let overrides = akhrot_server::OwnerOverrides {
        passphrase: passphrase().map(SecretString::new),
        ..Default::default()
    };
    Ok(OwnerOptions::resolve(paths, overrides)?)
}

fn setup(app: &AppHandle, hidden: bool) {
    let started =
        owner_options().and_then(|opts| Ok(tauri::async_runtime::block_on(Owner::start(opts))?));
    match started {
        Ok(owner) => started_owner(app, owner, hidden),
        Err(e @ SetupError::Start(StartError::AlreadyRunning { .. })) => {
            let why = e.to_string();
            tracing::warn!("{why}");
            windows::notice(app, "Akhrot is already running", &why);
        }
        Err(e) => {
            let e = e.to_string();
            tracing::error!("{e}");
            windows::notice(app, "Akhrot could not start", &e);
        }
    }
}

fn started_owner(app: &AppHandle, owner: Owner, hidden: bool) {
    let state = owner.state();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let served = tauri::async_runtime::spawn(owner.serve(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    app.manage(Core::new(state.clone()));
    app.manage(Running {
        stop,
        served: Mutex::new(Some(served)),
    });
    // The line scripts and tests wait for: the API answers from now on.
    println!("akhrot-desktop: serving on {}", state.base_url);
    if let Err(e) = tray::create(app) {
        tracing::warn!(error = %e, "no tray icon (is a status-notifier host running?)");
    }
    tauri::async_runtime::spawn(watch_core(app.clone(), state.clone()));
    deep_links(app, state);
    quit_on_signals(app);
    if !hidden {
        windows::open_main(app);
    }
}

/// Follows the core's approval and audit events: the prompt window, notifications, the tray.
async fn watch_core(app: AppHandle, state: Arc<AppState>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut approvals = state.approvals.subscribe();
    let mut audit = state.audit.subscribe();
    let mut closing = state.closing.subscribe();
    // Prompts opened before this task subscribed.
    if akhrot_server::actions::pending_count(&state) > 0 {
        windows::show_prompt(&app);
    }
    tray::refresh(&app);
    loop {
        tokio::select! {
            _ = closing.wait_for(|c| *c) => break,
            ev = approvals.recv() => match ev {
                Ok(ApprovalEvent::Created { prompt }) => {
                    windows::show_prompt(&app);
                    windows::notify(&app, &prompt);
                    tray::refresh(&app);
                }
                Ok(ApprovalEvent::Resolved { .. }) | Err(RecvError::Lagged(_)) => {
                    windows::prompt_changed(&app);
                    tray::refresh(&app);
                }
                Err(RecvError::Closed) => break,
            },
            entry = audit.recv() => match entry {
                Ok(e) if e.action == akhrot_core::audit::Action::Pause => tray::refresh(&app),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => tray::refresh(&app),
                Err(RecvError::Closed) => break,
            },
        }
    }
}

/// `akhrot://oauth/callback?…` links, from this launch's arguments or forwarded by a second
/// launch, complete their session through the broker (the loopback callback's code path).
fn deep_links(app: &AppHandle, state: Arc<AppState>) {
    use tauri_plugin_deep_link::DeepLinkExt;
    let handle = app.clone();
    let broker = state.broker.clone();
    app.deep_link().on_open_url(move |event| {
        for url in event.urls() {
            complete_link(&handle, broker.clone(), url.to_string());
        }
    });
    if let Ok(Some(urls)) = app.deep_link().get_current() {
        for url in urls {
            complete_link(app, state.broker.clone(), url.to_string());
        }
    }
    #[cfg(target_os = "linux")]
    {
        // A .deb or AppImage install registers the scheme through its desktop entry; a binary
        // run from elsewhere registers itself, once, so the browser can hand links back.
        let handle = app.clone();
        std::thread::spawn(move || {
            let dl = handle.deep_link();
            match dl.is_registered("akhrot") {
                Ok(true) => {}
                Ok(false) => match dl.register_all() {
                    Ok(()) => tracing::info!("registered as the handler of akhrot:// links"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register the akhrot:// scheme (needs xdg-utils)")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the akhrot:// scheme (needs xdg-utils)")
                }
            }
        });
    }
}

fn complete_link(app: &AppHandle, broker: Arc<akhrot_core::broker::Broker>, link: String) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let outcome = broker.complete_deep_link(&link).await;
        tracing::info!(status = outcome.http_status(), "deep link handled");
        let (title, body) = match &outcome {
            CallbackOutcome::Connected { provider, account } => (
                format!("Connected to {provider}"),
                format!("Akhrot is now connected as {account}."),
            ),
            CallbackOutcome::Denied { provider, reason } => (
                format!("{provider} was not connected"),
                format!("Access was denied ({reason}). Nothing was stored."),
            ),
            CallbackOutcome::Failed { provider, reason } => (
                format!("{provider} could not be connected"),
                format!("{reason}. Nothing was stored."),
            ),
            CallbackOutcome::Expired { provider } => (
                "This sign-in link has expired".to_owned(),
                format!("The {provider} sign-in took over 10 minutes; start again."),
            ),
            CallbackOutcome::Conflict { provider, account } => (
                format!("{provider} was not connected"),
                format!(
                    "{account} is already connected. An agent started this sign-in and cannot replace a connection; nothing changed. Reconnect it yourself from Akhrot if you want to."
                ),
            ),
            CallbackOutcome::UnknownState => (
                "This sign-in link is not valid".to_owned(),
                "It was already used, or did not come from this Akhrot. Nothing was stored."
                    .to_owned(),
            ),
            CallbackOutcome::Malformed(why) => ("Not a sign-in link".to_owned(), why.clone()),
        };
        windows::notify_text(&app, &title, &body);
    });
}

/// SIGTERM and SIGINT quit like the tray's Quit.
fn quit_on_signals(app: &AppHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let app = app.clone();
        // Registered now (in the runtime's context), not in a task that might run late.
        let rt = tauri::async_runtime::handle();
        let _guard = rt.inner().enter();
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tauri::async_runtime::spawn(async move {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                    tracing::info!("shutting down");
                    app.exit(0);
                });
            }
            _ => tracing::warn!("cannot handle SIGTERM/SIGINT; use Quit in the tray"),
        }
    }
    #[cfg(not(unix))]
    {
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                app.exit(0);
            }
        });
    }
}

/// Stops the owner (open prompts are denied, the audit log and vault are flushed, the owner
/// files removed) before the process ends.
fn stop_owner(app: &AppHandle) {
    let Some(running) = app.try_state::<Running>() else {
        return;
    };
    running.stop.send_replace(true);
    let served = running
        .served
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(served) = served {
        let done = tauri::async_runtime::block_on(async {
            tokio::time::timeout(Duration::from_secs(10), served).await
        });
        match done {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the server task failed"),
            Err(_) => tracing::warn!("the server did not stop within 10 s"),
        }
    }
}
