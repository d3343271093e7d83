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
        after_help = "Examples:\n  printf %s \"$SECRET\" | akhrot clients set github --client-id Iv1.abc --client-secret-stdin\n  \
                      akhrot clients set microsoft --client-id 0f1e… --tenant contoso.onmicrosoft.com\n  \
                      akhrot clients set gitlab --client-id abc… --host gitlab.example.com\n\n\
                      Settings replace the ones set before; a setting left out takes its default.\n\
                      `akhrot clients list` shows each provider's settings."
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
        /// Microsoft: the tenant the app is registered in (`common`, `organizations`,
        /// `consumers`, a tenant id or domain) [default: common]
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
        /// A self-hosted server (GitLab): `gitlab.example.com` or `https://host:port`
        /// [default: the provider's public service]
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Any client setting the provider has, as NAME=VALUE (repeatable)
        #[arg(long = "set", value_name = "NAME=VALUE")]
        settings: Vec<String>,
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
            tenant,
            host,
            settings,
        } => {
            let mut body = json!({ "provider": provider, "clientId": client_id });
            let mut map = serde_json::Map::new();
            for s in &settings {
                let Some((k, v)) = s.split_once('=') else {
                    bail!("--set takes NAME=VALUE, e.g. --set tenant=organizations");
                };
                map.insert(k.trim().to_owned(), json!(v.trim()));
            }
            for (k, v) in [("tenant", tenant), ("host", host)] {
                if let Some(v) = v {
                    map.insert(k.to_owned(), json!(v));
                }
            }
            if !map.is_empty() {
                body["settings"] = Value::Object(map);
            }
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
            for (k, val) in &v.settings {
                eprintln!("  {k} = {val}");
            }
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
                        v.settings
                            .iter()
                            .map(|s| {
                                let value = s.value.as_deref().or(s.default.as_deref());
                                format!("{}={}", s.name, value.unwrap_or("(not set)"))
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .collect();
            print_table(
                &["PROVIDER", "CLIENT ID", "REDIRECT URI", "SETTINGS"],
                &rows,
            );
            Ok(())
        }
    }
}
