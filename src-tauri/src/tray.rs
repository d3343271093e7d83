//! The tray icon and its menu. Linux trays send no click events, so everything is in the menu:
//! Open Akhrot, the pending approvals, Pause agents, Start at login, Quit.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};
use tauri_plugin_autostart::ManagerExt as _;

use akhrot_server::actions;

use crate::ipc::Core;
use crate::windows;

/// What the menu shows and the tray icon's variant, from the core's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Idle,
    Pending,
    Paused,
}

impl Look {
    pub fn of(pending: usize, paused: bool) -> Self {
        if pending > 0 {
            Look::Pending
        } else if paused {
            Look::Paused
        } else {
            Look::Idle
        }
    }
}

/// The menu line about approvals.
pub fn pending_label(n: usize) -> String {
    match n {
        0 => "No approvals pending".to_owned(),
        1 => "1 approval pending".to_owned(),
        n => format!("{n} approvals pending"),
    }
}

/// Icons drawn by `scripts/make-icons` for each panel brightness. Linux indicators show 22 px.
mod icons {
    macro_rules! set {
        ($theme:literal, $size:literal) => {
            [
                include_bytes!(concat!(
                    "../../icons/tray/idle-",
                    $theme,
                    "-",
                    $size,
                    ".png"
                ))
                .as_slice(),
                include_bytes!(concat!(
                    "../../icons/tray/pending-",
                    $theme,
                    "-",
                    $size,
                    ".png"
                ))
                .as_slice(),
                include_bytes!(concat!(
                    "../../icons/tray/paused-",
                    $theme,
                    "-",
                    $size,
                    ".png"
                ))
                .as_slice(),
            ]
        };
    }
    #[cfg(target_os = "linux")]
    pub const DARK_PANEL: [&[u8]; 3] = set!("dark", "22");
    #[cfg(target_os = "linux")]
    pub const LIGHT_PANEL: [&[u8]; 3] = set!("light", "22");
    #[cfg(not(target_os = "linux"))]
    pub const DARK_PANEL: [&[u8]; 3] = set!("dark", "32");
    #[cfg(not(target_os = "linux"))]
    pub const LIGHT_PANEL: [&[u8]; 3] = set!("light", "32");
}

fn icon(look: Look) -> Option<Image<'static>> {
    // Most Linux panels are dark; AKHROT_TRAY_THEME=light picks the dark glyph for light ones.
    let light_panel = std::env::var("AKHROT_TRAY_THEME").is_ok_and(|t| t == "light");
    let set = if light_panel {
        icons::LIGHT_PANEL
    } else {
        icons::DARK_PANEL
    };
    let bytes = match look {
        Look::Idle => set[0],
        Look::Pending => set[1],
        Look::Paused => set[2],
    };
    Image::from_bytes(bytes).ok()
}

pub struct Tray {
    icon: TrayIcon<Wry>,
    pending: MenuItem<Wry>,
    pause: CheckMenuItem<Wry>,
    look: std::sync::Mutex<Option<Look>>,
}

pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open Akhrot", true, None::<&str>)?;
    let pending = MenuItem::with_id(app, "pending", pending_label(0), false, None::<&str>)?;
    let pause = CheckMenuItem::with_id(app, "pause", "Pause agents", true, false, None::<&str>)?;
    let autostart_on = app.autolaunch().is_enabled().unwrap_or(false);
    let autostart = CheckMenuItem::with_id(
        app,
        "autostart",
        "Start at login",
        true,
        autostart_on,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, "quit", "Quit Akhrot", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &open,
            &pending,
            &PredefinedMenuItem::separator(app)?,
            &pause,
            &autostart,
            &PredefinedMenuItem::separator(app)?,
            &quit,
        ],
    )?;
    let mut builder = TrayIconBuilder::with_id("akhrot")
        .menu(&menu)
        .tooltip("Akhrot")
        .show_menu_on_left_click(true)
        .on_menu_event(on_menu);
    if let Some(i) = icon(Look::Idle) {
        builder = builder.icon(i);
    }
    let icon = builder.build(app)?;
    app.manage(Tray {
        icon,
        pending,
        pause,
        look: std::sync::Mutex::new(None),
    });
    let autostart_item = autostart.clone();
    app.manage(AutostartItem(autostart_item));
    refresh(app);
    Ok(())
}

struct AutostartItem(CheckMenuItem<Wry>);

fn on_menu(app: &AppHandle, event: MenuEvent) {
    match event.id().as_ref() {
        "open" => windows::open_main(app),
        "pending" => windows::raise_prompt(app),
        "pause" => {
            if let Some(core) = app.try_state::<Core>()
                && let Err(e) = actions::toggle_paused(&core.state)
            {
                tracing::warn!(error = %e.message, "cannot change the pause switch");
            }
            refresh(app);
        }
        "autostart" => {
            let auto = app.autolaunch();
            let on = auto.is_enabled().unwrap_or(false);
            let result = if on { auto.disable() } else { auto.enable() };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot change start at login");
            }
            if let Some(item) = app.try_state::<AutostartItem>() {
                let _ = item.0.set_checked(auto.is_enabled().unwrap_or(false));
            }
        }
        "quit" => app.exit(0),
        _ => {}
    }
}

/// Brings the icon and the menu in line with the core: pending count, pause switch.
pub fn refresh(app: &AppHandle) {
    let (Some(tray), Some(core)) = (app.try_state::<Tray>(), app.try_state::<Core>()) else {
        return;
    };
    let n = actions::pending_count(&core.state);
    let paused = actions::is_paused(&core.state);
    let _ = tray.pending.set_text(pending_label(n));
    let _ = tray.pending.set_enabled(n > 0);
    let _ = tray.pause.set_checked(paused);
    let look = Look::of(n, paused);
    let mut last = tray.look.lock().unwrap_or_else(|p| p.into_inner());
    if *last != Some(look) {
        let _ = tray.icon.set_icon(icon(look));
        let tip = match look {
            Look::Idle => "Akhrot".to_owned(),
            Look::Pending => format!("Akhrot: {}", pending_label(n)),
            Look::Paused => "Akhrot: agents paused".to_owned(),
        };
        let _ = tray.icon.set_tooltip(Some(tip));
        *last = Some(look);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_menu_says_how_many_wait_and_the_icon_follows() {
        assert_eq!(pending_label(0), "No approvals pending");
        assert_eq!(pending_label(1), "1 approval pending");
        assert_eq!(pending_label(3), "3 approvals pending");
        assert_eq!(Look::of(0, false), Look::Idle);
        assert_eq!(
            Look::of(2, true),
            Look::Pending,
            "a waiting agent shows first"
        );
        assert_eq!(Look::of(0, true), Look::Paused);
        for look in [Look::Idle, Look::Pending, Look::Paused] {
            let i = icon(look).expect("the icon decodes");
            assert_eq!(
                (i.width(), i.height()),
                if cfg!(target_os = "linux") {
                    (22, 22)
                } else {
                    (32, 32)
                }
            );
        }
    }
}
