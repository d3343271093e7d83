//! `akhrot ui`: a fresh one-time sign-in link to the web UI, opened or printed.

use anyhow::{Result, bail};
use serde_json::json;

use akhrot_server::models::admin::UiLink;

use crate::client::Client;

/// Opens (or prints) a fresh one-time sign-in link to the web UI.
pub fn run(c: &Client, no_browser: bool) -> Result<()> {
    let link: UiLink = c.post_typed("/admin/ui-link", &json!({}))?;
    let url = link.url.as_str();
    check_ui_link(url, c.base())?;
    let opened = !no_browser
        && std::env::var_os("AKHROT_NO_BROWSER").is_none()
        && akhrot_core::child::open_browser(url, &[]).is_ok();
    if opened {
        eprintln!("Opened the Akhrot web UI in your browser. If it did not open, visit (once):");
    } else {
        eprintln!("Open this one-time link in a browser (it works once, for an hour):");
    }
    println!("{url}");
    Ok(())
}

/// The sign-in link must be the owner's own: `http://127.0.0.1:<port>/…`, nothing else is
/// opened or printed (a process squatting on a dead owner's port could answer any URL).
fn check_ui_link(url: &str, base: &str) -> Result<()> {
    let ok = url
        .strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('/'))
        && url::Url::parse(url).is_ok_and(|u| {
            u.scheme() == "http"
                && u.host_str() == Some("127.0.0.1")
                && u.username().is_empty()
                && u.password().is_none()
        });
    if ok {
        Ok(())
    } else {
        bail!(
            "the owner answered a sign-in link that is not on {base}/; not opening it (is something else listening on the owner's port?)"
        )
    }
}
