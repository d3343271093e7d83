//! `akhrot exec -p github[:GH_TOKEN] -- cmd args…`: runs a command with fresh tokens in its
//! environment. Speaks for an agent (its key from `AKHROT_API_KEY`), so policy, approvals,
//! rate limits and the audit log apply exactly as to any other token request. The key itself,
//! and every other `AKHROT_*` secret, is removed from the command's environment and no token is
//! ever printed.

use std::ffi::OsString;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use akhrot_core::catalog::Catalog;
use akhrot_core::paths::Paths;

use crate::client::{ApiFailure, Client, NoOwner};

/// Exit codes of `akhrot exec` itself (the command's own code passes through otherwise).
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_REFUSED: i32 = 4;
pub const EXIT_CANNOT_RUN: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// The environment variable agents put their key in.
pub const KEY_VAR: &str = "AKHROT_API_KEY";

/// One `-p CODE[:ENV]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Want {
    pub provider: String,
    pub env: Option<String>,
}

/// An `akhrot exec` failure with its exit code; the message goes to stderr.
#[derive(Debug)]
pub struct ExecError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for ExecError {}

fn fail(code: i32, message: impl Into<String>) -> anyhow::Error {
    anyhow!(ExecError {
        code,
        message: message.into(),
    })
}

pub fn parse_want(s: &str) -> Result<Want> {
    let (provider, env) = match s.split_once(':') {
        Some((p, e)) => (p, Some(e)),
        None => (s, None),
    };
    if provider.is_empty() {
        return Err(fail(
            EXIT_USAGE,
            format!("`-p {s}`: name a provider, e.g. -p github or -p github:GH_TOKEN"),
        ));
    }
    if let Some(e) = env
        && !valid_env_name(e)
    {
        return Err(fail(
            EXIT_USAGE,
            format!(
                "`-p {s}`: `{e}` is not an environment variable name (letters, digits and _, not starting with a digit)"
            ),
        ));
    }
    Ok(Want {
        provider: provider.to_owned(),
        env: env.map(str::to_owned),
    })
}

