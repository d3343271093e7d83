//! Providers as data: the built-in catalog (`catalog/providers.toml`, compiled in) plus the
//! user's `<config-dir>/providers.d/*.toml`, in the same schema.
//!
//! A `providers.d` entry whose code is already known is merged over it key by key (tables
//! merge, other values replace), so `[providers.gitlab] authorize_url = "…"` is enough to point
//! GitLab at a self-hosted instance. A new code must be a complete entry. A malformed file or
//! entry is reported with its path and line, and everything else still loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The built-in catalog, as shipped.
pub const BUILTIN_TOML: &str = include_str!("../catalog/providers.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Oauth2,
    ApiKey,
    Mtproto,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Oauth2 => "oauth2",
            AuthType::ApiKey => "api_key",
            AuthType::Mtproto => "mtproto",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenRequest {
    #[default]
    Form,
    Json,
}

/// The shape of the request that revokes a token at `revoke_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RevokeRequest {
    /// RFC 7009: a form body `token` + `token_type_hint`, the client authenticated per
    /// `token_auth`.
    #[default]
    Form,
    /// A JSON body `{"token": …}`, the client authenticated per `token_auth` (Notion).
    Json,
    /// The token itself as `Authorization: Bearer`, no body and no client credentials
    /// (Dropbox, Linear, Slack).
    Bearer,
}

/// Which of a connection's tokens the revocation request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeToken {
    /// The refresh token when the connection holds one (revoking the grant), else the access
    /// token.
    RefreshToken,
    /// The access token.
    AccessToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Redirect {
    #[default]
    Loopback,
    DeepLink,
}

pub use crate::quirks::Quirk;

/// What a client setting holds, and so how its value is checked and filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    /// A plain name: 1-100 letters, digits, `.`, `-`, `_` (a tenant id or domain, a region).
    #[default]
    Name,
    /// Where a server lives: `https://host[:port]` (a bare host means https), or `http://` on
    /// a loopback host. Filled in as `scheme://host[:port]`, without a trailing slash.
    Origin,
}

/// A value the person sets with a provider's OAuth client (`akhrot clients set <code>
/// --set name=value`, the web UI's client form). It fills `{name}` in the entry's URLs: the
/// OAuth endpoints, the services' base URLs, and so the proxy's allow-list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    pub name: String,
    pub label: String,
    pub hint: Option<String>,
    /// The value when the person set none. Without one, the provider cannot connect until
    /// the setting is set.
    pub default: Option<String>,
    #[serde(default)]
    pub kind: SettingKind,
}

impl Setting {
    /// Checks a value the person gave and returns it as it is stored and filled in.
    pub fn check(&self, value: &str) -> Result<String, String> {
        let v = value.trim();
        match self.kind {
            SettingKind::Name => {
                let ok = (1..=100).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                    && v != "."
                    && v != "..";
                if ok {
                    Ok(v.to_owned())
                } else {
                    Err(format!(
                        "`{}` must be 1-100 letters, digits, `.`, `-` or `_`",
                        self.name
                    ))
                }
            }
            SettingKind::Origin => check_origin(v).map_err(|e| format!("`{}`: {e}", self.name)),
        }
    }
}

/// `host`, `host:port`, `https://host[:port]` or `http://<loopback>[:port]`, as an origin.
fn check_origin(v: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`{}` is not a server address: give a host (`gitlab.example.com`), `https://host[:port]`, or `http://127.0.0.1:<port>` for a server on this machine",
            crate::text::printable(v)
        )
    };
    if v.is_empty() || v.len() > 300 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let with_scheme = if v.contains("://") {
        v.to_owned()
    } else {
        format!("https://{v}")
    };
    let u = url::Url::parse(&with_scheme).map_err(|_| bad())?;
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    if !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || !matches!(u.path(), "" | "/")
    {
        return Err(format!(
            "{}; a path, query or user name is not part of it",
            bad()
        ));
    }
    let origin = u.origin().ascii_serialization();
    match u.scheme() {
        "https" => Ok(origin),
        "http" => check_url(&format!("{origin}/"))
            .map(|_| origin)
            .map_err(|_| {
                format!(
                    "`{host}` is reached over plain http://, which is accepted only for a loopback host; use https://"
                )
            }),
        _ => Err(bad()),
    }
}

/// Where the token fields sit in a non-standard token response (dotted paths).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPaths {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<String>,
    pub scope: Option<String>,
    pub token_type: Option<String>,
}

/// A token validation endpoint the provider requires apps to call (Twitch's `/oauth2/validate`):
/// the broker calls it with each new token, at start for every stored connection, and every
/// `every` seconds after; a `401` answer marks the connection `needs_reconnect`. When the entry
/// has no `userinfo_url`, the answer also names the account of a new connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    pub url: String,
    /// Seconds between validations of one connection.
    #[serde(default = "hourly")]
    pub every: u64,
    /// The `Authorization` scheme the endpoint documents (`Authorization: <scheme> <token>`).
    #[serde(default = "bearer")]
    pub scheme: String,
}

fn hourly() -> u64 {
    3600
}
fn bearer() -> String {
    "Bearer".into()
}

/// One value an API-key or MTProto connection holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    pub label: String,
    #[serde(default = "yes")]
    pub secret: bool,
    #[serde(default)]
    pub token: bool,
    #[serde(default)]
    pub optional: bool,
    pub hint: Option<String>,
    /// The value an optional field takes when none is given.
    pub default: Option<String>,
    /// The values a non-secret field may take, each with the text it puts into `{name}`
    /// placeholders (Mailgun's `region`: `eu` → `api.eu.mailgun.net`). Empty: any value, put in
    /// as it is.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// How a credential is placed on an API request. Templates: `{accessToken}`, `{fieldName}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    pub basic: Option<[String; 2]>,
    pub digest: Option<[String; 2]>,
}

