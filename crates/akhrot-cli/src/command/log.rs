//! `akhrot log`: the audit log, newest first.

use anyhow::Result;

use super::print_table;
use crate::client::{Client, enc};

pub fn run(
    c: &Client,
    agent: Option<String>,
    provider: Option<String>,
    action: Option<String>,
    limit: usize,
    as_json: bool,
) -> Result<()> {
    let mut q = format!("/admin/audit?limit={limit}");
    for (k, v) in [("agent", agent), ("provider", provider), ("action", action)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", enc(&v)));
        }
    }
    let list = c.get(&q)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let at = e["at"].as_i64().unwrap_or(0) / 1000;
            vec![
                akhrot_core::unix_to_rfc3339(at),
                e["agent"].as_str().unwrap_or("-").to_owned(),
                e["action"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap_or("").to_owned(),
                match (e["provider"].as_str(), e["account"].as_str()) {
                    (Some(p), Some(a)) => format!("{p} ({a})"),
                    (Some(p), None) => p.to_owned(),
                    _ => "-".into(),
                },
                e["detail"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("No audit entries match.");
    } else {
        print_table(
            &["TIME", "AGENT", "ACTION", "OUTCOME", "PROVIDER", "DETAIL"],
            &rows,
        );
    }
    Ok(())
}
