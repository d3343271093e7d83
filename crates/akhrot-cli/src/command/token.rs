//! `akhrot token`: print a provider's access token, like `gh auth token`.

use std::io::Write;

use anyhow::Result;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::Client;

pub fn run(c: &Client, provider: String, account: Option<String>) -> Result<()> {
    let mut body = json!({ "provider": provider });
    if let Some(a) = account {
        body["account"] = json!(a);
    }
    let data = Zeroizing::new(c.post("/admin/token", &body)?.to_string());
    let v: Value = serde_json::from_str(&data)?;
    let token = Zeroizing::new(v["accessToken"].as_str().unwrap_or_default().to_owned());
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", token.as_str())?;
    Ok(())
}
