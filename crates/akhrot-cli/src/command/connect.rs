//! `akhrot connect`: start an OAuth consent session, open it and wait for its end.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use akhrot_server::models::admin::{Session, SessionStatus};

use crate::client::{Client, enc, typed};

/// A consent page is a web page: `https://`, or `http://` on a loopback host (local IdPs, as
/// the catalog allows). Anything else (`file:`, a custom scheme) is never handed to the opener.
fn check_consent_url(url: &str) -> Result<()> {
    let ok = url::Url::parse(url).is_ok_and(|u| match u.scheme() {
        "https" => true,
        "http" => matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    });
    if ok {
        Ok(())
    } else {
        bail!("the owner answered a consent URL that is not an https:// page; not opening it")
    }
}

pub fn run(
    c: &Client,
    provider: &str,
    scopes: Vec<String>,
    account: Option<String>,
    no_browser: bool,
) -> Result<()> {
    let mut body = json!({ "provider": provider, "scopes": scopes });
    if let Some(a) = account {
        body["account"] = json!(a);
    }
    let s: Session = typed("/admin/sessions", c.post("/admin/sessions", &body)?)?;
    let id = s.session_id;
    let url = s.url.unwrap_or_default();
    check_consent_url(&url)?;
    let opened = !no_browser
        && std::env::var_os("AKHROT_NO_BROWSER").is_none()
        && akhrot_core::child::open_browser(&url, &[]).is_ok();
    if opened {
        eprintln!("Opened your browser to approve access. If it did not open, visit:");
    } else {
        eprintln!("Open this URL in a browser to approve access:");
    }
    println!("{url}");
    let _ = std::io::stdout().flush();
    let tty = std::io::stderr().is_terminal();
    let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut i = 0usize;
    loop {
        let v: Session = c.get_typed(&format!("/admin/sessions/{}", enc(&id)))?;
        match v.status {
            SessionStatus::Completed => {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                eprintln!(
                    "Connected {provider} as {}.",
                    v.account.as_deref().unwrap_or("?")
                );
                return Ok(());
            }
            SessionStatus::Failed => {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                bail!(
                    "{provider} was not connected: {}",
                    v.error.as_deref().unwrap_or("the provider refused")
                );
            }
            SessionStatus::Expired => {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                bail!(
                    "the consent session expired after 10 minutes; run `akhrot connect {provider}` again"
                );
            }
            SessionStatus::Pending => {}
        }
        if tty {
            eprint!(
                "\r{} Waiting for you to approve in the browser…",
                spinner[i % spinner.len()]
            );
            let _ = std::io::stderr().flush();
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
}
