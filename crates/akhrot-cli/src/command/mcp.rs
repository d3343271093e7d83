//! `akhrot mcp`: MCP over stdio for an agent, with the key in AKHROT_API_KEY.

use anyhow::{Context, Result, anyhow};

use akhrot_core::paths::Paths;

use super::exec;
use crate::client;

/// `akhrot mcp`: MCP over stdio, speaking for the agent whose key is in AKHROT_API_KEY.
pub fn run(paths: Paths) -> Result<()> {
    let key = std::env::var(exec::KEY_VAR).unwrap_or_default();
    if key.trim().is_empty() {
        return Err(anyhow!(exec::ExecError {
            code: exec::EXIT_USAGE,
            message: format!(
                "{} is not set: `akhrot mcp` speaks for an agent, with the key the user created (`akhrot keys create --name <agent>`)",
                exec::KEY_VAR
            ),
        }));
    }
    // Say at once when no owner runs (the MCP client shows this in its server log); the owner
    // is looked up again at each call, so a restart on another port is followed.
    client::owner_info(&paths)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(akhrot_server::mcp::serve_stdio(
        paths,
        key.trim().to_owned(),
    ))
    .context("the MCP connection failed")?;
    Ok(())
}
