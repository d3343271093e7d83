//! `akhrot keys`: create, list and revoke agent keys.

use anyhow::Result;
use clap::Subcommand;
use zeroize::Zeroizing;

use akhrot_server::models::admin::{AgentKey, CreateKey, KeyCreated};

use super::{JsonFlag, ago, print_table};
use crate::client::{Client, enc};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create an agent key; the key is printed once on stdout and never stored
    Create {
        #[arg(long)]
        name: String,
        /// Allow this provider without asking (repeatable)
        #[arg(long, value_name = "PROVIDER")]
        allow: Vec<String>,
        /// Allow every provider without asking
        #[arg(long)]
        allow_all: bool,
    },
    /// List agent keys (never the keys themselves)
    List(JsonFlag),
    /// Revoke an agent key by name or id; it stops working at once
    Revoke { name: String },
}

pub fn run(c: &Client, cmd: KeysCmd) -> Result<()> {
    match cmd {
        KeysCmd::Create {
            name,
            allow,
            allow_all,
        } => {
            let created: KeyCreated = c.post_typed(
                "/admin/keys",
                &CreateKey {
                    name: name.clone(),
                    allow,
                    allow_all,
                },
            )?;
            let key = Zeroizing::new(created.key);
            println!("{}", key.as_str());
            eprintln!(
                "Created agent key `{name}`. It is shown only this once: give it to the agent as AKHROT_API_KEY."
            );
            Ok(())
        }
        KeysCmd::List(f) => {
            let list: Vec<AgentKey> = c.get_typed("/admin/keys")?;
            if f.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    let policies: Vec<String> = a
                        .policies
                        .iter()
                        .map(|(p, v)| format!("{p}={}", v.mode))
                        .collect();
                    vec![
                        a.id.clone(),
                        a.name.clone(),
                        if a.revoked_at.is_none() {
                            "active"
                        } else {
                            "revoked"
                        }
                        .to_owned(),
                        ago(a.last_used_at),
                        if policies.is_empty() {
                            "ask (default)".into()
                        } else {
                            policies.join(" ")
                        },
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No agent keys yet. Create one with `akhrot keys create --name <agent>`.");
            } else {
                print_table(&["ID", "NAME", "STATE", "LAST USED", "POLICIES"], &rows);
            }
            Ok(())
        }
        KeysCmd::Revoke { name } => {
            let _: AgentKey = c.delete_typed(&format!("/admin/keys/{}", enc(&name)))?;
            eprintln!("Revoked agent key `{name}`.");
            Ok(())
        }
    }
}
