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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Redirect {
    #[default]
    Loopback,
    DeepLink,
}

/// Provider behaviour that data alone cannot describe; each is handled in code by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quirk {
    /// Send `Accept: application/json`; errors arrive with HTTP 200.
    GithubAcceptJson,
    /// Errors arrive as `ok: false` with HTTP 200.
    SlackOkFalse,
    /// A descriptive User-Agent is required.
    RedditUserAgent,
    /// After the exchange, fetch the cloud id from `accessible-resources`.
    JiraAccessibleResources,
    /// Token endpoint takes HTTP Basic auth and a JSON body.
    NotionBasicJson,
    /// Refresh goes to a separate endpoint.
    FigmaRefreshEndpoint,
    /// URLs contain the tenant (`common` by default).
    MicrosoftTenant,
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
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    #[serde(default)]
    pub token_paths: TokenPaths,
    pub validate: Option<Validate>,

    #[serde(default)]
    pub fields: Vec<Field>,
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

    /// Checks what serde cannot: required keys per auth type, URL schemes, field names.
    fn validate(&self) -> Result<(), String> {
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
        for (what, url) in self.urls() {
            check_url(url).map_err(|e| format!("{what}: {e}"))?;
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

fn to_provider(code: &str, value: toml::Value, origin: Origin) -> Result<Provider, String> {
    let mut p: Provider = value
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_string())?;
    p.code = code.to_owned();
    p.origin = origin;
    p.validate()?;
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
            for (what, url) in p.urls() {
                assert!(url.starts_with("https://"), "{}.{what} = {url}", p.code);
            }
        }
    }
}
