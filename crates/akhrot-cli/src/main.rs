//! `akhrot`: the headless vault owner (`akhrot serve`) and the commands that talk to it.

mod client;
mod command;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};

use akhrot_core::paths::Paths;

use client::{ApiFailure, Client, EXIT_NO_OWNER, NoOwner};
use command::{
    JsonFlag, approvals::ApprovalsCmd, clients::ClientsCmd, exec, keys::KeysCmd, policy::PolicyCmd,
    serve::ServeArgs,
};

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
        Command::Serve(args) => command::serve::run(paths()?, args),
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
        Command::Mcp => command::mcp::run(paths()?),
        Command::Status(f) => command::status::run(&Client::connect(&paths()?)?, f.json),
        Command::Keys(k) => command::keys::run(&Client::connect(&paths()?)?, k),
        Command::Policy(p) => command::policy::run(&Client::connect(&paths()?)?, p),
        Command::Add { provider, account } => {
            command::add::run(&Client::connect(&paths()?)?, &provider, account)
        }
        Command::Clients(cmd) => command::clients::run(&Client::connect(&paths()?)?, cmd),
        Command::Approvals { cmd, json } => {
            command::approvals::run(&Client::connect(&paths()?)?, cmd, json)
        }
        Command::Log {
            agent,
            provider,
            action,
            limit,
            json,
        } => command::log::run(
            &Client::connect(&paths()?)?,
            agent,
            provider,
            action,
            limit,
            json,
        ),
        Command::Pause { state } => command::pause::run(&Client::connect(&paths()?)?, &state),
        Command::Ui { no_browser } => command::ui::run(&Client::connect(&paths()?)?, no_browser),
        Command::Connect {
            provider,
            scopes,
            account,
            no_browser,
        } => command::connect::run(
            &Client::connect(&paths()?)?,
            &provider,
            scopes,
            account,
            no_browser,
        ),
        Command::Token { provider, account } => {
            command::token::run(&Client::connect(&paths()?)?, provider, account)
        }
        Command::Disconnect { provider, account } => {
            command::disconnect::run(&Client::connect(&paths()?)?, &provider, account)
        }
    }
}
