//! `akhrot approvals`: list pending approval prompts, or answer one.

use anyhow::Result;
use clap::Subcommand;

use akhrot_core::approvals::Answer;
use akhrot_server::models::admin::{AnswerApproval, Approval, ApprovalAnswered, PeerView};

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
fn process_text(peer: &PeerView) -> String {
    let procs: Vec<String> = peer
        .processes
        .iter()
        .map(|p| {
            let exe = p
                .exe
                .as_deref()
                .or_else(|| p.cmdline.first().map(String::as_str))
                .unwrap_or("?");
            format!("{exe} (pid {})", p.pid)
        })
        .collect();
    let mut text = if procs.is_empty() {
        "unknown process".to_owned()
    } else {
        procs.join(", ")
    };
    if !peer.verified {
        match &peer.note {
            Some(note) => text.push_str(&format!(" [not verified: {note}]")),
            None => text.push_str(" [not verified]"),
        }
    }
    text
}

fn answer(c: &Client, id: &str, answer: Answer) -> Result<ApprovalAnswered> {
    c.post_typed(
        &format!("/admin/approvals/{}", enc(id)),
        &AnswerApproval { answer },
    )
}

pub fn run(c: &Client, cmd: Option<ApprovalsCmd>, as_json: bool) -> Result<()> {
    match cmd {
        None => {
            let list: Vec<Approval> = c.get_typed("/admin/approvals")?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    let process = process_text(&p.peer_view().unwrap_or_default());
                    vec![
                        p.id.clone(),
                        p.agent.clone(),
                        format!("{} ({})", p.provider, p.account),
                        p.request.clone().unwrap_or_else(|| "token".to_owned()),
                        p.reason.clone().unwrap_or_else(|| "-".to_owned()),
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
            let how = match (duration, always) {
                (_, true) => Answer::Always,
                (Some(d), _) => Answer::For(parse_duration(&d)?),
                (None, false) => Answer::Once,
            };
            let v = answer(c, &id, how)?;
            eprintln!(
                "Allowed `{}` to use {} ({}).",
                v.approval.agent,
                v.approval.provider,
                v.answer.as_str()
            );
            Ok(())
        }
        Some(ApprovalsCmd::Deny { id }) => {
            let v = answer(c, &id, Answer::Deny)?;
            eprintln!(
                "Denied `{}` access to {}.",
                v.approval.agent, v.approval.provider
            );
            Ok(())
        }
    }
}
