//! `akhrot`: the headless vault owner (`akhrot serve`) and the commands that talk to it.

mod client;
mod exec;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use akhrot_core::SecretString;
use akhrot_core::config::Config;
use akhrot_core::paths::Paths;
use akhrot_core::vault::Unlock;
use akhrot_server::{
    DEFAULT_APPROVAL_TIMEOUT_SECS, DEFAULT_PORT, DEFAULT_PROVIDER_TIMEOUT_SECS, DEFAULT_RATE_LIMIT,
    Owner, OwnerOptions, listener::ConnLimits,
};

use client::{ApiFailure, Client, EXIT_NO_OWNER, NoOwner, enc};

#[derive(Parser)]
#[command(
    name = "akhrot",
    version,
    about = "Akhrot: a local credential broker for AI agents",
    long_about = "Akhrot keeps your OAuth tokens and API keys encrypted on this machine and hands them to \
                  your local agents over a loopback API, as you allow.\n\n\
                  `akhrot serve` (or the desktop app) owns the vault; the other commands talk to it.",
    after_help = "Quick start:\n  akhrot serve &\n  akhrot keys create --name my-agent --allow openai\n  \
                  akhrot add openai\n  akhrot token openai"
)]
struct Cli {
    #[command(flatten)]
    dirs: Dirs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Dirs {
    /// Where the vault, the admin credential and logs live [default: $XDG_DATA_HOME/akhrot]
    #[arg(long, global = true, env = "AKHROT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where configuration and providers.d/*.toml live [default: $XDG_CONFIG_HOME/akhrot]
    #[arg(long, global = true, env = "AKHROT_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the headless vault owner: the API and no tray (servers, CI, WSL)
    Serve(ServeArgs),
    /// Show connections and their state
    Status(JsonFlag),
    /// Open the web UI in your browser with a fresh one-time sign-in link
    Ui {
        /// Print the link instead of opening a browser
        #[arg(long)]
        no_browser: bool,
    },
    /// Create, list and revoke agent keys
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Set what an agent key may do with a provider
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Set the OAuth app (client id and secret) Akhrot uses for a provider
    #[command(subcommand)]
    Clients(ClientsCmd),
    /// Connect an OAuth provider: opens the consent page in your browser and waits
    Connect {
        /// Provider code, e.g. google, github, or one from providers.d
        provider: String,
        /// Extra scopes beyond the catalog's defaults (repeatable)
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Store the connection under this label instead of the account name the provider reports
        #[arg(long)]
        account: Option<String>,
        /// Print the URL instead of opening a browser
        #[arg(long)]
        no_browser: bool,
    },
    /// Connect an API-key provider (or Telegram); secrets are read from stdin or a hidden prompt, never from arguments
    #[command(
        after_help = "Examples:\n  akhrot add openai                      # prompts, input hidden\n  \
                            printf %s \"$OPENAI_API_KEY\" | akhrot add openai\n  \
                            printf 'accountSid=AC123\\nauthToken=%s\\n' \"$TOKEN\" | akhrot add twilio"
    )]
    Add {
        /// Provider code, e.g. openai, twilio, telegram
        provider: String,
        /// A label for this account, to keep several apart [default: default]
        #[arg(long)]
        account: Option<String>,
    },
    /// Print a provider's access token, like `gh auth token`
    Token {
        provider: String,
        #[arg(long)]
        account: Option<String>,
    },
    /// Remove a connection
    Disconnect {
        provider: String,
        #[arg(long)]
        account: Option<String>,
    },
    /// List pending approval prompts, or answer one
    Approvals {
        #[command(subcommand)]
        cmd: Option<ApprovalsCmd>,
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log, newest first
    Log {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        /// Only this action (token, approval, connect, disconnect, refresh, key, policy, client, pause)
        #[arg(long)]
        action: Option<String>,
        /// How many entries
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Pause all agents (every agent request is denied) or resume them
    Pause {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Run a command with fresh tokens in its environment (as an agent, with AKHROT_API_KEY)
    #[command(
        after_help = "The token goes in the catalog's variable for the provider (GH_TOKEN, \
                            OPENAI_API_KEY, …; else <CODE>_TOKEN) or the one after the colon. \
                            AKHROT_API_KEY and every other AKHROT_* secret (AKHROT_PASSPHRASE, …) are removed \
                            from the command's environment; no token is printed.\n\n\
                            Exit codes: the command's own; 2 usage, 3 no owner running, 4 refused \
                            (denied, timed out, not connected), 126 cannot run, 127 not found.\n\n\
                            Examples:\n  akhrot exec -p github -- gh repo list\n  \
                            akhrot exec -p openai -p github:GITHUB_TOKEN --reason 'release notes' -- ./release.sh"
    )]
    Exec {
        /// A provider whose token to pass, optionally with the variable to put it in (repeatable)
        #[arg(
            short = 'p',
            long = "provider",
            value_name = "CODE[:ENV]",
            required = true
        )]
        providers: Vec<String>,
        /// Which connected account, when there are several
        #[arg(long)]
        account: Option<String>,
        /// Shown to the user in the approval prompt [default: the program's name]
        #[arg(long)]
        reason: Option<String>,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Serve MCP (Model Context Protocol) on stdin/stdout for an agent (with AKHROT_API_KEY)
    #[command(
        after_help = "For MCP clients: add `akhrot mcp` as a stdio server with AKHROT_API_KEY \
                            set to the agent's key. Tools: list_connections, describe, get_token, \
                            start_connection, check_connection, call_api. Exit codes: 2 no key, 3 no owner running."
    )]
    Mcp,
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the agent API's OpenAPI 3.1 document (the same as GET /openapi.json)
    Openapi,
}