impl Inject {
    /// The headers to send; a provider that names no placement at all uses a Bearer header.
    pub fn effective_headers(&self) -> BTreeMap<String, String> {
        if self.headers.is_empty()
            && self.query.is_empty()
            && self.basic.is_none()
            && self.digest.is_none()
        {
            BTreeMap::from([("Authorization".into(), "Bearer {accessToken}".into())])
        } else {
            self.headers.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub title: String,
    pub method: String,
    pub path: String,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub code: String,
    pub name: String,
    pub base_url: Option<String>,
    pub docs_url: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub examples: Vec<Example>,
}

/// Where an entry came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origin {
    #[default]
    BuiltIn,
    /// Defined by a `providers.d` file.
    File(PathBuf),
    /// Built in, with keys overridden by a `providers.d` file.
    Overridden(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    #[serde(skip)]
    pub code: String,
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub auth: AuthType,
    #[serde(default)]
    pub description: String,
    pub docs_url: Option<String>,
    pub console_url: Option<String>,
    pub env_var: Option<String>,
    #[serde(default)]
    pub sources: Vec<String>,

    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    pub userinfo_url: Option<String>,
    /// Where refresh_token grants go, when not to `token_url` (Figma).
    pub refresh_url: Option<String>,
    /// The shape of the revocation request at `revoke_url`.
    #[serde(default)]
    pub revoke_request: RevokeRequest,
    /// Which token is revoked; by default the refresh token (else the access token) for
    /// `form`, the access token for `json` and `bearer`.
    pub revoke_token: Option<RevokeToken>,
    /// When set, the identity request to `userinfo_url` is a POST with this JSON body (a
    /// GraphQL query, say); `account_field` then names a dotted path such as
    /// `data.viewer.email`.
    pub userinfo_body: Option<String>,
    pub account_field: Option<String>,
    /// Fetched with the new token after the exchange (quirk `jira_accessible_resources`).
    pub resources_url: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "space")]
    pub scope_separator: String,
    #[serde(default = "scope")]
    pub scope_param: String,
    #[serde(default)]
    pub token_auth: TokenAuth,
    #[serde(default)]
    pub token_request: TokenRequest,
    #[serde(default = "yes")]
    pub pkce: bool,
    #[serde(default = "yes")]
    pub refresh: bool,
    #[serde(default)]
    pub redirect: Redirect,
    #[serde(default)]
    pub quirks: Vec<Quirk>,
    /// What to tell the person when the provider's error names a known cause: an error code
    /// or text it contains → the hint (Microsoft's `AADSTS50194` → set the tenant).
    #[serde(default)]
    pub error_hints: BTreeMap<String, String>,
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    #[serde(default)]
    pub token_paths: TokenPaths,
    pub validate: Option<Validate>,

    #[serde(default)]
    pub fields: Vec<Field>,
    /// Values set with the OAuth client that fill `{name}` placeholders (see [`Setting`]).
    #[serde(default)]
    pub settings: Vec<Setting>,
    #[serde(default)]
    pub inject: Inject,
    #[serde(default)]
    pub services: Vec<Service>,
}

fn yes() -> bool {
    true
}
fn space() -> String {
    " ".into()
}
fn scope() -> String {
    "scope".into()
}

impl Provider {
    /// The field returned as `accessToken` (API-key and MTProto providers).
    pub fn token_field(&self) -> Option<&Field> {
        self.fields.iter().find(|f| f.token)
    }

