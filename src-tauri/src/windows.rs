//! The app's windows: the main window (the web UI, served by the owner over loopback), the
//! approval prompt (a local page that answers through IPC), a notice page (when the app cannot
//! own the vault), and desktop notifications.

use tauri::webview::NewWindowResponse;
use tauri::{AppHandle, Manager, Url, WebviewUrl, WebviewWindowBuilder};
use tauri_plugin_notification::NotificationExt as _;

use akhrot_core::approvals::{AskKind, Prompt};
use akhrot_server::actions;

use crate::ipc::Core;

pub const MAIN: &str = "main";
pub const PROMPT: &str = "prompt";
pub const NOTICE: &str = "notice";

/// Shows the main window, or opens it signed in with a fresh one-time link. Closing it destroys
/// it (the WebKit processes go away with it); the app stays in the tray.
pub fn open_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        return;
    }
    let Some(core) = app.try_state::<Core>() else {
        return;
    };
    let Ok(url) = akhrot_server::ui::login_url(&core.state).parse::<Url>() else {
        return;
    };
    let origin = url.origin();
    let built = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::External(url))
        .title("Akhrot")
        .inner_size(1120.0, 780.0)
        .min_inner_size(720.0, 480.0)
        // The UI's own pages stay in the window; anything else (provider consoles, consent
        // pages) opens in the person's browser, where their sessions and password manager are.
        .on_navigation(move |u| {
            if u.origin() == origin {
                return true;
            }
            open_in_browser(u);
            false
        })
        .on_new_window(|u, _features| {
            open_in_browser(&u);
            NewWindowResponse::Deny
        })
        .build();
    if let Err(e) = built {
        tracing::warn!(error = %e, "cannot open the main window");
    }
}

fn open_in_browser(u: &Url) {
    if !matches!(u.scheme(), "http" | "https") {
        return;
    }
    // The browser gets no `AKHROT_*` secret (the passphrase this app may have been started
    // with), and not the `GDK_GL=disable` this process gave itself.
    #[cfg(target_os = "linux")]
    let also: &[&str] = if std::env::var_os(crate::NO_GL_MARK).is_some() {
        &["GDK_GL", crate::NO_GL_MARK]
    } else {
        &[]
    };
    #[cfg(not(target_os = "linux"))]
    let also: &[&str] = &[];
    if let Err(e) = akhrot_core::child::open_browser(u.as_str(), also) {
        tracing::warn!(error = %e, "cannot open the browser");
    }
}

/// Opens the small always-on-top approval prompt, focused, when none is shown. While one is
/// shown, a new prompt only refreshes it: it does not take the focus again, so that an agent
/// cannot time a prompt to catch keystrokes typed into another window (the page also ignores
/// answers for a moment after what it shows changes, and never focuses an allowing button).
pub fn show_prompt(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(PROMPT) {
        let _ = w.eval("window.akhrotRefresh && window.akhrotRefresh()");
        if !w.is_visible().unwrap_or(true) {
            // Hidden somehow (the app never hides it): back on screen, without set_focus.
            let _ = w.show();
        }
        return;
    }
    let built = WebviewWindowBuilder::new(app, PROMPT, WebviewUrl::App("prompt.html".into()))
        .title("Akhrot: an agent asks for access")
        .inner_size(480.0, 600.0)
        .resizable(false)
        .maximizable(false)
        .minimizable(false)
        .always_on_top(true)
        .focused(true)
        .center()
        .build();
    if let Err(e) = built {
        tracing::warn!(error = %e, "cannot open the approval prompt");
    }
}

/// The person asked to see the prompt (the tray's "waiting" item): raise and focus it.
pub fn raise_prompt(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(PROMPT) {
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    show_prompt(app);
}

/// After an approval was answered, timed out or withdrawn: the prompt shows the next one, or
/// closes when none is left.
pub fn prompt_changed(app: &AppHandle) {
    let Some(w) = app.get_webview_window(PROMPT) else {
        return;
    };
    let left = app
        .try_state::<Core>()
        .map(|c| actions::pending_count(&c.state))
        .unwrap_or(0);
    if left == 0 {
        let _ = w.destroy();
    } else {
        let _ = w.eval("window.akhrotRefresh && window.akhrotRefresh()");
    }
}

/// A desktop notification for a new prompt (the prompt window carries the buttons).
pub fn notify(app: &AppHandle, prompt: &Prompt) {
    let a = &prompt.ask;
    let title = match a.kind {
        AskKind::Token => format!("{} wants a {} token", a.agent, a.provider_name),
        AskKind::Proxy => format!("{} wants to call {}", a.agent, a.provider_name),
        AskKind::Connect if a.account.is_empty() => {
            format!(
                "{} wants to connect {} (a new account)",
                a.agent, a.provider_name
            )
        }
        AskKind::Connect => format!(
            "{} wants to connect {} as {}",
            a.agent, a.provider_name, a.account
        ),
    };
    let body = match &prompt.ask.reason {
        Some(r) if !r.is_empty() => {
            format!("\u{201c}{r}\u{201d} Allow or deny it in the Akhrot prompt.")
        }
        _ => "Allow or deny it in the Akhrot prompt.".to_owned(),
    };
    notify_text(app, &title, &body);
}

pub fn notify_text(app: &AppHandle, title: &str, body: &str) {
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::debug!(error = %e, "no desktop notification (no notification service?)");
    }
}

/// A window with one message, for when the app cannot own the vault. Closing it quits.
pub fn notice(app: &AppHandle, title: &str, message: &str) {
    let data = serde_json::json!({ "title": title, "message": message });
    let script = format!("window.AKHROT_NOTICE = {data};");
    let built = WebviewWindowBuilder::new(app, NOTICE, WebviewUrl::App("notice.html".into()))
        .title(format!("Akhrot: {title}"))
        .inner_size(520.0, 300.0)
        .resizable(false)
        .center()
        .initialization_script(script)
        .build();
    if let Err(e) = built {
        tracing::error!(error = %e, "cannot open a window to say: {title}: {message}");
        app.exit(1);
    }
}