#[derive(Args)]
struct ServeArgs {
    /// Port on 127.0.0.1; 0 picks a free one (it is printed and written to server.json)
    /// [default: config.toml `port`, else 47420]
    #[arg(long, env = "AKHROT_PORT")]
    port: Option<u16>,
    /// Seconds a token request waits for your approval [default: config.toml, else 120]
    #[arg(long, value_name = "SECS")]
    approval_timeout: Option<u64>,
    /// Agent requests per minute per key; 0 turns the limit off [default: config.toml, else 600]
    #[arg(long, value_name = "PER_MIN")]
    rate_limit: Option<u32>,
    /// Protect the vault with a passphrase instead of the OS keyring (asked on the terminal;
    /// AKHROT_PASSPHRASE also works). For machines without a keyring.
    #[arg(long)]
    passphrase: bool,
}

#[derive(Args)]
struct JsonFlag {
    /// Print one JSON array instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create an agent key; the key is printed once on stdout and never stored
    Create {
        #[arg(long)]
        name: String,
        /// Allow this provider without asking (repeatable)
        #[arg(long, value_name = "PROVIDER")]
        allow: Vec<String>,
        /// Allow every provider without asking
        #[arg(long)]
        allow_all: bool,
    },
    /// List agent keys (never the keys themselves)
    List(JsonFlag),
    /// Revoke an agent key by name or id; it stops working at once
    Revoke { name: String },
}