    pub fn service(&self, code: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.code == code)
    }

    pub fn has_quirk(&self, q: Quirk) -> bool {
        self.quirks.contains(&q)
    }

    /// The settings' values: the person's choice (`chosen`, as stored with the OAuth client),
    /// else the setting's default. A setting with neither is left out.
    pub fn setting_values(&self, chosen: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        self.settings
            .iter()
            .filter_map(|s| {
                chosen
                    .get(&s.name)
                    .or(s.default.as_ref())
                    .map(|v| (s.name.clone(), v.clone()))
            })
            .collect()
    }

    /// Checks the settings the person gives with the OAuth client; returns them as stored.
    pub fn check_settings(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for (name, value) in given {
            let Some(s) = self.settings.iter().find(|s| &s.name == name) else {
                let known: Vec<&str> = self.settings.iter().map(|s| s.name.as_str()).collect();
                return Err(if known.is_empty() {
                    format!(
                        "{} has no client settings (`{}` is not one)",
                        self.name,
                        crate::text::printable(name)
                    )
                } else {
                    format!(
                        "{} has no client setting `{}`; its settings are: {}",
                        self.name,
                        crate::text::printable(name),
                        known.join(", ")
                    )
                });
            };
            if value.trim().is_empty() {
                continue;
            }
            out.insert(name.clone(), s.check(value)?);
        }
        Ok(out)
    }

    /// This entry with its client settings filled into every URL that may name one: the OAuth
    /// endpoints and the services' base and docs URLs. Other placeholders (a connection's
    /// values, like Jira's `{cloudId}`) stay for later. An OAuth endpoint left with a
    /// placeholder, or not a valid URL once filled, is an error saying what to set.
    pub fn resolve(&self, chosen: &BTreeMap<String, String>) -> Result<Provider, String> {
        if self.settings.is_empty() {
            return Ok(self.clone());
        }
        let values = self.setting_values(chosen);
        let keep = |n: &str| Ok::<_, std::convert::Infallible>(format!("{{{n}}}"));
        let fill = |u: &str| match crate::text::fill_with(u, &values, keep) {
            Ok(s) => s,
            Err(never) => match never {},
        };
        let mut p = self.clone();
        for u in p.oauth_urls_mut() {
            let filled = fill(u);
            if let Some(name) = crate::text::placeholders(&filled).first() {
                return Err(format!(
                    "{} needs the client setting `{name}`: set it with `akhrot clients set {} --set {name}=<value>`",
                    self.name, self.code
                ));
            }
            check_url(&filled)?;
            *u = filled;
        }
        for s in &mut p.services {
            for u in [&mut s.base_url, &mut s.docs_url].into_iter().flatten() {
                *u = fill(u);
            }
        }
        Ok(p)
    }

    /// The OAuth endpoints the provider is spoken to at (client settings may fill them).
    fn oauth_urls_mut(&mut self) -> Vec<&mut String> {
        let validate = self.validate.as_mut().map(|v| &mut v.url);
        [
            self.authorize_url.as_mut(),
            self.token_url.as_mut(),
            self.refresh_url.as_mut(),
            self.revoke_url.as_mut(),
            self.userinfo_url.as_mut(),
            self.resources_url.as_mut(),
            validate,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// What `{name}` placeholders in the services' base URLs, headers and credential
    /// placement are filled with, for one connection: its public values (a field with
    /// `values` gives the text its value stands for; an optional field left out gives its
    /// default) and the client settings.
    pub fn placeholder_values(
        &self,
        public: &BTreeMap<String, String>,
        settings: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut out = public.clone();
        for f in self.fields.iter().filter(|f| !f.secret) {
            let Some(v) = public.get(&f.name).or(f.default.as_ref()) else {
                continue;
            };
            let v = match f.values.get(v) {
                Some(text) => text.clone(),
                None if f.values.is_empty() => v.clone(),
                // A stored value the catalog no longer lists fills nothing.
                None => {
                    out.remove(&f.name);
                    continue;
                }
            };
            out.insert(f.name.clone(), v);
        }
        out.extend(self.setting_values(settings));
        out
    }

    /// `reason` with the entry's hint for the first error code it contains, if any.
    pub fn with_error_hint(&self, reason: String) -> String {
        match self
            .error_hints
            .iter()
            .find(|(code, _)| reason.contains(code.as_str()))
        {
            Some((_, hint)) => format!("{reason}. {hint}"),
            None => reason,
        }
    }

    /// Which token the revocation request carries (see [`Provider::revoke_token`]'s field).
    pub fn revoke_token_kind(&self) -> RevokeToken {
        self.revoke_token.unwrap_or(match self.revoke_request {
            RevokeRequest::Form => RevokeToken::RefreshToken,
            RevokeRequest::Json | RevokeRequest::Bearer => RevokeToken::AccessToken,
        })
    }

    /// Where refresh_token grants go: `refresh_url`, else `token_url`.
    pub fn refresh_endpoint(&self) -> Option<&str> {
        self.refresh_url.as_deref().or(self.token_url.as_deref())
    }

    /// Every URL in the entry, with what it is, for checks.
    pub fn urls(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        let top = [
            ("docs_url", &self.docs_url),
            ("console_url", &self.console_url),
            ("authorize_url", &self.authorize_url),
            ("token_url", &self.token_url),
            ("revoke_url", &self.revoke_url),
            ("userinfo_url", &self.userinfo_url),
            ("refresh_url", &self.refresh_url),
            ("resources_url", &self.resources_url),
        ];
        for (k, v) in top {
            if let Some(v) = v {
                out.push((k.to_string(), v.as_str()));
            }
        }
        if let Some(v) = &self.validate {
            out.push(("validate.url".into(), v.url.as_str()));
        }
        for s in &self.sources {
            out.push(("sources".into(), s.as_str()));
        }
        for s in &self.services {
            if let Some(u) = &s.base_url {
                out.push((format!("services.{}.base_url", s.code), u.as_str()));
            }
            if let Some(u) = &s.docs_url {
                out.push((format!("services.{}.docs_url", s.code), u.as_str()));
            }
        }
        out
    }

    /// Client settings and field values: names, defaults and value lists that can work.
    fn validate_settings(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for st in &self.settings {
            if !valid_field_name(&st.name) {
                return Err(format!(
                    "setting name `{}` must be camelCase letters and digits",
                    st.name
                ));
            }
            if !seen.insert(st.name.as_str()) || self.fields.iter().any(|f| f.name == st.name) {
                return Err(format!(
                    "setting `{}` is named twice (settings and fields share one namespace)",
                    st.name
                ));
            }
            if let Some(d) = &st.default {
                st.check(d).map_err(|e| format!("the default of {e}"))?;
            }
        }
        for f in &self.fields {
            if f.default.is_some() && !f.optional {
                return Err(format!(
                    "field `{}` has a default, so it must be `optional = true`",
                    f.name
                ));
            }
            if f.values.is_empty() {
                continue;
            }
            if f.secret {
                return Err(format!(
                    "field `{}` is secret, so it cannot have `values` (they fill URLs)",
                    f.name
                ));
            }
            if let Some(d) = &f.default
                && !f.values.contains_key(d)
            {
                return Err(format!(
                    "the default `{d}` of field `{}` is not one of its values",
                    f.name
                ));
            }
            for (k, text) in &f.values {
                let plain = |v: &str| {
                    !v.is_empty()
                        && v.len() <= 200
                        && v.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':')
                        })
                };
                if !plain(k) || !plain(text) {
                    return Err(format!(
                        "field `{}`: value `{k}` = `{text}` must be letters, digits, `.`, `-`, `_` or `:`",
                        f.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: required keys per auth type, URL schemes, field names.
    fn check_entry(&self) -> Result<(), String> {
        if !valid_code(&self.code) {
            return Err(format!(
                "provider code `{}` must be 1-64 lowercase letters, digits, `-` or `_`",
                self.code
            ));
        }
        match self.auth {
            AuthType::Oauth2 => {
                if self.authorize_url.is_none() || self.token_url.is_none() {
                    return Err("an oauth2 provider needs authorize_url and token_url".into());
                }
            }
            AuthType::ApiKey | AuthType::Mtproto => {
                if self.fields.is_empty() {
                    return Err(format!(
                        "an {} provider needs at least one [[fields]] entry",
                        self.auth.as_str()
                    ));
                }
                let tokens = self.fields.iter().filter(|f| f.token).count();
                if tokens != 1 {
                    return Err(format!(
                        "exactly one field must have token = true (found {tokens})"
                    ));
                }
                for f in &self.fields {
                    if !valid_field_name(&f.name) {
                        return Err(format!(
                            "field name `{}` must be camelCase letters and digits",
                            f.name
                        ));
                    }
                }
            }
        }
        self.validate_settings()?;
        // URLs are checked with each client setting filled (its default, else a sample).
        let sample: BTreeMap<String, String> = self
            .settings
            .iter()
            .map(|s| {
                let v = match (&s.default, s.kind) {
                    (Some(d), _) => d.clone(),
                    (None, SettingKind::Origin) => "https://example.com".into(),
                    (None, SettingKind::Name) => "sample".into(),
                };
                (s.name.clone(), v)
            })
            .collect();
        let keep = |n: &str| Ok::<_, std::convert::Infallible>(format!("{{{n}}}"));
        for (what, url) in self.urls() {
            let filled = match crate::text::fill_with(url, &sample, keep) {
                Ok(s) => s,
                Err(never) => match never {},
            };
            check_url(&filled).map_err(|e| format!("{what}: {e}"))?;
        }
        let mut endpoints = self.clone();
        for u in endpoints.oauth_urls_mut() {
            if let Some(name) = crate::text::placeholders(u)
                .into_iter()
                .find(|n| !sample.contains_key(n))
            {
                return Err(format!(
                    "`{u}` names `{{{name}}}`, which is not one of the entry's [[settings]]; only client settings can fill an OAuth endpoint"
                ));
            }
        }
        if self.revoke_request == RevokeRequest::Bearer
            && self.revoke_token == Some(RevokeToken::RefreshToken)
        {
            return Err(
                "revoke_request = \"bearer\" sends the access token; revoke_token = \"refresh_token\" cannot apply".into(),
            );
        }
        if let Some(body) = &self.userinfo_body {
            if self.userinfo_url.is_none() {
                return Err("userinfo_body needs a userinfo_url to POST it to".into());
            }
            serde_json::from_str::<serde_json::Value>(body)
                .map_err(|e| format!("userinfo_body is not JSON: {e}"))?;
        }
        if let Some(v) = &self.validate {
            if self.auth != AuthType::Oauth2 {
                return Err("validate is for oauth2 providers only".into());
            }
            if v.every == 0 {
                return Err("validate.every must be at least 1 (seconds)".into());
            }
            if v.scheme.is_empty()
                || !v
                    .scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!(
                    "validate.scheme `{}` must be one word of letters, digits or `-` (e.g. \"Bearer\", \"OAuth\")",
                    v.scheme
                ));
            }
        }
        for s in &self.services {
            if !valid_code(&s.code) {
                return Err(format!("service code `{}` is not a valid code", s.code));
            }
        }
        Ok(())
    }
}

fn valid_code(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_field_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase()) && b.all(|c| c.is_ascii_alphanumeric())
}

/// `https://` anywhere; `http://` only for loopback hosts. `{placeholders}` are allowed.
pub fn check_url(url: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix("https://") {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("`{url}` has no host"));
        }
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = if let Some(v6) = host_port.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            host_port.split(':').next().unwrap_or("")
        };
        let loopback = host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return Ok(());
        }
        return Err(format!(
            "`{url}` uses http:// for a non-loopback host; only https:// (or http:// on 127.0.0.1/localhost) is accepted"
        ));
    }
    Err(format!("`{url}` is not an https:// URL"))
}

