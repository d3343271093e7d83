//! `akhrot policy`: what an agent key may do with a provider.

use anyhow::{Result, bail};
use clap::Subcommand;

use akhrot_server::models::admin::{AgentKey, SetPolicy};

use super::parse_duration;
use crate::client::Client;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Set an agent's policy for a provider (`*` for every provider)
    Set {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        provider: String,
        /// proxy-only: no token hand-outs; calls through /proxy/P/… are allowed
        #[arg(value_parser = ["allow", "ask", "deny", "proxy-only"])]
        mode: String,
        /// With allow or proxy-only: only for this long (e.g. 30m, 1h, 2d), then back to ask
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
}

pub fn run(c: &Client, cmd: PolicyCmd) -> Result<()> {
    let PolicyCmd::Set {
        agent,
        provider,
        mode,
        duration,
    } = cmd;
    let mut body = SetPolicy {
        agent: agent.clone(),
        provider: provider.clone(),
        mode: mode.clone(),
        for_seconds: None,
    };
    if let Some(d) = duration {
        if mode != "allow" && mode != "proxy-only" {
            bail!("--for goes with allow or proxy-only");
        }
        body.for_seconds = Some(parse_duration(&d)?);
    }
    let _: AgentKey = c.post_typed("/admin/policies", &body)?;
    eprintln!("Policy for `{agent}` on {provider}: {mode}.");
    Ok(())
}