#[derive(Subcommand)]
enum ApprovalsCmd {
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

#[derive(Subcommand)]
enum ClientsCmd {
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

#[derive(Subcommand)]
enum PolicyCmd {
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

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            if let Some(x) = e.downcast_ref::<exec::ExecError>() {
                eprintln!("akhrot: {x}");
                x.code
            } else if let Some(no) = e.downcast_ref::<NoOwner>() {
                eprintln!("akhrot: {no}");
                EXIT_NO_OWNER
            } else if let Some(f) = e.downcast_ref::<ApiFailure>() {
                eprintln!("akhrot: {f}");
                1
            } else {
                eprintln!("akhrot: {e:#}");
                1
            }
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<()> {
    let paths = || Paths::resolve(cli.dirs.data_dir.clone(), cli.dirs.config_dir.clone());
    match cli.command {
        Command::Serve(args) => serve(paths()?, args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "akhrot", &mut std::io::stdout());
            Ok(())
        }
        Command::Openapi => {
            use std::io::Write;
            std::io::stdout().write_all(akhrot_server::openapi::json().as_bytes())?;
            Ok(())
        }
        Command::Exec {
            providers,
            account,
            reason,
            command,
        } => {
            let code = exec::run(
                &paths()?,
                &providers,
                account.as_deref(),
                reason.as_deref(),
                &command,
            )?;
            std::process::exit(code);
        }
        Command::Mcp => mcp(paths()?),
        Command::Status(f) => status(&Client::connect(&paths()?)?, f.json),
        Command::Keys(k) => keys(&Client::connect(&paths()?)?, k),
        Command::Policy(PolicyCmd::Set {
            agent,
            provider,
            mode,
            duration,
        }) => {
            let c = Client::connect(&paths()?)?;
            let mut body = json!({ "agent": agent, "provider": provider, "mode": mode });
            if let Some(d) = duration {
                if mode != "allow" && mode != "proxy-only" {
                    bail!("--for goes with allow or proxy-only");
                }
                body["forSeconds"] = json!(parse_duration(&d)?);
            }
            c.post("/admin/policies", &body)?;
            eprintln!("Policy for `{agent}` on {provider}: {mode}.");
            Ok(())
        }
        Command::Add { provider, account } => add(&Client::connect(&paths()?)?, &provider, account),
        Command::Clients(cmd) => clients(&Client::connect(&paths()?)?, cmd),
        Command::Approvals { cmd, json } => approvals(&Client::connect(&paths()?)?, cmd, json),
        Command::Log {
            agent,
            provider,
            action,
            limit,
            json,
        } => log(
            &Client::connect(&paths()?)?,
            agent,
            provider,
            action,
            limit,
            json,
        ),
        Command::Pause { state } => {
            let c = Client::connect(&paths()?)?;
            c.post("/admin/pause", &json!({ "paused": state == "on" }))?;
            eprintln!(
                "{}",
                if state == "on" {
                    "All agents are paused: their requests are denied until `akhrot pause off`."
                } else {
                    "Agents are no longer paused."
                }
            );
            Ok(())
        }
        Command::Ui { no_browser } => ui(&Client::connect(&paths()?)?, no_browser),
        Command::Connect {
            provider,
            scopes,
            account,
            no_browser,
        } => connect(
            &Client::connect(&paths()?)?,
            &provider,
            scopes,
            account,
            no_browser,
        ),
        Command::Token { provider, account } => {
            let c = Client::connect(&paths()?)?;
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
        Command::Disconnect { provider, account } => {
            let c = Client::connect(&paths()?)?;
            let mut path = format!("/admin/connections/{}", enc(&provider));
            if let Some(a) = &account {
                path.push_str(&format!("?account={}", enc(a)));
            }
            let v = c.delete(&path)?;
            eprintln!(
                "Disconnected {} (account `{}`).",
                v["removed"]["provider"].as_str().unwrap_or(&provider),
                v["removed"]["account"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}

fn serve(paths: Paths, args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let unlock = match std::env::var("AKHROT_PASSPHRASE") {
        Ok(p) if !p.is_empty() => Unlock::Passphrase(SecretString::new(p)),
        _ if args.passphrase => {
            let p = rpassword::prompt_password("Vault passphrase: ")
                .context("cannot read the passphrase from the terminal")?;
            Unlock::Passphrase(SecretString::new(p))
        }
        _ => Unlock::Keyring,
    };
    let config = Config::load(&paths.config_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        // Signal handlers exist before anyone can read the ready line, so an early SIGTERM is
        // a clean shutdown rather than the default (immediate death).
        let shutdown = shutdown_signal()?;
        let owner = Owner::start(OwnerOptions {
            paths: paths.clone(),
            port: args.port.or(config.port).unwrap_or(DEFAULT_PORT),
            unlock,
            rate_limit_per_min: args
                .rate_limit
                .or(config.rate_limit)
                .unwrap_or(DEFAULT_RATE_LIMIT),
            approval_timeout: Duration::from_secs(
                args.approval_timeout
                    .or(config.approval_timeout)
                    .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECS),
            ),
            provider_timeout: Duration::from_secs(
                config
                    .provider_timeout
                    .unwrap_or(DEFAULT_PROVIDER_TIMEOUT_SECS)
                    .max(1),
            ),
            limits: ConnLimits::from_config(config.max_connections, config.header_timeout),
        })
        .await?;
        println!(
            "akhrot: serving on {} (data dir {})",
            owner.base_url(),
            paths.data_dir.display()
        );
        // The sign-in link is a credential: only a person at a terminal sees it. Service logs
        // (systemd, a redirected stdout) keep stdout, so there the way in is `akhrot ui`.
        if std::io::stdout().is_terminal() {
            println!(
                "akhrot: web UI: {}  (one-time sign-in link, valid for an hour; `akhrot ui` makes another)",
                owner.ui_login_url()
            );
        } else {
            println!("akhrot: web UI: run `akhrot ui` for a one-time sign-in link");
        }
        let _ = std::io::stdout().flush();
        owner.serve(shutdown).await?;
        Ok(())
    })
}

/// `akhrot mcp`: MCP over stdio, speaking for the agent whose key is in AKHROT_API_KEY.
fn mcp(paths: Paths) -> Result<()> {
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

/// Installs the SIGTERM/SIGINT handlers now; the returned future resolves on either.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

fn parse_duration(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a duration like 30m, 1h or 2d"))?;
    let mult = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("`{s}` is not a duration like 30m, 1h or 2d"),
    };
    Ok(n.saturating_mul(mult))
}

fn ago(t: Option<i64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let d = akhrot_core::now_unix() - t;
            match d {
                d if d < 60 => "just now".into(),
                d if d < 3600 => format!("{}m ago", d / 60),
                d if d < 86400 => format!("{}h ago", d / 3600),
                d => format!("{}d ago", d / 86400),
            }
        }
    }
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn status(c: &Client, as_json: bool) -> Result<()> {
    let s = c.get("/admin/status")?;
    let conns = s["connections"].as_array().cloned().unwrap_or_default();
    if as_json {
        let approvals = s["pendingApprovals"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let list: Vec<Value> = conns
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c["kind"] = json!("connection");
                c
            })
            .chain(approvals.into_iter().map(|mut a| {
                a["kind"] = json!("approval");
                a
            }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "Akhrot {} on {} (pid {}), vault {} ({})",
        s["server"]["version"].as_str().unwrap_or("?"),
        s["server"]["baseUrl"].as_str().unwrap_or("?"),
        s["server"]["pid"],
        s["vault"]["path"].as_str().unwrap_or("?"),
        s["vault"]["keySource"].as_str().unwrap_or("?")
    );
    println!(
        "Agent keys: {} active. Pending approvals: {}.{}",
        s["agents"]["active"],
        s["pendingApprovals"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0),
        if s["paused"].as_bool().unwrap_or(false) {
            " Agents are PAUSED."
        } else {
            ""
        }
    );
    for issue in s["catalog"]["issues"].as_array().into_iter().flatten() {
        println!("providers.d problem: {}", issue.as_str().unwrap_or(""));
    }
    println!();
    if conns.is_empty() {
        println!(
            "No connections yet. Add one with `akhrot add openai` (API keys) — OAuth providers connect from the app."
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            vec![
                c["provider"].as_str().unwrap_or("").to_owned(),
                c["account"].as_str().unwrap_or("").to_owned(),
                c["authType"].as_str().unwrap_or("").to_owned(),
                c["status"].as_str().unwrap_or("").to_owned(),
                ago(c["updatedAt"].as_i64()),
            ]
        })
        .collect();
    print_table(&["PROVIDER", "ACCOUNT", "TYPE", "STATUS", "UPDATED"], &rows);
    Ok(())
}

fn keys(c: &Client, cmd: KeysCmd) -> Result<()> {
    match cmd {
        KeysCmd::Create {
            name,
            allow,
            allow_all,
        } => {
            let v = c.post(
                "/admin/keys",
                &json!({ "name": name, "allow": allow, "allowAll": allow_all }),
            )?;
            let key = Zeroizing::new(v["key"].as_str().unwrap_or_default().to_owned());
            println!("{}", key.as_str());
            eprintln!(
                "Created agent key `{name}`. It is shown only this once: give it to the agent as AKHROT_API_KEY."
            );
            Ok(())
        }
        KeysCmd::List(f) => {
            let list = c.get("/admin/keys")?;
            if f.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let policies: Vec<String> = a["policies"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(p, v)| format!("{p}={}", v["mode"].as_str().unwrap_or("?")))
                        .collect();
                    vec![
                        a["id"].as_str().unwrap_or("").to_owned(),
                        a["name"].as_str().unwrap_or("").to_owned(),
                        if a["revokedAt"].is_null() {
                            "active"
                        } else {
                            "revoked"
                        }
                        .to_owned(),
                        ago(a["lastUsedAt"].as_i64()),
                        if policies.is_empty() {
                            "ask (default)".into()
                        } else {
                            policies.join(" ")
                        },
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No agent keys yet. Create one with `akhrot keys create --name <agent>`.");
            } else {
                print_table(&["ID", "NAME", "STATE", "LAST USED", "POLICIES"], &rows);
            }
            Ok(())
        }
        KeysCmd::Revoke { name } => {
            c.delete(&format!("/admin/keys/{}", enc(&name)))?;
            eprintln!("Revoked agent key `{name}`.");
            Ok(())
        }
    }
}

fn add(c: &Client, provider: &str, account: Option<String>) -> Result<()> {
    let p = c.get(&format!("/admin/providers/{}", enc(provider)))?;
    let name = p["name"].as_str().unwrap_or(provider).to_owned();
    if p["authType"] == "oauth2" {
        bail!("{name} connects with OAuth, not with a pasted key: run `akhrot connect {provider}`");
    }
    let fields: Vec<Value> = p["fields"].as_array().cloned().unwrap_or_default();
    let mut values: BTreeMap<String, SecretString> = BTreeMap::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        if let Some(url) = p["consoleUrl"].as_str() {
            eprintln!("Get the values for {name} at {url}");
        }
        for f in &fields {
            let fname = f["name"].as_str().unwrap_or_default();
            let label = f["label"].as_str().unwrap_or(fname);
            let optional = f["optional"].as_bool().unwrap_or(false);
            if let Some(h) = f["hint"].as_str() {
                eprintln!("  {h}");
            }
            let prompt = format!(
                "{label}{}: ",
                if optional {
                    " (optional, Enter to skip)"
                } else {
                    ""
                }
            );
            let v = if f["secret"].as_bool().unwrap_or(true) {
                rpassword::prompt_password(&prompt).context("cannot read from the terminal")?
            } else {
                eprint!("{prompt}");
                let mut line = String::new();
                stdin.lock().read_line(&mut line)?;
                line
            };
            let v = v.trim().to_owned();
            if !v.is_empty() {
                values.insert(fname.to_owned(), SecretString::new(v));
            }
        }
    } else {
        let mut input = Zeroizing::new(String::new());
        stdin
            .lock()
            .read_to_string(&mut input)
            .context("cannot read stdin")?;
        values = parse_stdin_fields(&input, &fields)?;
    }
    let fields_json: serde_json::Map<String, Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.expose().to_owned())))
        .collect();
    let mut body = json!({ "provider": provider, "fields": fields_json });
    if let Some(a) = &account {
        body["account"] = json!(a);
    }
    let v = c.post("/admin/connections", &body)?;
    let account = v["connection"]["account"].as_str().unwrap_or("default");
    if v["replaced"].as_bool().unwrap_or(false) {
        eprintln!("Updated {name} (account `{account}`).");
    } else {
        eprintln!("Connected {name} (account `{account}`).");
    }
    Ok(())
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

fn approvals(c: &Client, cmd: Option<ApprovalsCmd>, as_json: bool) -> Result<()> {
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

fn log(
    c: &Client,
    agent: Option<String>,
    provider: Option<String>,
    action: Option<String>,
    limit: usize,
    as_json: bool,
) -> Result<()> {
    let mut q = format!("/admin/audit?limit={limit}");
    for (k, v) in [("agent", agent), ("provider", provider), ("action", action)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", enc(&v)));
        }
    }
    let list = c.get(&q)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let at = e["at"].as_i64().unwrap_or(0) / 1000;
            vec![
                akhrot_core::unix_to_rfc3339(at),
                e["agent"].as_str().unwrap_or("-").to_owned(),
                e["action"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap_or("").to_owned(),
                match (e["provider"].as_str(), e["account"].as_str()) {
                    (Some(p), Some(a)) => format!("{p} ({a})"),
                    (Some(p), None) => p.to_owned(),
                    _ => "-".into(),
                },
                e["detail"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("No audit entries match.");
    } else {
        print_table(
            &["TIME", "AGENT", "ACTION", "OUTCOME", "PROVIDER", "DETAIL"],
            &rows,
        );
    }
    Ok(())
}

fn clients(c: &Client, cmd: ClientsCmd) -> Result<()> {
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
            let v = c.post("/admin/clients", &body)?;
            eprintln!(
                "OAuth client for {provider} saved{}. Its redirect URI must be registered as:",
                if v["hasSecret"].as_bool().unwrap_or(false) {
                    " (with secret)"
                } else {
                    " (public client, PKCE only)"
                }
            );
            println!("{}", v["redirectUri"].as_str().unwrap_or(""));
            Ok(())
        }
        ClientsCmd::List(f) => {
            let list = c.get("/admin/clients")?;
            if f.json {
                let with_ids: Vec<Value> = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        let mut v = v.clone();
                        v["id"] = v["provider"].clone();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&with_ids)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    vec![
                        v["provider"].as_str().unwrap_or("").to_owned(),
                        if v["configured"].as_bool().unwrap_or(false) {
                            v["clientId"].as_str().unwrap_or("").to_owned()
                        } else {
                            "(not set)".to_owned()
                        },
                        v["redirectUri"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect();
            print_table(&["PROVIDER", "CLIENT ID", "REDIRECT URI"], &rows);
            Ok(())
        }
    }
}

/// Opens (or prints) a fresh one-time sign-in link to the web UI.
fn ui(c: &Client, no_browser: bool) -> Result<()> {
    let v = c.post("/admin/ui-link", &json!({}))?;
    let url = v["url"].as_str().unwrap_or_default();
    check_ui_link(url, c.base())?;
    let opened = !no_browser
        && std::env::var_os("AKHROT_NO_BROWSER").is_none()
        && akhrot_core::child::open_browser(url, &[]).is_ok();
    if opened {
        eprintln!("Opened the Akhrot web UI in your browser. If it did not open, visit (once):");
    } else {
        eprintln!("Open this one-time link in a browser (it works once, for an hour):");
    }
    println!("{url}");
    Ok(())
}

/// The sign-in link must be the owner's own: `http://127.0.0.1:<port>/…`, nothing else is
/// opened or printed (a process squatting on a dead owner's port could answer any URL).
fn check_ui_link(url: &str, base: &str) -> Result<()> {
    let ok = url
        .strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('/'))
        && url::Url::parse(url).is_ok_and(|u| {
            u.scheme() == "http"
                && u.host_str() == Some("127.0.0.1")
                && u.username().is_empty()
                && u.password().is_none()
        });
    if ok {
        Ok(())
    } else {
        bail!(
            "the owner answered a sign-in link that is not on {base}/; not opening it (is something else listening on the owner's port?)"
        )
    }
}

/// A consent page is a web page: `https://`, or `http://` on a loopback host (local IdPs, as
/// the catalog allows). Anything else (`file:`, a custom scheme) is never handed to the opener.
fn check_consent_url(url: &str) -> Result<()> {
    let ok = url::Url::parse(url).is_ok_and(|u| match u.scheme() {
        "https" => true,
        "http" => matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    });
    if ok {
        Ok(())
    } else {
        bail!("the owner answered a consent URL that is not an https:// page; not opening it")
    }
}

fn connect(
    c: &Client,
    provider: &str,
    scopes: Vec<String>,
    account: Option<String>,
    no_browser: bool,
) -> Result<()> {
    let mut body = json!({ "provider": provider, "scopes": scopes });
    if let Some(a) = account {
        body["account"] = json!(a);
    }
    let s = c.post("/admin/sessions", &body)?;
    let id = s["sessionId"].as_str().unwrap_or_default().to_owned();
    let url = s["url"].as_str().unwrap_or_default().to_owned();
    check_consent_url(&url)?;
    let opened = !no_browser
        && std::env::var_os("AKHROT_NO_BROWSER").is_none()
        && akhrot_core::child::open_browser(&url, &[]).is_ok();
    if opened {
        eprintln!("Opened your browser to approve access. If it did not open, visit:");
    } else {
        eprintln!("Open this URL in a browser to approve access:");
    }
    println!("{url}");
    let _ = std::io::stdout().flush();
    let tty = std::io::stderr().is_terminal();
    let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut i = 0usize;
    loop {
        let v = c.get(&format!("/admin/sessions/{}", enc(&id)))?;
        match v["status"].as_str().unwrap_or("") {
            "completed" => {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                eprintln!(
                    "Connected {provider} as {}.",
                    v["account"].as_str().unwrap_or("?")
                );
                return Ok(());
            }
            "failed" => {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                bail!(
                    "{provider} was not connected: {}",
                    v["error"].as_str().unwrap_or("the provider refused")
                );
            }
            "expired" => {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                bail!(
                    "the consent session expired after 10 minutes; run `akhrot connect {provider}` again"
                );
            }
            _ => {}
        }
        if tty {
            eprint!(
                "\r{} Waiting for you to approve in the browser…",
                spinner[i % spinner.len()]
            );
            let _ = std::io::stderr().flush();
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Stdin for `akhrot add`: the bare secret for a one-field provider, else `field=value` lines.
fn parse_stdin_fields(input: &str, fields: &[Value]) -> Result<BTreeMap<String, SecretString>> {
    let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
    let mut out = BTreeMap::new();
    let trimmed = input.trim();
    if names.len() == 1 {
        let v = trimmed
            .strip_prefix(&format!("{}=", names[0]))
            .unwrap_or(trimmed);
        if v.contains('\n') {
            bail!(
                "expected one value on stdin (the {}), found several lines",
                names[0]
            );
        }
        out.insert(names[0].to_owned(), SecretString::from(v.trim()));
        return Ok(out);
    }
    for (i, line) in trimmed.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!(
                "stdin line {} is not `field=value`; this provider's fields are: {}",
                i + 1,
                names.join(", ")
            );
        };
        out.insert(k.trim().to_owned(), SecretString::from(v.trim()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn stdin_fields() {
        let one = vec![json!({"name": "apiKey"})];
        let v = parse_stdin_fields("sk-1\n", &one).unwrap();
        assert_eq!(v["apiKey"].expose(), "sk-1");
        let v = parse_stdin_fields("apiKey=sk-2", &one).unwrap();
        assert_eq!(v["apiKey"].expose(), "sk-2");
        let two = vec![json!({"name": "accountSid"}), json!({"name": "authToken"})];
        let v = parse_stdin_fields("# twilio\naccountSid=AC1\nauthToken=t=x\n", &two).unwrap();
        assert_eq!(v["accountSid"].expose(), "AC1");
        assert_eq!(v["authToken"].expose(), "t=x");
        assert!(parse_stdin_fields("garbage", &two).is_err());
    }
}