/// A problem found while loading `providers.d`: the file, the line, and what is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogIssue {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for CatalogIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// The loaded catalog: built-in order first, then new codes from `providers.d` by file name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    providers: Vec<Arc<Provider>>,
    index: BTreeMap<String, usize>,
    pub issues: Vec<CatalogIssue>,
}

impl Catalog {
    /// Only the built-in catalog. Fails only if the shipped file is broken (a build defect).
    pub fn builtin() -> crate::Result<Self> {
        let mut c = Catalog::default();
        let (table, _) = parse_file(BUILTIN_TOML)
            .map_err(|(line, m)| crate::Error::Catalog(format!("built-in catalog:{line}: {m}")))?;
        for (code, value) in table {
            let p = to_provider(&code, value, Origin::BuiltIn)
                .map_err(|m| crate::Error::Catalog(format!("built-in catalog: {code}: {m}")))?;
            c.insert(p);
        }
        Ok(c)
    }

    /// The built-in catalog with `<dir>/*.toml` merged over it (files in name order).
    pub fn load(providers_d: &Path) -> crate::Result<Self> {
        let mut c = Self::builtin()?;
        let mut files: Vec<PathBuf> = match std::fs::read_dir(providers_d) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                c.issues.push(CatalogIssue {
                    path: providers_d.to_owned(),
                    line: None,
                    message: format!("cannot read the directory: {e}"),
                });
                Vec::new()
            }
        };
        files.sort();
        for f in files {
            c.overlay_file(&f);
        }
        Ok(c)
    }

    fn overlay_file(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.overlay_text(path, &text),
            Err(e) => self.issues.push(CatalogIssue {
                path: path.to_owned(),
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Merges one `providers.d` file's text over the catalog, as if read from `path`; problems
    /// go to [`Catalog::issues`]. The fuzz target `providers_toml` drives it.
    pub fn overlay_text(&mut self, path: &Path, text: &str) {
        let (table, _) = match parse_file(text) {
            Ok(t) => t,
            Err((line, message)) => {
                self.issues.push(CatalogIssue {
                    path: path.to_owned(),
                    line: Some(line),
                    message,
                });
                return;
            }
        };
        for (code, value) in table {
            let line = header_line(text, &code);
            let result = match self.index.get(&code) {
                Some(&i) => toml::Value::try_from(&*self.providers[i])
                    .map_err(|e| e.to_string())
                    .and_then(|mut base| {
                        merge(&mut base, value);
                        to_provider(&code, base, Origin::Overridden(path.to_owned()))
                    }),
                None => to_provider(&code, value, Origin::File(path.to_owned())),
            };
            match result {
                Ok(p) => self.insert(p),
                Err(message) => self.issues.push(CatalogIssue {
                    path: path.to_owned(),
                    line,
                    message: format!("providers.{code}: {message}"),
                }),
            }
        }
    }

    fn insert(&mut self, p: Provider) {
        let p = Arc::new(p);
        match self.index.get(&p.code) {
            Some(&i) => self.providers[i] = p,
            None => {
                self.index.insert(p.code.clone(), self.providers.len());
                self.providers.push(p);
            }
        }
    }

    pub fn get(&self, code: &str) -> Option<&Arc<Provider>> {
        self.index.get(code).map(|&i| &self.providers[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.iter()
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// Parses a catalog file into `code → entry`; on a syntax error, `(line, message)`.
fn parse_file(text: &str) -> Result<(toml::Table, ()), (usize, String)> {
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        (line, e.message().to_string())
    })?;
    let providers = match doc.remove("providers") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err((1, "`providers` must be a table".into())),
        None => toml::Table::new(),
    };
    if let Some(k) = doc.keys().next() {
        return Err((
            header_line_of(text, k).unwrap_or(1),
            format!("unknown top-level key `{k}`; entries go under [providers.<code>]"),
        ));
    }
    Ok((providers, ()))
}

/// Quirk names that were removed because catalog fields now say the same, with what replaces
/// each.
const REMOVED_QUIRKS: &[(&str, &str)] = &[
    (
        "notion_basic_json",
        "token_auth = \"client_secret_basic\", token_request = \"json\" and revoke_request = \"json\"",
    ),
    (
        "figma_refresh_endpoint",
        "refresh_url = \"https://api.figma.com/v1/oauth/refresh\"",
    ),
    (
        "microsoft_tenant",
        "a client setting: `{tenant}` in the URLs and a [[settings]] entry named `tenant`",
    ),
    (
        "github_accept_json",
        "nothing: every token request asks for JSON, and an HTTP 200 answer with an `error` and no token is an error for every provider",
    ),
    (
        "reddit_user_agent",
        "the quirk `reddit_installed_app` (an empty-password Basic login for clients without a secret); every request already has a descriptive User-Agent",
    ),
];

fn removed_quirk(value: &toml::Value) -> Option<String> {
    let quirks = value.get("quirks")?.as_array()?;
    quirks.iter().filter_map(toml::Value::as_str).find_map(|q| {
        REMOVED_QUIRKS
            .iter()
            .find(|(name, _)| *name == q)
            .map(|(name, instead)| {
                format!("quirk `{name}` was removed; the catalog says it with {instead}")
            })
    })
}

fn to_provider(code: &str, value: toml::Value, origin: Origin) -> Result<Provider, String> {
    if let Some(m) = removed_quirk(&value) {
        return Err(m);
    }
    let mut p: Provider = value
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_string())?;
    p.code = code.to_owned();
    p.origin = origin;
    p.check_entry()?;
    Ok(p)
}

/// Merges `over` into `base`: tables key by key, everything else replaced.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn header_line(text: &str, code: &str) -> Option<usize> {
    let quoted = format!("[providers.\"{code}\"");
    let plain = format!("[providers.{code}");
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            (l.starts_with(&plain) || l.starts_with(&quoted))
                && l[plain.len().min(l.len())..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == ']' || c == '.' || c == '"')
        })
        .map(|i| i + 1)
}

