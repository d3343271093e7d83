//! `akhrot pause on|off`: deny every agent request until resumed.

use anyhow::Result;
use serde_json::json;

use crate::client::Client;

pub fn run(c: &Client, state: &str) -> Result<()> {
    c.post("/admin/pause", &json!({ "paused": state == "on" }))?;
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
