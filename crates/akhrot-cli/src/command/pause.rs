//! `akhrot pause on|off`: deny every agent request until resumed.

use anyhow::Result;

use akhrot_server::models::admin::{Paused, SetPause};

use crate::client::Client;

pub fn run(c: &Client, state: &str) -> Result<()> {
    let _: Paused = c.post_typed(
        "/admin/pause",
        &SetPause {
            paused: state == "on",
        },
    )?;
    eprintln!(
        "{}",
        if state == "on" {
            "All agents are paused: their requests are denied until `akhrot pause off`."
        } else {
            "Agents are no longer paused."
        }
    );
    Ok(())
}
