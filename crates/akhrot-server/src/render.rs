//! Ready-to-paste snippets: templates of the catalog rendered as shell-friendly text.

use std::collections::BTreeMap;

use akhrot_core::catalog::{Example, Provider, Service};
use serde::Serialize;
use utoipa::ToSchema;

/// `accountSid` → `ACCOUNT_SID`.
pub fn shell_var(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Replaces `{name}` with a known value, else with `$NAME` for the reader's shell.
pub fn fill(template: &str, known: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if !after[..end].is_empty()
                    && after[..end].chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                let name = &after[..end];
                match known.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('$');
                        out.push_str(&shell_var(name));
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The body of `POST /tokens/fetch` for one provider (and account).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GetTokenBody {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// How to get a token: the request, a ready `curl` line and a `shell` line that sets
/// `$ACCESS_TOKEN`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GetToken {
    /// Always `POST`.
    pub method: &'static str,
    pub url: String,
    pub body: GetTokenBody,
    pub curl: String,
    pub shell: String,
}

/// The request an agent sends for a token, with a `curl` line.
pub fn get_token(base_url: &str, provider: &str, account: Option<&str>) -> GetToken {
    let body = GetTokenBody {
        provider: provider.to_owned(),
        account: account.map(str::to_owned),
    };
    let url = format!("{base_url}/tokens/fetch");
    let curl = format!(
        "curl -s -X POST \"{url}\" -H \"Authorization: Bearer $AKHROT_API_KEY\" -H \"Content-Type: application/json\" -d {}",
        single_quote(&serde_json::to_string(&body).unwrap_or_default())
    );
    let shell = format!("ACCESS_TOKEN=$({curl} | jq -r .data.accessToken)");
    GetToken {
        method: "POST",
        url,
        body,
        curl,
        shell,
    }
}

/// A user name and password template for Basic or Digest authentication.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPass {
    pub username: String,
    pub password: String,
}

/// How the credential goes on a request, with `$ACCESS_TOKEN`-style placeholders.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Headers to send, by name.
    pub headers: BTreeMap<String, String>,
    /// Query parameters to add, by name (providers that take the key in the URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<UserPass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest_auth: Option<UserPass>,
}

/// How the credential goes on a request, with `$ACCESS_TOKEN` and friends as placeholders.
pub fn usage(p: &Provider, known: &BTreeMap<String, String>) -> Usage {
    let fill_map = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), fill(v, known))).collect()
    };
    let pair = |[u, pw]: &[String; 2]| UserPass {
        username: fill(u, known),
        password: fill(pw, known),
    };
    Usage {
        headers: fill_map(&p.inject.effective_headers()),
        query: (!p.inject.query.is_empty()).then(|| fill_map(&p.inject.query)),
        basic_auth: p.inject.basic.as_ref().map(pair),
        digest_auth: p.inject.digest.as_ref().map(pair),
    }
}

/// A service's base URL with known non-secret values filled in.
pub fn base_url(s: &Service, known: &BTreeMap<String, String>) -> Option<String> {
    s.base_url.as_deref().map(|u| fill(u, known))
}

/// One example call of a service's API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExampleCall {
    pub title: String,
    /// The HTTP method, upper case.
    pub method: String,
    pub url: String,
    /// A ready `curl` line (`$ACCESS_TOKEN`-style placeholders for the credential).
    pub curl: String,
    /// The JSON body to send, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// One example call, as a full URL and a `curl` line.
pub fn example(
    p: &Provider,
    s: &Service,
    e: &Example,
    known: &BTreeMap<String, String>,
) -> ExampleCall {
    let base = base_url(s, known).unwrap_or_default();
    let mut url = format!("{}{}", base.trim_end_matches('/'), fill(&e.path, known));
    for (k, v) in &p.inject.query {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{k}={}", fill(v, known)));
    }
    let method = e.method.to_ascii_uppercase();
    let mut curl = String::from("curl -s");
    if method != "GET" {
        curl.push_str(&format!(" -X {method}"));
    }
    curl.push_str(&format!(" \"{url}\""));
    for (k, v) in p.inject.effective_headers().iter().chain(s.headers.iter()) {
        curl.push_str(&format!(" -H \"{k}: {}\"", fill(v, known)));
    }
    if let Some([u, pw]) = p.inject.basic.as_ref().or(p.inject.digest.as_ref()) {
        if p.inject.digest.is_some() {
            curl.push_str(" --digest");
        }
        curl.push_str(&format!(" -u \"{}:{}\"", fill(u, known), fill(pw, known)));
    }
    if let Some(body) = &e.body {
        curl.push_str(" -H \"Content-Type: application/json\" -d ");
        curl.push_str(&single_quote(&fill_body(body, known)));
    }
    ExampleCall {
        title: e.title.clone(),
        method,
        url,
        curl,
        body: e.body.as_ref().map(|b| fill_body(b, known)),
    }
}

/// Bodies are JSON: only fill placeholders whose value is known (leave JSON braces alone).
fn fill_body(body: &str, known: &BTreeMap<String, String>) -> String {
    let mut out = body.to_owned();
    for (k, v) in known {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_known_values_and_names_the_rest() {
        let known = BTreeMap::from([("domain".to_string(), "mg.example.com".to_string())]);
        assert_eq!(
            fill(
                "https://api.mailgun.net/v3/{domain}/messages?k={accessToken}",
                &known
            ),
            "https://api.mailgun.net/v3/mg.example.com/messages?k=$ACCESS_TOKEN"
        );
        assert_eq!(fill("{\"a\": 1}", &known), "{\"a\": 1}");
        assert_eq!(shell_var("accountSid"), "ACCOUNT_SID");
        assert_eq!(single_quote("it's"), "'it'\\''s'");
    }
}