fn valid_env_name(e: &str) -> bool {
    let mut chars = e.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable a provider's token goes in: the catalog's `env_var`, else `<CODE>_TOKEN`.
pub fn default_env(catalog: Option<&Catalog>, provider: &str) -> String {
    if let Some(v) = catalog
        .and_then(|c| c.get(provider))
        .and_then(|p| p.env_var.clone())
        .filter(|v| valid_env_name(v))
    {
        return v;
    }
    let mut out: String = provider
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out.push_str("_TOKEN");
    out
}

/// Fetches every token, then runs the command; returns only when the command could not be
/// started (on Unix a successful start replaces this process) or, elsewhere, with its exit code.
pub fn run(
    paths: &Paths,
    wants: &[String],
    account: Option<&str>,
    reason: Option<&str>,
    command: &[OsString],
) -> Result<i32> {
    let wants: Vec<Want> = wants.iter().map(|w| parse_want(w)).collect::<Result<_>>()?;
    let Some((program, args)) = command.split_first() else {
        return Err(fail(
            EXIT_USAGE,
            "name the command to run after `--`, e.g. akhrot exec -p github -- gh repo list",
        ));
    };
    let key = Zeroizing::new(std::env::var(KEY_VAR).unwrap_or_default());
    if key.trim().is_empty() {
        return Err(fail(
            EXIT_USAGE,
            format!(
                "{KEY_VAR} is not set: `akhrot exec` speaks for an agent, with the agent key the user created (`akhrot keys create --name <agent>`)"
            ),
        ));
    }
    // The catalog (for default variable names) is read only when a -p names no variable.
    let catalog = if wants.iter().any(|w| w.env.is_none()) {
        Some(Catalog::load(&paths.providers_d())?)
    } else {
        None
    };
    let mut vars: Vec<(String, Zeroizing<String>)> = Vec::with_capacity(wants.len());
    for w in &wants {
        let var = match (&w.env, &catalog) {
            (Some(e), _) => e.clone(),
            (None, c) => default_env(c.as_ref(), &w.provider),
        };
        if vars.iter().any(|(v, _)| *v == var) {
            return Err(fail(
                EXIT_USAGE,
                format!("two providers would go in ${var}; name one with -p CODE:OTHER_VAR"),
            ));
        }
        vars.push((var, Zeroizing::new(String::new())));
    }
    let client = Client::for_agent(paths, key.trim())?;
    // By default the prompt names the program only: its arguments may hold secrets (the prompt
    // also shows the calling process's command line, with secrets redacted).
    let reason = reason.map(str::to_owned).unwrap_or_else(|| {
        let name = std::path::Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy()
            .chars()
            .take(100)
            .collect::<String>();
        format!("akhrot exec: run `{name}`")
    });
    for (w, (_, slot)) in wants.iter().zip(vars.iter_mut()) {
        let mut body = json!({ "provider": w.provider, "reason": reason });
        if let Some(a) = account {
            body["account"] = json!(a);
        }
        let data = match client.post("/tokens/fetch", &body) {
            Ok(d) => Zeroizing::new(d.to_string()),
            Err(e) => {
                if e.downcast_ref::<NoOwner>().is_some() {
                    return Err(e);
                }
                if let Some(f) = e.downcast_ref::<ApiFailure>() {
                    return Err(fail(EXIT_REFUSED, format!("no {} token: {f}", w.provider)));
                }
                return Err(e);
            }
        };
        let v: Value = serde_json::from_str(&data)?;
        let token = v["accessToken"].as_str().unwrap_or_default();
        if token.is_empty() {
            return Err(fail(
                EXIT_REFUSED,
                format!("the owner answered without a {} token", w.provider),
            ));
        }
        slot.push_str(token);
    }
    drop(client);

    let mut cmd = std::process::Command::new(program);
    // No Akhrot secret reaches the command: not the agent key, not a vault passphrase the
    // caller's shell happens to hold (settings such as AKHROT_DATA_DIR pass through).
    akhrot_core::child::scrub_env(&mut cmd);
    cmd.args(args).env_remove(KEY_VAR);
    for (var, value) in &vars {
        cmd.env(var, value.as_str());
    }
    spawn(cmd, program)
}

fn start_error(program: &OsString, e: &std::io::Error) -> anyhow::Error {
    let name = program.to_string_lossy();
    match e.kind() {
        std::io::ErrorKind::NotFound => fail(EXIT_NOT_FOUND, format!("{name}: command not found")),
        _ => fail(EXIT_CANNOT_RUN, format!("{name}: cannot run: {e}")),
    }
}

#[cfg(unix)]
fn spawn(mut cmd: std::process::Command, program: &OsString) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    // Replaces this process: stdin, stdout, stderr, signals and the exit code are the command's.
    let e = cmd.exec();
    Err(start_error(program, &e))
}

#[cfg(not(unix))]
fn spawn(mut cmd: std::process::Command, program: &OsString) -> Result<i32> {
    let status = cmd.status().map_err(|e| start_error(program, &e))?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants() {
        assert_eq!(
            parse_want("github").unwrap(),
            Want {
                provider: "github".into(),
                env: None
            }
        );
        assert_eq!(
            parse_want("github:MY_GH").unwrap(),
            Want {
                provider: "github".into(),
                env: Some("MY_GH".into())
            }
        );
        for bad in ["", ":X", "github:", "github:1X", "github:A-B"] {
            let e = parse_want(bad).unwrap_err();
            assert_eq!(e.downcast_ref::<ExecError>().unwrap().code, EXIT_USAGE);
        }
    }

    #[test]
    fn env_names() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(default_env(Some(&c), "github"), "GH_TOKEN");
        assert_eq!(default_env(Some(&c), "openai"), "OPENAI_API_KEY");
        assert_eq!(default_env(Some(&c), "my-idp"), "MY_IDP_TOKEN");
        assert_eq!(default_env(None, "github"), "GITHUB_TOKEN");
        assert_eq!(default_env(Some(&c), "9x"), "_9X_TOKEN");
    }
}
