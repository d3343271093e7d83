//! `akhrot clients`: the OAuth apps (client id and secret) Akhrot uses per provider.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{JsonFlag, print_table};
use akhrot_server::models::admin::{ClientInfo, ClientSet};

use crate::client::{Client, typed};

#[derive(Subcommand)]
pub enum ClientsCmd {
    /// Store a provider's OAuth client; the secret is read from stdin, never from arguments
    #[command(
        after_help = "Example:\n  printf %s \"$SECRET\" | akhrot clients set github --client-id Iv1.abc --client-secret-stdin"
    )]
    Set {
        provider: String,
        #[arg(long)]
        client_id: String,
        /// Read the client secret from stdin (public clients using PKCE have none)
        #[arg(long)]
        client_secret_stdin: bool,
        /// Where the provider sends you back: the loopback listener, or the desktop app's
        /// akhrot:// deep link [default: the catalog's choice for the provider]
        #[arg(long, value_parser = ["loopback", "deep-link"])]
        redirect: Option<String>,
    },
    /// List OAuth providers, whether a client is set, and the redirect URI to register
    List(JsonFlag),
}

pub fn run(c: &Client, cmd: ClientsCmd) -> Result<()> {
    match cmd {
        ClientsCmd::Set {
            provider,
            client_id,
            client_secret_stdin,
            redirect,
        } => {
            let mut body = json!({ "provider": provider, "clientId": client_id });
            if let Some(r) = redirect {
                body["redirect"] = json!(r.replace('-', "_"));
            }
            if client_secret_stdin {
                let mut secret = Zeroizing::new(String::new());
                let stdin = std::io::stdin();
                if stdin.is_terminal() {
                    *secret = rpassword::prompt_password("Client secret: ")
                        .context("cannot read from the terminal")?;
                } else {
                    stdin
                        .lock()
                        .read_to_string(&mut secret)
                        .context("cannot read stdin")?;
                }
                let trimmed = secret.trim();
                if trimmed.is_empty() {
                    bail!("--client-secret-stdin was given but stdin held no secret");
                }
                body["clientSecret"] = json!(trimmed);
            }
            let v: ClientSet = typed("/admin/clients", c.post("/admin/clients", &body)?)?;
            eprintln!(
                "OAuth client for {provider} saved{}. Its redirect URI must be registered as:",
                if v.has_secret {
                    " (with secret)"
                } else {
                    " (public client, PKCE only)"
                }
            );
            println!("{}", v.redirect_uri);
            Ok(())
        }
        ClientsCmd::List(f) => {
            let list: Vec<ClientInfo> = c.get_typed("/admin/clients")?;
            if f.json {
                let mut with_ids: Vec<Value> = Vec::with_capacity(list.len());
                for v in &list {
                    let mut v = serde_json::to_value(v)?;
                    v["id"] = json!(v["provider"]);
                    with_ids.push(v);
                }
                println!("{}", serde_json::to_string_pretty(&with_ids)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .into_iter()
                .map(|v| {
                    vec![
                        v.provider,
                        match v.client_id {
                            Some(id) if v.configured => id,
                            _ if v.configured => String::new(),
                            _ => "(not set)".to_owned(),
                        },
                        v.redirect_uri,
                    ]
                })
                .collect();
            print_table(&["PROVIDER", "CLIENT ID", "REDIRECT URI"], &rows);
            Ok(())
        }
    }
}
