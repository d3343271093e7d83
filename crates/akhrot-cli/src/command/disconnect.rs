//! `akhrot disconnect`: remove a connection.

use anyhow::Result;

use akhrot_server::models::admin::ConnectionRemoved;

use crate::client::{Client, enc};

pub fn run(c: &Client, provider: &str, account: Option<String>) -> Result<()> {
    let mut path = format!("/admin/connections/{}", enc(provider));
    if let Some(a) = &account {
        path.push_str(&format!("?account={}", enc(a)));
    }
    let v: ConnectionRemoved = c.delete_typed(&path)?;
    eprintln!(
        "Disconnected {} (account `{}`).",
        v.removed.provider, v.removed.account
    );
    Ok(())
}
