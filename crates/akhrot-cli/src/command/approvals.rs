//! `akhrot approvals`: list pending approval prompts, or answer one.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use super::{parse_duration, print_table};
use crate::client::{Client, enc};

#[derive(Subcommand)]
pub enum ApprovalsCmd {
    /// Allow a pending request (once, unless --for or --always)
    Approve {
        id: String,
        /// Also allow this agent and provider for a while, e.g. 1h
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "always")]
        duration: Option<String>,
        /// From now on (sets the policy to allow)
        #[arg(long)]
        always: bool,
    },
    /// Deny a pending request
    Deny { id: String },
}

/// The calling processes of a prompt, as the OS named them: `exe (pid N)` each, and the
/// reason the answer is not certain when it is not.
fn process_text(peer: &Value) -> String {
    let procs: Vec<String> = peer["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let exe = p["exe"]
                .as_str()
                .or_else(|| p["cmdline"][0].as_str())
                .unwrap_or("?");
            format!("{exe} (pid {})", p["pid"])
        })
        .collect();
    let mut text = if procs.is_empty() {
        "unknown process".to_owned()
    } else {
        procs.join(", ")
    };
    if peer["verified"] != true {
        match peer["note"].as_str() {
            Some(note) => text.push_str(&format!(" [not verified: {note}]")),
            None => text.push_str(" [not verified]"),
        }
    }
    text
}

pub fn run(c: &Client, cmd: Option<ApprovalsCmd>, as_json: bool) -> Result<()> {
    match cmd {
        None => {
            let list = c.get("/admin/approvals")?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let process = process_text(&p["peer"]);
                    vec![
                        p["id"].as_str().unwrap_or("").to_owned(),
                        p["agent"].as_str().unwrap_or("").to_owned(),
                        format!(
                            "{} ({})",
                            p["provider"].as_str().unwrap_or(""),
                            p["account"].as_str().unwrap_or("")
                        ),
                        p["request"].as_str().unwrap_or("token").to_owned(),
                        p["reason"].as_str().unwrap_or("-").to_owned(),
                        process,
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No pending approvals.");
            } else {
                print_table(
                    &["ID", "AGENT", "PROVIDER", "REQUEST", "REASON", "PROCESS"],
                    &rows,
                );
                eprintln!(
                    "Answer with `akhrot approvals approve ID [--for 1h|--always]` or `akhrot approvals deny ID`."
                );
            }
            Ok(())
        }
        Some(ApprovalsCmd::Approve {
            id,
            duration,
            always,
        }) => {
            let answer = match (duration, always) {
                (_, true) => "always".to_owned(),
                (Some(d), _) => format!("for:{}", parse_duration(&d)?),
                (None, false) => "once".to_owned(),
            };
            let v = c.post(
                &format!("/admin/approvals/{}", enc(&id)),
                &json!({ "answer": answer }),
            )?;
            eprintln!(
                "Allowed `{}` to use {} ({}).",
                v["approval"]["agent"].as_str().unwrap_or("?"),
                v["approval"]["provider"].as_str().unwrap_or("?"),
                v["answer"].as_str().unwrap_or("once")
            );
            Ok(())
        }
        Some(ApprovalsCmd::Deny { id }) => {
            let v = c.post(
                &format!("/admin/approvals/{}", enc(&id)),
                &json!({ "answer": "deny" }),
            )?;
            eprintln!(
                "Denied `{}` access to {}.",
                v["approval"]["agent"].as_str().unwrap_or("?"),
                v["approval"]["provider"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}
