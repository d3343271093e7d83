//! `akhrot status`: the owner, the vault and the connections, as a table or JSON.

use anyhow::Result;
use serde_json::{Value, json};

use akhrot_server::models::admin::Status;

use super::{ago, print_table};
use crate::client::Client;

pub fn run(c: &Client, as_json: bool) -> Result<()> {
    let s: Status = c.get_typed("/admin/status")?;
    if as_json {
        let mut list: Vec<Value> = Vec::new();
        for c in &s.connections {
            let mut c = serde_json::to_value(c)?;
            c["kind"] = json!("connection");
            list.push(c);
        }
        for a in &s.pending_approvals {
            let mut a = serde_json::to_value(a)?;
            a["kind"] = json!("approval");
            list.push(a);
        }
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "Akhrot {} on {} (pid {}), vault {} ({})",
        s.server.version, s.server.base_url, s.server.pid, s.vault.path, s.vault.key_source
    );
    println!(
        "Agent keys: {} active. Pending approvals: {}.{}",
        s.agents.active,
        s.pending_approvals.len(),
        if s.paused { " Agents are PAUSED." } else { "" }
    );
    for issue in &s.catalog.issues {
        println!("providers.d problem: {issue}");
    }
    println!();
    if s.connections.is_empty() {
        println!(
            "No connections yet. Add one with `akhrot add openai` (API keys) — OAuth providers connect from the app."
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = s
        .connections
        .iter()
        .map(|c| {
            let c = &c.connection;
            vec![
                c.provider.clone(),
                c.account.clone(),
                c.auth_type.clone(),
                c.status.to_string(),
                ago(Some(c.updated_at)),
            ]
        })
        .collect();
    print_table(&["PROVIDER", "ACCOUNT", "TYPE", "STATUS", "UPDATED"], &rows);
    Ok(())
}
