//! `akhrot token`: print a provider's access token, like `gh auth token`.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;
use zeroize::Zeroizing;

use akhrot_server::models::admin::AdminToken;

use crate::client::Client;

pub fn run(c: &Client, provider: String, account: Option<String>) -> Result<()> {
    let body = serde_json::to_value(AdminToken { provider, account })?;
    let data = Zeroizing::new(c.post("/admin/token", &body)?.to_string());
    let v: Value = serde_json::from_str(&data)?;
    let token = Zeroizing::new(v["accessToken"].as_str().unwrap_or_default().to_owned());
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", token.as_str())?;
    Ok(())
}
