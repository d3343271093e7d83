//! `akhrot status`: the owner, the vault and the connections, as a table or JSON.

use anyhow::Result;
use serde_json::{Value, json};

use super::{ago, print_table};
use crate::client::Client;

pub fn run(c: &Client, as_json: bool) -> Result<()> {
    let s = c.get("/admin/status")?;
    let conns = s["connections"].as_array().cloned().unwrap_or_default();
    if as_json {
        let approvals = s["pendingApprovals"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let list: Vec<Value> = conns
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c["kind"] = json!("connection");
                c
            })
            .chain(approvals.into_iter().map(|mut a| {
                a["kind"] = json!("approval");
                a
            }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "Akhrot {} on {} (pid {}), vault {} ({})",
        s["server"]["version"].as_str().unwrap_or("?"),
        s["server"]["baseUrl"].as_str().unwrap_or("?"),
        s["server"]["pid"],
        s["vault"]["path"].as_str().unwrap_or("?"),
        s["vault"]["keySource"].as_str().unwrap_or("?")
    );
    println!(
        "Agent keys: {} active. Pending approvals: {}.{}",
        s["agents"]["active"],
        s["pendingApprovals"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0),
        if s["paused"].as_bool().unwrap_or(false) {
            " Agents are PAUSED."
        } else {
            ""
        }
    );
    for issue in s["catalog"]["issues"].as_array().into_iter().flatten() {
        println!("providers.d problem: {}", issue.as_str().unwrap_or(""));
    }
    println!();
    if conns.is_empty() {
        println!(
            "No connections yet. Add one with `akhrot add openai` (API keys) — OAuth providers connect from the app."
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            vec![
                c["provider"].as_str().unwrap_or("").to_owned(),
                c["account"].as_str().unwrap_or("").to_owned(),
                c["authType"].as_str().unwrap_or("").to_owned(),
                c["status"].as_str().unwrap_or("").to_owned(),
                ago(c["updatedAt"].as_i64()),
            ]
        })
        .collect();
    print_table(&["PROVIDER", "ACCOUNT", "TYPE", "STATUS", "UPDATED"], &rows);
    Ok(())
}
