//! `akhrot disconnect`: remove a connection.

use anyhow::Result;

use crate::client::{Client, enc};

pub fn run(c: &Client, provider: &str, account: Option<String>) -> Result<()> {
    let mut path = format!("/admin/connections/{}", enc(provider));
    if let Some(a) = &account {
        path.push_str(&format!("?account={}", enc(a)));
    }
    let v = c.delete(&path)?;
    eprintln!(
        "Disconnected {} (account `{}`).",
        v["removed"]["provider"].as_str().unwrap_or(provider),
        v["removed"]["account"].as_str().unwrap_or("?")
    );
    Ok(())
}
