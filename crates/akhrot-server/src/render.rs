//! Ready-to-paste snippets: templates of the catalog rendered as shell-friendly text.

use std::collections::BTreeMap;

use akhrot_core::catalog::{Example, Provider, Service};
use serde_json::{Value, json};

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

/// Replaces `{name}` with its value; a name without one is an error naming it (for values
/// that are sent, not shown).
pub fn fill_strict(template: &str, known: &BTreeMap<String, String>) -> Result<String, String> {
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
                    None => return Err(name.to_owned()),
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
    Ok(out)
}

fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The request an agent sends for a token, with a `curl` line.
pub fn get_token(base_url: &str, provider: &str, account: Option<&str>) -> Value {
    let mut body = json!({ "provider": provider });
    if let Some(a) = account {
        body["account"] = json!(a);
    }
    let url = format!("{base_url}/tokens/fetch");
    let curl = format!(
        "curl -s -X POST \"{url}\" -H \"Authorization: Bearer $AKHROT_API_KEY\" -H \"Content-Type: application/json\" -d {}",
        single_quote(&body.to_string())
    );
    let shell = format!("ACCESS_TOKEN=$({curl} | jq -r .data.accessToken)");
    json!({ "method": "POST", "url": url, "body": body, "curl": curl, "shell": shell })
}

/// How the credential goes on a request, with `$ACCESS_TOKEN` and friends as placeholders.
pub fn usage(p: &Provider, known: &BTreeMap<String, String>) -> Value {
    let headers: BTreeMap<String, String> = p
        .inject
        .effective_headers()
        .iter()
        .map(|(k, v)| (k.clone(), fill(v, known)))
        .collect();
    let mut out = json!({ "headers": headers });
    if !p.inject.query.is_empty() {
        let q: BTreeMap<String, String> = p
            .inject
            .query
            .iter()
            .map(|(k, v)| (k.clone(), fill(v, known)))
            .collect();
        out["query"] = json!(q);
    }
    if let Some([u, pw]) = &p.inject.basic {
        out["basicAuth"] = json!({ "username": fill(u, known), "password": fill(pw, known) });
    }
    if let Some([u, pw]) = &p.inject.digest {
        out["digestAuth"] = json!({ "username": fill(u, known), "password": fill(pw, known) });
    }
    out
}

/// A service's base URL with known non-secret values filled in.
pub fn base_url(s: &Service, known: &BTreeMap<String, String>) -> Option<String> {
    s.base_url.as_deref().map(|u| fill(u, known))
}

/// How to reach a provider through the proxy: the URL prefix, and the header that picks the
/// service when the provider has APIs on several base URLs.
pub fn proxy(base_url: &str, p: &Provider, service: Option<&Service>) -> Value {
    let url = format!("{base_url}/proxy/{}", p.code);
    let mut bases: Vec<&str> = p
        .services
        .iter()
        .filter_map(|s| s.base_url.as_deref())
        .collect();
    bases.sort_unstable();
    bases.dedup();
    let mut out = json!({
        "url": url,
        "note": "Send the API call here instead of to the provider: Akhrot adds the credential. The path is relative to the service's base URL.",
    });
    if bases.len() > 1 {
        out["serviceHeader"] = json!("X-Akhrot-Service");
        if let Some(s) = service {
            out["headers"] = json!({ "X-Akhrot-Service": s.code });
        }
    }
    out
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
pub fn example(p: &Provider, s: &Service, e: &Example, known: &BTreeMap<String, String>) -> Value {
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
    let mut out = json!({ "title": e.title, "method": method, "url": url, "curl": curl });
    if let Some(body) = &e.body {
        out["body"] = json!(fill_body(body, known));
    }
    out
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
