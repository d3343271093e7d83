//! `akhrot add`: connect an API-key provider; secrets come from stdin or a hidden prompt.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use akhrot_core::SecretString;

use akhrot_server::models::admin::{ConnectionAdded, ProviderField, ProviderInfo};

use crate::client::{Client, enc, typed};

pub fn run(c: &Client, provider: &str, account: Option<String>) -> Result<()> {
    let p: ProviderInfo = c.get_typed(&format!("/admin/providers/{}", enc(provider)))?;
    let name = p.name.clone();
    if p.auth_type == "oauth2" {
        bail!("{name} connects with OAuth, not with a pasted key: run `akhrot connect {provider}`");
    }
    let fields = &p.fields;
    let mut values: BTreeMap<String, SecretString> = BTreeMap::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        if let Some(url) = &p.console_url {
            eprintln!("Get the values for {name} at {url}");
        }
        for f in fields {
            let fname = f.name.as_str();
            let label = f.label.as_str();
            let optional = f.optional;
            if let Some(h) = &f.hint {
                eprintln!("  {h}");
            }
            let prompt = match (&f.default, f.values.is_empty()) {
                (Some(d), false) => format!("{label} ({}; Enter for {d}): ", f.values.join(", ")),
                (None, false) => format!("{label} ({}): ", f.values.join(", ")),
                (Some(d), true) => format!("{label} (Enter for {d}): "),
                (None, true) if optional => format!("{label} (optional, Enter to skip): "),
                (None, true) => format!("{label}: "),
            };
            let v = if f.secret {
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
        values = parse_stdin_fields(&input, fields)?;
    }
    let fields_json: serde_json::Map<String, Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.expose().to_owned())))
        .collect();
    let mut body = json!({ "provider": provider, "fields": fields_json });
    if let Some(a) = &account {
        body["account"] = json!(a);
    }
    let v: ConnectionAdded = typed("/admin/connections", c.post("/admin/connections", &body)?)?;
    let account = &v.connection.account;
    if v.replaced {
        eprintln!("Updated {name} (account `{account}`).");
    } else {
        eprintln!("Connected {name} (account `{account}`).");
    }
    Ok(())
}

/// Stdin for `akhrot add`: the bare secret for a one-field provider, else `field=value` lines.
fn parse_stdin_fields(
    input: &str,
    fields: &[ProviderField],
) -> Result<BTreeMap<String, SecretString>> {
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
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

    fn field(name: &str) -> ProviderField {
        ProviderField {
            name: name.into(),
            label: name.into(),
            secret: true,
            optional: false,
            hint: None,
            default: None,
            values: Vec::new(),
        }
    }

    #[test]
    fn stdin_fields() {
        let one = vec![field("apiKey")];
        let v = parse_stdin_fields("sk-1\n", &one).unwrap();
        assert_eq!(v["apiKey"].expose(), "sk-1");
        let v = parse_stdin_fields("apiKey=sk-2", &one).unwrap();
        assert_eq!(v["apiKey"].expose(), "sk-2");
        let two = vec![field("accountSid"), field("authToken")];
        let v = parse_stdin_fields("# twilio\naccountSid=AC1\nauthToken=t=x\n", &two).unwrap();
        assert_eq!(v["accountSid"].expose(), "AC1");
        assert_eq!(v["authToken"].expose(), "t=x");
        assert!(parse_stdin_fields("garbage", &two).is_err());
    }
}
