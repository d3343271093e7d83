//! `akhrot log`: the audit log, newest first.

use anyhow::Result;

use akhrot_server::models::admin::AuditEntry;

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
    let list: Vec<AuditEntry> = c.get_typed(&q)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .map(|e| {
            vec![
                akhrot_core::unix_to_rfc3339(e.at / 1000),
                e.agent.unwrap_or_else(|| "-".to_owned()),
                e.action.to_string(),
                e.outcome.to_string(),
                match (e.provider, e.account) {
                    (Some(p), Some(a)) => format!("{p} ({a})"),
                    (Some(p), None) => p,
                    _ => "-".into(),
                },
                e.detail.unwrap_or_default(),
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
