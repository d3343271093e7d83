//! Ready-to-paste snippets: templates of the catalog rendered as shell-friendly text.

use std::collections::BTreeMap;

use akhrot_core::catalog::{Example, Provider, Service};
use akhrot_core::text::fill_with;
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
    let unknown = |name: &str| Ok::<_, std::convert::Infallible>(format!("${}", shell_var(name)));
    match fill_with(template, known, unknown) {
        Ok(s) => s,
        Err(never) => match never {},
    }
}

/// Replaces `{name}` with its value; a name without one is an error naming it (for values
/// that are sent, not shown).
pub fn fill_strict(template: &str, known: &BTreeMap<String, String>) -> Result<String, String> {
    fill_with(template, known, |name| Err(name.to_owned()))
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
#[serde(rename_all = "camelCase")]
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
    /// The same call through `/proxy/…`, where Akhrot adds the credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_curl: Option<String>,
}

/// How to call the provider's API through Akhrot's proxy.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyInfo {
    /// The URL prefix: append the API path relative to the service's base URL.
    pub url: String,
    pub note: &'static str,
    /// The header that picks the service, when the provider has APIs on several base URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_header: Option<&'static str>,
    /// Headers to send with each call (the service's code, when it has to be chosen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

/// Whether the provider's services sit on more than one base URL, so a proxied call must name
/// its service (`X-Akhrot-Service`).
pub fn has_several_bases(p: &Provider) -> bool {
    let mut bases: Vec<&str> = p
        .services
        .iter()
        .filter_map(|s| s.base_url.as_deref())
        .collect();
    bases.sort_unstable();
    bases.dedup();
    bases.len() > 1
}

/// How to reach a provider through the proxy: the URL prefix, and the header that picks the
/// service when the provider has APIs on several base URLs.
pub fn proxy(base_url: &str, p: &Provider, service: Option<&Service>) -> ProxyInfo {
    let url = format!("{base_url}/proxy/{}", p.code);
    let multi = has_several_bases(p);
    ProxyInfo {
        url,
        note: "Send the API call here instead of to the provider: Akhrot adds the credential. The path is relative to the service's base URL.",
        service_header: multi.then_some("X-Akhrot-Service"),
        headers: service
            .filter(|_| multi)
            .map(|s| BTreeMap::from([("X-Akhrot-Service".to_string(), s.code.clone())])),
    }
}

/// One example call through the proxy, as a `curl` line (no credential in it).
pub fn proxy_curl(
    base_url: &str,
    p: &Provider,
    s: &Service,
    e: &Example,
    multi: bool,
    known: &BTreeMap<String, String>,
) -> String {
    let method = e.method.to_ascii_uppercase();
    let mut curl = String::from("curl -s");
    if method != "GET" {
        curl.push_str(&format!(" -X {method}"));
    }
    curl.push_str(&format!(
        " \"{base_url}/proxy/{}{}\" -H \"Authorization: Bearer $AKHROT_API_KEY\"",
        p.code,
        fill(&e.path, known)
    ));
    if multi {
        curl.push_str(&format!(" -H \"X-Akhrot-Service: {}\"", s.code));
    }
    if let Some(body) = &e.body {
        curl.push_str(" -H \"Content-Type: application/json\" -d ");
        curl.push_str(&single_quote(&fill_body(body, known)));
    }
    curl
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
        proxy_curl: None,
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

/// The skill document (`GET /ai/skill`) for this instance's base URL and catalog.
pub fn render_skill(base_url: &str, catalog: &akhrot_core::catalog::Catalog) -> String {
    let rows: Vec<String> = catalog
        .iter()
        .map(|p| {
            let kind = match p.auth {
                akhrot_core::catalog::AuthType::Oauth2 => "OAuth Bearer",
                akhrot_core::catalog::AuthType::ApiKey => "API Key",
                akhrot_core::catalog::AuthType::Mtproto => "MTProto Session",
            };
            format!("{} {} {} {}", p.name, p.code, kind, p.description)
        })
        .collect();
    include_str!("skill.md")
        .replace("{{BASE_URL}}", base_url)
        .replace("{{PROVIDERS}}", &rows.join("\n"))
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
        assert_eq!(
            fill_strict("https://{domain}/v3", &known).as_deref(),
            Ok("https://mg.example.com/v3")
        );
        assert_eq!(
            fill_strict("Bearer {accessToken}", &known),
            Err("accessToken".into())
        );
    }
}
