//! Provider quirks: the behaviour catalog data cannot say, each one here by name.
//!
//! An entry lists its quirks (`quirks = ["slack_ok_false"]`); an unknown name is refused when
//! the catalog loads. Every quirk acts through one of the hooks below, which the OAuth client
//! ([`crate::oauth`]) and the broker call at fixed points:
//!
//! | quirk | hook | what it does |
//! |---|---|---|
//! | `slack_ok_false` | [`refused_with_200`] | an answer `{"ok": false, …}` with HTTP 200 is a refusal (token exchange, refresh, revocation) |
//! | `reddit_installed_app` | [`empty_secret_basic`] | a client without a secret still authenticates with HTTP Basic: the client id and an empty password |
//! | `jira_accessible_resources` | [`after_exchange`] | after the code exchange, the site's cloud id is read from `resources_url`, since Atlassian APIs are addressed by it |
//!
//! What data can say is data: a separate refresh endpoint is `refresh_url`, Notion's Basic +
//! JSON requests are `token_auth`/`token_request`/`revoke_request`, Microsoft's tenant and a
//! GitLab server are client settings, Twitch's hourly validation is `[validate]`. Names that
//! were quirks once are refused with what replaces them (see `REMOVED_QUIRKS` in the catalog).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::SecretString;
use crate::catalog::Provider;
use crate::oauth::{OAuthError, OAuthHttp};

/// Provider behaviour that data alone cannot describe; each is handled by a hook in this
/// module (see the table above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quirk {
    /// Refusals arrive as `ok: false` with HTTP 200 (Slack's Web API methods).
    SlackOkFalse,
    /// Reddit's "installed apps" have no secret and still use HTTP Basic with an empty password.
    RedditInstalledApp,
    /// After the exchange, fetch the cloud id from `accessible-resources` (Atlassian).
    JiraAccessibleResources,
}

impl Quirk {
    /// Every quirk, for the test that each one changes behaviour.
    pub const ALL: [Quirk; 3] = [
        Quirk::SlackOkFalse,
        Quirk::RedditInstalledApp,
        Quirk::JiraAccessibleResources,
    ];
}

/// `slack_ok_false`: whether a 2xx answer's body is in fact a refusal.
pub fn refused_with_200(p: &Provider, body: &Value) -> bool {
    p.has_quirk(Quirk::SlackOkFalse) && body.get("ok") == Some(&Value::Bool(false))
}

/// `reddit_installed_app`: whether a client without a secret still sends HTTP Basic, with an
/// empty password (https://github.com/reddit-archive/reddit/wiki/OAuth2: "installed app" types
/// have no secret; "the password is an empty string").
pub fn empty_secret_basic(p: &Provider) -> bool {
    p.has_quirk(Quirk::RedditInstalledApp)
}

/// Whether [`after_exchange`] has anything to do for this provider.
pub fn wants_after_exchange(p: &Provider) -> bool {
    p.has_quirk(Quirk::JiraAccessibleResources) && p.resources_url.is_some()
}

/// `jira_accessible_resources`: the connection's public values read after the code exchange
/// (`cloudId`, `siteUrl` of the first site the grant covers), which the services' base URLs
/// name (https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/: "Get the
/// cloudid for your site" from `accessible-resources`).
pub async fn after_exchange(
    p: &Provider,
    http: &OAuthHttp,
    access_token: &SecretString,
) -> Result<BTreeMap<String, String>, OAuthError> {
    let mut public = BTreeMap::new();
    if !wants_after_exchange(p) {
        return Ok(public);
    }
    let Some(resources) = &p.resources_url else {
        return Ok(public);
    };
    let v = http.get_json(resources, access_token, None).await?;
    if let Some(id) = crate::oauth::lookup(&v, "0.id").and_then(Value::as_str) {
        public.insert("cloudId".to_owned(), id.to_owned());
    }
    if let Some(url) = crate::oauth::lookup(&v, "0.url").and_then(Value::as_str) {
        public.insert("siteUrl".to_owned(), url.to_owned());
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    /// A provider like `code`'s built-in entry, with exactly the quirks given.
    fn with(code: &str, quirks: &[Quirk]) -> Provider {
        let c = Catalog::builtin().unwrap();
        let mut p = (**c.get(code).unwrap()).clone();
        p.quirks = quirks.to_vec();
        p
    }

    /// Each quirk changes what its hook answers, and nothing else decides it: a provider
    /// without the quirk gets the standard behaviour. The `match` has no wildcard, so a new
    /// quirk does not compile until it is shown here.
    #[test]
    fn every_quirk_changes_what_its_hook_does() {
        for q in Quirk::ALL {
            match q {
                Quirk::SlackOkFalse => {
                    let body = serde_json::json!({"ok": false, "error": "invalid_auth"});
                    assert!(refused_with_200(&with("slack", &[q]), &body));
                    assert!(!refused_with_200(&with("slack", &[]), &body));
                }
                Quirk::RedditInstalledApp => {
                    assert!(empty_secret_basic(&with("reddit", &[q])));
                    assert!(!empty_secret_basic(&with("reddit", &[])));
                }
                Quirk::JiraAccessibleResources => {
                    assert!(wants_after_exchange(&with("jira", &[q])));
                    assert!(!wants_after_exchange(&with("jira", &[])));
                }
            }
        }
    }

    #[test]
    fn the_builtin_catalog_uses_each_quirk_where_its_provider_needs_it() {
        let c = Catalog::builtin().unwrap();
        let mut users: Vec<(&str, Vec<Quirk>)> = c
            .iter()
            .filter(|p| !p.quirks.is_empty())
            .map(|p| (p.code.as_str(), p.quirks.clone()))
            .collect();
        users.sort_by_key(|(code, _)| *code);
        assert_eq!(
            users,
            vec![
                ("jira", vec![Quirk::JiraAccessibleResources]),
                ("reddit", vec![Quirk::RedditInstalledApp]),
                ("slack", vec![Quirk::SlackOkFalse]),
            ]
        );
    }
}
