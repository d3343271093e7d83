//! Driving Akhrot's OAuth sessions end to end: an agent starts a session, a scripted person
//! ([`Browser`]) signs in at the real authorization server ([`Oidc`]) and consents, and the
//! browser opens Akhrot's loopback callback.

use serde_json::{Value, json};

use crate::{Browser, Dirs, Oidc, Server};

impl Server {
    /// Starts an OAuth session for `provider` as the agent with `key`; returns (session id,
    /// authorize URL). The session must be answered `pending`.
    pub fn oauth_start(&self, key: &str, provider: &str) -> (String, String) {
        let (status, v) = self.post("/oauth/sessions", Some(key), &json!({"provider": provider}));
        assert_eq!(status, 200, "{v}");
        let d = &v["data"];
        assert_eq!(d["status"], "pending", "{v}");
        (
            d["sessionId"].as_str().unwrap().to_owned(),
            d["url"].as_str().unwrap().to_owned(),
        )
    }

    /// A person in a fresh browser follows `authorize_url`, signs in as `login` and consents (or
    /// cancels when `deny`); returns the callback URL the browser is about to open.
    pub fn oauth_consent(&self, authorize_url: &str, login: &str, deny: bool) -> String {
        Browser::new().authorize(
            authorize_url,
            login,
            deny,
            &format!("{}/oauth/callback", self.base),
        )
    }

    /// The browser opening Akhrot's callback URL: (status, the page's text; empty when the
    /// answer is JSON).
    pub fn oauth_deliver(&self, callback_url: &str) -> (u16, String) {
        let path = callback_url.strip_prefix(&self.base).unwrap();
        let (status, v) = self.get(path, None);
        (status, v.as_str().map(str::to_owned).unwrap_or_default())
    }

    /// The whole flow: starts a session as the agent with `key`, signs in as `login` and opens
    /// the callback; returns (session id, callback status, callback page).
    pub fn oauth_connect(&self, key: &str, provider: &str, login: &str) -> (String, u16, String) {
        let (id, url) = self.oauth_start(key, provider);
        let cb = self.oauth_consent(&url, login, false);
        let (status, page) = self.oauth_deliver(&cb);
        (id, status, page)
    }

    /// A session as the agent with `key` sees it (`GET /oauth/sessions/{id}`, must be 200).
    pub fn oauth_session(&self, key: &str, id: &str) -> Value {
        let (status, v) = self.get(&format!("/oauth/sessions/{id}"), Some(key));
        assert_eq!(status, 200, "{v}");
        v["data"].clone()
    }

    /// Starts an OAuth session as the person (`POST /admin/sessions`, what `akhrot connect`, the
    /// web UI and the desktop app do), under label `account` if given; returns (session id,
    /// authorize URL). The person's session may replace a stored connection.
    pub fn oauth_start_as_person(&self, provider: &str, account: Option<&str>) -> (String, String) {
        let mut body = json!({"provider": provider});
        if let Some(a) = account {
            body["account"] = json!(a);
        }
        let d = self.admin_post("/admin/sessions", &body);
        assert_eq!(d["status"], "pending", "{d}");
        (
            d["sessionId"].as_str().unwrap().to_owned(),
            d["url"].as_str().unwrap().to_owned(),
        )
    }

    /// The whole flow as the person: starts a session (label `account`, if given), signs in as
    /// `login` and opens the callback; returns (session id, callback status, callback page).
    pub fn oauth_connect_as_person(
        &self,
        provider: &str,
        account: Option<&str>,
        login: &str,
    ) -> (String, u16, String) {
        let (id, url) = self.oauth_start_as_person(provider, account);
        let cb = self.oauth_consent(&url, login, false);
        let (status, page) = self.oauth_deliver(&cb);
        (id, status, page)
    }

    /// Plays a stand-in provider's redirect back to the loopback callback: `query` (`code=…` or
    /// `error=…&error_description=…`) with the state of the session whose authorize URL is
    /// `authorize_url`; returns (status, the page's text, or the JSON answer as text).
    pub fn oauth_redirect(&self, authorize_url: &str, query: &str) -> (u16, String) {
        let state = crate::param(authorize_url, "state").unwrap();
        let (status, v) = self.get(&format!("/oauth/callback?{query}&state={state}"), None);
        (
            status,
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
        )
    }

    /// Registers OAuth client `basic-client` (client_secret_basic, a client of `Oidc`) for
    /// provider `idp`.
    pub fn add_basic_client(&self) {
        self.admin_post(
            "/admin/clients",
            &json!({"provider": "idp", "clientId": "basic-client", "clientSecret": "basic-secret"}),
        );
    }
}

/// A server with provider `idp` at a real authorization server, and agent `agent` (allowed
/// everything) whose OAuth sessions the test drives.
pub struct OauthEnv {
    pub oidc: Oidc,
    pub s: Server,
    pub key: String,
    /// Dropped last, after the server has stopped.
    pub dirs: Dirs,
}

impl OauthEnv {
    /// `s` runs in `dirs` with provider `idp` at `oidc` (see [`Oidc::provider_toml`]); creates
    /// the agent key. Register an OAuth client next (e.g. [`Server::add_basic_client`]).
    pub fn new(oidc: Oidc, s: Server, dirs: Dirs) -> Self {
        let key = s.create_key("agent", &["*"]);
        Self { oidc, s, key, dirs }
    }

    /// [`OauthEnv::new`] with client `basic-client` registered.
    pub fn with_basic_client(oidc: Oidc, s: Server, dirs: Dirs) -> Self {
        let e = Self::new(oidc, s, dirs);
        e.s.add_basic_client();
        e
    }

    /// Starts a session for `idp`; returns (session id, authorize URL).
    pub fn start(&self) -> (String, String) {
        self.s.oauth_start(&self.key, "idp")
    }

    /// See [`Server::oauth_consent`].
    pub fn consent(&self, url: &str, login: &str, deny: bool) -> String {
        self.s.oauth_consent(url, login, deny)
    }

    /// See [`Server::oauth_deliver`].
    pub fn deliver(&self, callback_url: &str) -> (u16, String) {
        self.s.oauth_deliver(callback_url)
    }

    /// Connects `idp` as `login`; returns (session id, callback status, callback page).
    pub fn connect(&self, login: &str) -> (String, u16, String) {
        self.s.oauth_connect(&self.key, "idp", login)
    }

    /// The person connects (or reconnects) `idp` as `login`, under label `account` if given;
    /// returns (session id, callback status, callback page).
    pub fn connect_as_person(&self, login: &str, account: Option<&str>) -> (String, u16, String) {
        self.s.oauth_connect_as_person("idp", account, login)
    }

    /// The agent's view of session `id`.
    pub fn session(&self, id: &str) -> Value {
        self.s.oauth_session(&self.key, id)
    }

    /// `POST /tokens/fetch` for `idp` as the agent.
    pub fn fetch(&self) -> (u16, Value) {
        self.s.post(
            "/tokens/fetch",
            Some(&self.key),
            &json!({"provider": "idp"}),
        )
    }

    /// A fetched access token (the fetch must succeed).
    pub fn token(&self) -> String {
        let (status, v) = self.fetch();
        assert_eq!(status, 200, "{v}");
        v["data"]["accessToken"].as_str().unwrap().to_owned()
    }
}