fn header_line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) || l.starts_with(&format!("[{key}"))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(check_url("https://x.example/a").is_ok());
        assert!(check_url("https://{sub}.example/a").is_ok());
        assert!(check_url("http://127.0.0.1:9/a").is_ok());
        assert!(check_url("http://localhost/a").is_ok());
        assert!(check_url("http://[::1]:8/a").is_ok());
        assert!(check_url("http://idp.example.com/a").is_err());
        assert!(check_url("http://127.0.0.1.evil.example/a").is_err());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("https://").is_err());
    }

    fn twitch_like(validate: &str) -> Result<Provider, String> {
        let text = format!(
            "[providers.t]\nname = \"T\"\nauth = \"oauth2\"\nauthorize_url = \"https://t.example/a\"\ntoken_url = \"https://t.example/t\"\n{validate}"
        );
        let (mut table, _) = parse_file(&text).map_err(|(_, m)| m)?;
        to_provider("t", table.remove("t").unwrap(), Origin::BuiltIn)
    }

    #[test]
    fn validate_table_parses_with_defaults_and_refuses_mistakes() {
        let p = twitch_like("[providers.t.validate]\nurl = \"https://t.example/v\"\n").unwrap();
        let v = p.validate.as_ref().unwrap();
        assert_eq!(
            (v.url.as_str(), v.every, v.scheme.as_str()),
            ("https://t.example/v", 3600, "Bearer")
        );
        assert!(
            p.urls()
                .iter()
                .any(|(k, u)| k == "validate.url" && *u == "https://t.example/v")
        );
        let p = twitch_like(
            "[providers.t.validate]\nurl = \"http://127.0.0.1:9/v\"\nevery = 1\nscheme = \"OAuth\"\n",
        )
        .unwrap();
        assert_eq!(p.validate.as_ref().unwrap().every, 1);
        assert!(twitch_like("").unwrap().validate.is_none());
        for (bad, says) in [
            ("[providers.t.validate]\nevery = 5\n", "url"),
            (
                "[providers.t.validate]\nurl = \"http://t.example/v\"\n",
                "validate.url",
            ),
            (
                "[providers.t.validate]\nurl = \"https://t.example/v\"\nevery = 0\n",
                "every",
            ),
            (
                "[providers.t.validate]\nurl = \"https://t.example/v\"\nevery = -1\n",
                "u64",
            ),
            (
                "[providers.t.validate]\nurl = \"https://t.example/v\"\nscheme = \"OAuth x\"\n",
                "scheme",
            ),
            (
                "[providers.t.validate]\nurl = \"https://t.example/v\"\nprefix = \"OAuth\"\n",
                "prefix",
            ),
        ] {
            let e = twitch_like(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn twitch_validates_with_the_documented_prefix_and_names_accounts_from_it() {
        let c = Catalog::builtin().unwrap();
        let t = c.get("twitch").unwrap();
        let v = t.validate.as_ref().unwrap();
        assert_eq!(v.url, "https://id.twitch.tv/oauth2/validate");
        assert_eq!((v.every, v.scheme.as_str()), (3600, "OAuth"));
        assert!(
            t.userinfo_url.is_none(),
            "the validate answer is the identity document"
        );
        assert_eq!(t.account_field.as_deref(), Some("login"));
        let mut c = c.clone();
        c.overlay_text(
            Path::new("50-twitch.toml"),
            "[providers.twitch.validate]\nevery = 1\n",
        );
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        let v = c.get("twitch").unwrap().validate.clone().unwrap();
        assert_eq!(
            (v.every, v.scheme.as_str()),
            (1, "OAuth"),
            "merged key by key"
        );
    }

    #[test]
    fn merge_overrides_keys_and_keeps_the_rest() {
        let mut base: toml::Value = toml::from_str("a = 1\n[t]\nx = 1\ny = 2\n").unwrap();
        let over: toml::Value = toml::from_str("[t]\ny = 3\n").unwrap();
        merge(&mut base, over);
        assert_eq!(base["a"].as_integer(), Some(1));
        assert_eq!(base["t"]["x"].as_integer(), Some(1));
        assert_eq!(base["t"]["y"].as_integer(), Some(3));
    }
}

#[cfg(test)]
mod builtin_tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_completely() {
        let c = Catalog::builtin().expect("built-in catalog loads");
        assert_eq!(c.len(), 37);
        for p in c.iter() {
            assert!(!p.services.is_empty(), "{} has services", p.code);
            // With the client settings at their defaults, every URL is https.
            let p = p.resolve(&BTreeMap::new()).expect("defaults resolve");
            let mut mailgun = BTreeMap::new();
            mailgun.insert("region".to_owned(), "eu".to_owned());
            let known = p.placeholder_values(&mailgun, &BTreeMap::new());
            for (what, url) in p.urls() {
                let url = crate::text::fill_with(url, &known, |n| Ok::<_, ()>(format!("{{{n}}}")))
                    .unwrap();
                assert!(url.starts_with("https://"), "{}.{what} = {url}", p.code);
            }
        }
    }

    fn provider(toml: &str) -> Result<Provider, String> {
        let (t, _) = parse_file(toml).map_err(|(_, m)| m)?;
        let (code, v) = t.into_iter().next().expect("one entry");
        to_provider(&code, v, Origin::BuiltIn)
    }

    #[test]
    fn client_settings_fill_every_endpoint_and_service() {
        let c = Catalog::builtin().unwrap();
        let ms = c.get("microsoft").unwrap();
        let chosen = BTreeMap::from([("tenant".to_owned(), "contoso.onmicrosoft.com".to_owned())]);
        let r = ms.resolve(&chosen).unwrap();
        assert_eq!(
            r.authorize_url.as_deref(),
            Some("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize")
        );
        assert_eq!(
            r.token_url.as_deref(),
            Some("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")
        );
        let d = ms.resolve(&BTreeMap::new()).unwrap();
        assert!(d.token_url.unwrap().contains("/common/"));

        let gl = c.get("gitlab").unwrap();
        let host = gl
            .check_settings(&BTreeMap::from([(
                "host".to_owned(),
                "gitlab.example.com".to_owned(),
            )]))
            .unwrap();
        assert_eq!(host["host"], "https://gitlab.example.com");
        let r = gl.resolve(&host).unwrap();
        for u in [
            &r.authorize_url,
            &r.token_url,
            &r.revoke_url,
            &r.userinfo_url,
        ] {
            assert!(
                u.as_deref()
                    .unwrap()
                    .starts_with("https://gitlab.example.com/"),
                "{u:?}"
            );
        }
        for s in &r.services {
            assert_eq!(
                s.base_url.as_deref(),
                Some("https://gitlab.example.com/api/v4")
            );
        }
        assert_eq!(
            gl.resolve(&BTreeMap::new()).unwrap().token_url.as_deref(),
            Some("https://gitlab.com/oauth/token")
        );
    }

    #[test]
    fn client_settings_are_checked_by_kind() {
        let c = Catalog::builtin().unwrap();
        let gl = c.get("gitlab").unwrap();
        let one = |v: &str| BTreeMap::from([("host".to_owned(), v.to_owned())]);
        assert_eq!(
            gl.check_settings(&one("http://127.0.0.1:8929")).unwrap()["host"],
            "http://127.0.0.1:8929"
        );
        assert_eq!(
            gl.check_settings(&one("https://git.example.com:8443/"))
                .unwrap()["host"],
            "https://git.example.com:8443"
        );
        for bad in [
            "http://gitlab.example.com",
            "https://gitlab.example.com/path",
            "https://user@gitlab.example.com",
            "https://gitlab.example.com/?q=1",
            "ftp://gitlab.example.com",
            "gitlab example",
            "https://",
        ] {
            assert!(gl.check_settings(&one(bad)).is_err(), "{bad}");
        }
        let ms = c.get("microsoft").unwrap();
        let t = |v: &str| BTreeMap::from([("tenant".to_owned(), v.to_owned())]);
        assert!(ms.check_settings(&t("organizations")).is_ok());
        assert!(
            ms.check_settings(&t("72f988bf-86f1-41af-91ab-2d7cd011db47"))
                .is_ok()
        );
        for bad in ["a/b", "..", "evil.example/x", "a b", "x?y=1"] {
            assert!(ms.check_settings(&t(bad)).is_err(), "{bad}");
        }
        let e = ms.check_settings(&one("x")).unwrap_err();
        assert!(
            e.contains("no client setting `host`") && e.contains("tenant"),
            "{e}"
        );
        let gh = c.get("github").unwrap();
        assert!(
            gh.check_settings(&t("x"))
                .unwrap_err()
                .contains("has no client settings")
        );
    }

    #[test]
    fn a_field_with_values_fills_the_text_its_value_stands_for() {
        let c = Catalog::builtin().unwrap();
        let mg = c.get("mailgun").unwrap();
        let none = BTreeMap::new();
        let eu = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
        assert_eq!(
            mg.placeholder_values(&none, &none)["region"],
            "api.mailgun.net"
        );
        assert_eq!(
            mg.placeholder_values(&eu, &none)["region"],
            "api.eu.mailgun.net"
        );
        let gone = BTreeMap::from([("region".to_owned(), "mars".to_owned())]);
        assert!(!mg.placeholder_values(&gone, &none).contains_key("region"));
    }

    #[test]
    fn settings_and_values_that_cannot_work_are_refused_at_load() {
        let base = "[providers.x]\nname = \"X\"\nauth = \"oauth2\"\n";
        let urls = "authorize_url = \"https://x.example/a\"\ntoken_url = \"https://x.example/t\"\n";
        // An OAuth endpoint may only name a client setting.
        let e = provider(&format!(
            "{base}authorize_url = \"https://{{sub}}.example/a\"\ntoken_url = \"https://x.example/t\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("not one of the entry's [[settings]]"), "{e}");
        // A setting whose default is not valid for its kind.
        let e = provider(&format!(
            "{base}{urls}[[providers.x.settings]]\nname = \"host\"\nlabel = \"H\"\nkind = \"origin\"\ndefault = \"http://x.example\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("default"), "{e}");
        // An origin setting makes a URL that starts with the placeholder valid.
        let ok = provider(&format!(
            "{base}authorize_url = \"{{host}}/a\"\ntoken_url = \"{{host}}/t\"\n[[providers.x.settings]]\nname = \"host\"\nlabel = \"H\"\nkind = \"origin\"\n"
        ))
        .unwrap();
        let e = ok.resolve(&BTreeMap::new()).unwrap_err();
        assert!(e.contains("needs the client setting `host`"), "{e}");
        let key = "[providers.k]\nname = \"K\"\nauth = \"api_key\"\n[[providers.k.fields]]\nname = \"key\"\nlabel = \"Key\"\ntoken = true\n";
        let e = provider(&format!(
            "{key}[[providers.k.fields]]\nname = \"region\"\nlabel = \"R\"\nsecret = false\noptional = true\ndefault = \"xx\"\nvalues = {{ us = \"a.example\" }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("not one of its values"), "{e}");
        let e = provider(&format!(
            "{key}[[providers.k.fields]]\nname = \"region\"\nlabel = \"R\"\nvalues = {{ us = \"a.example\" }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("secret"), "{e}");
        let e = provider(&format!(
            "{key}[[providers.k.fields]]\nname = \"region\"\nlabel = \"R\"\nsecret = false\nvalues = {{ us = \"a.example/evil\" }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("must be letters"), "{e}");
    }
}

#[cfg(test)]
mod revoke_and_refresh_tests {
    use super::*;

    fn overlay(text: &str) -> Catalog {
        let mut c = Catalog::builtin().expect("built-in catalog loads");
        c.overlay_text(Path::new("test.toml"), text);
        c
    }

    const MINIMAL: &str = "[providers.x]\nname = \"X\"\nauth = \"oauth2\"\nauthorize_url = \"https://x.example/a\"\ntoken_url = \"https://x.example/t\"\n";

    #[test]
    fn an_unknown_revoke_request_is_refused_by_name() {
        let c = overlay(&format!("{MINIMAL}revoke_request = \"header\"\n"));
        assert!(c.get("x").is_none());
        let m = &c.issues[0].message;
        assert!(
            m.contains("header")
                && m.contains("form")
                && m.contains("json")
                && m.contains("bearer"),
            "{m}"
        );
        let c = overlay(&format!("{MINIMAL}revoke_token = \"id_token\"\n"));
        assert!(c.get("x").is_none(), "{:?}", c.issues);
    }

    #[test]
    fn removed_quirks_are_refused_with_what_replaces_them() {
        for (quirk, replacement) in [
            ("notion_basic_json", "revoke_request = \"json\""),
            ("figma_refresh_endpoint", "refresh_url"),
            ("microsoft_tenant", "client setting"),
            ("github_accept_json", "every provider"),
            ("reddit_user_agent", "reddit_installed_app"),
        ] {
            let c = overlay(&format!("{MINIMAL}quirks = [\"{quirk}\"]\n"));
            assert!(c.get("x").is_none());
            let m = &c.issues[0].message;
            assert!(m.contains(quirk) && m.contains(replacement), "{m}");
            // Over a built-in entry too.
            let c = overlay(&format!("[providers.notion]\nquirks = [\"{quirk}\"]\n"));
            assert_eq!(c.issues.len(), 1, "{quirk}");
            assert!(c.get("notion").unwrap().quirks.is_empty());
        }
    }

    #[test]
    fn revoke_shapes_refresh_url_and_userinfo_body_load_and_check() {
        let c = overlay(&format!(
            "{MINIMAL}refresh_url = \"https://x.example/r\"\nrevoke_url = \"https://x.example/v\"\nrevoke_request = \"bearer\"\n\
             userinfo_url = \"https://x.example/graphql\"\nuserinfo_body = '{{\"query\":\"{{ viewer {{ id }} }}\"}}'\n"
        ));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        let x = c.get("x").unwrap();
        assert_eq!(x.refresh_endpoint(), Some("https://x.example/r"));
        assert!(x.urls().iter().any(|(k, _)| k == "refresh_url"));
        assert_eq!(x.revoke_token_kind(), RevokeToken::AccessToken);

        let c = overlay(&format!("{MINIMAL}refresh_url = \"http://x.example/r\"\n"));
        assert!(
            c.issues[0].message.contains("refresh_url"),
            "{:?}",
            c.issues
        );
        let c = overlay(&format!(
            "{MINIMAL}revoke_request = \"bearer\"\nrevoke_token = \"refresh_token\"\n"
        ));
        assert!(c.issues[0].message.contains("bearer"), "{:?}", c.issues);
        let c = overlay(&format!(
            "{MINIMAL}userinfo_url = \"https://x.example/u\"\nuserinfo_body = \"{{ viewer }}\"\n"
        ));
        assert!(c.issues[0].message.contains("not JSON"), "{:?}", c.issues);
        let c = overlay(&format!("{MINIMAL}userinfo_body = \"{{}}\"\n"));
        assert!(
            c.issues[0].message.contains("userinfo_url"),
            "{:?}",
            c.issues
        );
    }

    #[test]
    fn builtin_entries_say_their_revoke_shapes_and_refresh_endpoints() {
        let c = Catalog::builtin().unwrap();
        let get = |code: &str| c.get(code).unwrap().clone();
        let notion = get("notion");
        assert_eq!(notion.token_auth, TokenAuth::ClientSecretBasic);
        assert_eq!(notion.token_request, TokenRequest::Json);
        assert_eq!(notion.revoke_request, RevokeRequest::Json);
        for code in ["dropbox", "linear", "slack"] {
            assert_eq!(get(code).revoke_request, RevokeRequest::Bearer, "{code}");
        }
        assert_eq!(get("twitch").revoke_token_kind(), RevokeToken::AccessToken);
        assert_eq!(get("google").revoke_token_kind(), RevokeToken::RefreshToken);
        assert_eq!(
            get("figma").refresh_endpoint(),
            Some("https://api.figma.com/v1/oauth/refresh")
        );
        assert_eq!(
            get("google").refresh_endpoint(),
            Some("https://oauth2.googleapis.com/token")
        );
        let linear = get("linear");
        assert_eq!(linear.account_field.as_deref(), Some("data.viewer.email"));
        assert!(linear.userinfo_body.as_deref().unwrap().contains("viewer"));
        // No built-in OAuth entry turns refreshing off: GitHub-App user tokens rotate.
        assert!(
            c.iter()
                .filter(|p| p.auth == AuthType::Oauth2)
                .all(|p| p.refresh)
        );
    }
}
