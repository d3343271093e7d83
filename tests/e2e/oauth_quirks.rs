//! Provider quirks, each against a small local stand-in that answers the way that provider's
//! documentation says it does. Standard OAuth behaviour is tested against a real authorization
//! server (oidc-provider) in `oauth.rs`.
#![allow(clippy::unwrap_used)]

use akhrot_e2e::*;
use serde_json::{Value, json};

/// Points a built-in provider's endpoints at the stand-in (the rest of its entry stays).
fn override_endpoints(d: &Dirs, provider: &str, st: &StandIn, extra: &str) {
    write_provider_file(
        d,
        &format!("50-{provider}"),
        &format!(
            "[providers.{provider}]\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nuserinfo_url = \"{}\"\n{extra}",
            st.url("/authorize"),
            st.url("/token"),
            st.url("/user")
        ),
    );
}

fn set_client(s: &Server, provider: &str, secret: Option<&str>) {
    let mut body = json!({"provider": provider, "clientId": "client-123"});
    if let Some(sec) = secret {
        body["clientSecret"] = json!(sec);
    }
    s.admin_post("/admin/clients", &body);
}

/// [`serve`] with `provider`'s endpoints pointed at the stand-in `st` (and `extra` lines).
fn serve_at(
    d: &Dirs,
    provider: &str,
    st: &StandIn,
    extra: &str,
    secret: Option<&str>,
) -> (Server, String) {
    override_endpoints(d, provider, st, extra);
    serve(d, provider, secret)
}

/// A server with agent key `bot` and an OAuth client for `provider` (with `secret`, if any).
fn serve(d: &Dirs, provider: &str, secret: Option<&str>) -> (Server, String) {
    let (s, key) = bot_server(d);
    set_client(&s, provider, secret);
    (s, key)
}

/// A server in `d` with agent key `bot`, allowed every provider.
fn bot_server(d: &Dirs) -> (Server, String) {
    let s = Server::start(d);
    let key = s.create_key("bot", &["*"]);
    (s, key)
}

/// Plays the provider's redirect back to the loopback callback with `code`.
fn callback(s: &Server, url: &str, code: &str) -> (u16, String) {
    s.oauth_redirect(url, &format!("code={code}"))
}

#[test]
fn github_sends_accept_json_and_its_200_errors_fail_the_session() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" if r.body.contains("code=bad") => (
            200,
            "application/json",
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com"}"#.into(),
        ),
        "/token" => (200, "application/json", r#"{"access_token":"gho_standin","token_type":"bearer","scope":"repo,read:org"}"#.into()),
        "/user" => (200, "application/json", r#"{"login":"octocat","id":1}"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve_at(&d, "github", &st, "", Some("gh-secret"));

    let (id, url) = s.oauth_start(&key, "github");
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let (status, page) = callback(&s, &url, "bad");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("incorrect or expired"), "{page}");
    let v = s.oauth_session(&key, &id);
    assert_eq!(v["status"], "failed");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("bad_verification_code")
    );

    let (id, url) = s.oauth_start(&key, "github");
    let (status, page) = callback(&s, &url, "good");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("octocat") && !page.contains("gho_standin"),
        "{page}"
    );
    let v = s.oauth_session(&key, &id);
    assert_eq!(
        (v["status"].as_str(), v["account"].as_str()),
        (Some("completed"), Some("octocat"))
    );
    let token_reqs = st.requests_to("/token");
    assert!(
        token_reqs
            .iter()
            .all(|r| r.header("accept") == Some("application/json"))
    );
    assert!(
        token_reqs
            .iter()
            .all(|r| r.body.contains("client_secret=gh-secret")),
        "client_secret_post"
    );
    let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "github"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accessToken"], "gho_standin");
    assert_eq!(v["data"]["account"], "octocat");
    assert!(
        v["data"]["expiresAt"].is_null(),
        "GitHub OAuth-app tokens do not expire"
    );
}

#[test]
fn slack_user_token_from_authed_user_and_ok_false_errors() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" if r.body.contains("code=bad") => (200, "application/json", r#"{"ok":false,"error":"invalid_code"}"#.into()),
        "/token" => (
            200,
            "application/json",
            r#"{"ok":true,"app_id":"A1","authed_user":{"id":"U1","scope":"chat:write,channels:read","access_token":"xoxp-user-token","token_type":"user","refresh_token":"xoxe-1-r","expires_in":43200},"team":{"id":"T1","name":"Acme Corp"},"enterprise":null,"is_enterprise_install":false}"#.into(),
        ),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve_at(&d, "slack", &st, "", Some("slack-secret"));
    let (_, url) = s.oauth_start(&key, "slack");
    assert!(
        param(&url, "user_scope").unwrap().contains(','),
        "comma-separated user scopes: {url}"
    );
    assert!(param(&url, "scope").is_none());
    let (status, page) = callback(&s, &url, "bad");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("invalid_code"), "{page}");

    let (id, url) = s.oauth_start(&key, "slack");
    let (status, page) = callback(&s, &url, "ok");
    assert_eq!(status, 200, "{page}");
    assert_eq!(s.oauth_session(&key, &id)["account"], "Acme Corp");
    let (_, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "slack"}));
    let t = &v["data"];
    assert_eq!(t["accessToken"], "xoxp-user-token");
    assert!(t["expiresAt"].is_string());
    assert_eq!(t["scopes"], json!(["chat:write", "channels:read"]));
    let basic = st.requests_to("/token")[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    assert!(basic.starts_with("Basic "), "client_secret_basic: {basic}");
}

#[test]
fn notion_uses_basic_auth_and_a_json_body_and_names_the_workspace() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" => (
            200,
            "application/json",
            r#"{"access_token":"ntn_standin","token_type":"bearer","refresh_token":"nrt_1","bot_id":"b1","workspace_id":"w1","workspace_name":"Ada's Notes","workspace_icon":null,"owner":{"type":"user","user":{"id":"u1"}},"duplicated_template_id":null,"request_id":"r1"}"#.into(),
        ),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve_at(&d, "notion", &st, "", Some("notion-secret"));
    let (id, url) = s.oauth_start(&key, "notion");
    assert_eq!(param(&url, "owner").as_deref(), Some("user"));
    let (status, page) = callback(&s, &url, "c1");
    assert_eq!(status, 200, "{page}");
    assert_eq!(s.oauth_session(&key, &id)["account"], "Ada's Notes");
    let req = &st.requests_to("/token")[0];
    assert!(req.header("authorization").unwrap().starts_with("Basic "));
    assert!(
        req.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = serde_json::from_str(&req.body).expect("JSON body");
    assert_eq!(body["grant_type"], "authorization_code");
    assert_eq!(body["code"], "c1");
    assert!(
        body["redirect_uri"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/callback")
    );
    assert!(
        body.get("client_secret").is_none(),
        "the secret goes in the Basic header only"
    );
}

#[test]
fn reddit_asks_for_a_permanent_token_with_a_descriptive_user_agent() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" => (200, "application/json", r#"{"access_token":"rd_at","token_type":"bearer","expires_in":3600,"refresh_token":"rd_rt","scope":"identity read"}"#.into()),
        "/user" => (200, "application/json", r#"{"name":"spez"}"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve_at(&d, "reddit", &st, "", Some(""));
    let (id, url) = s.oauth_start(&key, "reddit");
    assert_eq!(param(&url, "duration").as_deref(), Some("permanent"));
    assert!(
        param(&url, "code_challenge").is_none(),
        "Reddit does not do PKCE"
    );
    assert_eq!(callback(&s, &url, "c").0, 200);
    assert_eq!(s.oauth_session(&key, &id)["account"], "spez");
    let req = &st.requests_to("/token")[0];
    let ua = req.header("user-agent").unwrap();
    assert!(
        ua.starts_with("akhrot-desktop/") && ua.contains('('),
        "{ua}"
    );
    // An installed app: Basic auth with the client id and an empty password ("client-123:").
    assert_eq!(req.header("authorization"), Some("Basic Y2xpZW50LTEyMzo="));
    assert!(!req.body.contains("client_id="), "{}", req.body);
}

#[test]
fn jira_asks_for_the_api_audience_and_keeps_the_cloud_id() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" => (200, "application/json", r#"{"access_token":"atl_at","token_type":"Bearer","expires_in":3600,"refresh_token":"atl_rt","scope":"read:jira-work offline_access"}"#.into()),
        "/user" => (200, "application/json", r#"{"account_id":"a1","email":"ada@example.com"}"#.into()),
        "/resources" => (200, "application/json", r#"[{"id":"1324a887-45db-1bf4-1e99-ef0ff456d421","name":"Acme","url":"https://acme.atlassian.net","scopes":["read:jira-work"]}]"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve_at(
        &d,
        "jira",
        &st,
        &format!("resources_url = \"{}\"\n", st.url("/resources")),
        Some("jira-secret"),
    );
    let (_, url) = s.oauth_start(&key, "jira");
    assert_eq!(
        param(&url, "audience").as_deref(),
        Some("api.atlassian.com")
    );
    assert_eq!(param(&url, "prompt").as_deref(), Some("consent"));
    assert!(param(&url, "scope").unwrap().contains("offline_access"));
    assert_eq!(callback(&s, &url, "c").0, 200);
    let req = &st.requests_to("/token")[0];
    let body: Value = serde_json::from_str(&req.body).expect("Atlassian takes a JSON body");
    assert_eq!(body["client_secret"], "jira-secret");
    assert_eq!(
        st.requests_to("/resources")[0].header("authorization"),
        Some("Bearer atl_at")
    );
    let (_, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "jira"}));
    assert_eq!(v["data"]["cloudId"], "1324a887-45db-1bf4-1e99-ef0ff456d421");
    assert_eq!(v["data"]["account"], "ada@example.com");
    let (_, v) = s.get("/ai/context/jira", Some(&key));
    let base = v["data"]["services"][0]["baseUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        base.contains("1324a887-45db-1bf4-1e99-ef0ff456d421"),
        "{base}"
    );
}

#[test]
fn authorize_urls_carry_each_providers_required_parameters() {
    let d = Dirs::new();
    let (s, key) = bot_server(&d);
    for p in [
        "google",
        "x-twitter",
        "airtable",
        "microsoft",
        "spotify",
        "gitlab",
    ] {
        set_client(&s, p, Some("sec"));
    }
    let (_, url) = s.oauth_start(&key, "google");
    assert!(
        url.starts_with("https://accounts.google.com/o/oauth2/v2/auth?"),
        "{url}"
    );
    assert_eq!(param(&url, "access_type").as_deref(), Some("offline"));
    assert_eq!(param(&url, "prompt").as_deref(), Some("consent"));
    for p in [
        "google",
        "x-twitter",
        "airtable",
        "microsoft",
        "spotify",
        "gitlab",
    ] {
        let (_, url) = s.oauth_start(&key, p);
        assert_eq!(
            param(&url, "code_challenge_method").as_deref(),
            Some("S256"),
            "{p}: {url}"
        );
        assert_eq!(
            param(&url, "code_challenge").map(|c| c.len()),
            Some(43),
            "{p}"
        );
        assert_eq!(param(&url, "response_type").as_deref(), Some("code"));
        assert_eq!(param(&url, "client_id").as_deref(), Some("client-123"));
        let redirect = param(&url, "redirect_uri").unwrap();
        assert_eq!(
            redirect,
            format!("http://127.0.0.1:{}/oauth/callback", s.port),
            "{p}"
        );
        assert!(param(&url, "state").unwrap().len() >= 22);
    }
    let (_, url) = s.oauth_start(&key, "x-twitter");
    assert!(
        param(&url, "scope")
            .unwrap()
            .split(' ')
            .any(|s| s == "offline.access")
    );
    let (_, url) = s.oauth_start(&key, "microsoft");
    assert!(
        param(&url, "scope")
            .unwrap()
            .split(' ')
            .any(|s| s == "offline_access")
    );
    // Extra scopes are added to the catalog's defaults.
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&key),
        &json!({"provider": "google", "scopes": ["https://www.googleapis.com/auth/tasks"]}),
    );
    assert_eq!(status, 200);
    let scope = param(v["data"]["url"].as_str().unwrap(), "scope").unwrap();
    assert!(
        scope.contains("https://www.googleapis.com/auth/tasks") && scope.contains("openid"),
        "{scope}"
    );
}

#[test]
fn sessions_need_a_client_and_an_oauth_provider() {
    let d = Dirs::new();
    let (s, key) = bot_server(&d);
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&key),
        &json!({"provider": "github"}),
    );
    assert_eq!((status, code(&v)), (409, "CLIENT_NOT_CONFIGURED"));
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("http://127.0.0.1:{}/oauth/callback", s.port)),
        "{msg}"
    );
    assert!(
        msg.contains("https://github.com/settings/developers") || msg.contains("github.com"),
        "{msg}"
    );
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&key),
        &json!({"provider": "openai"}),
    );
    // Well-formed, but an API-key provider cannot be connected with OAuth: a conflict.
    assert_eq!((status, code(&v)), (409, "CONFLICT"));
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&key),
        &json!({"provider": "nosuch"}),
    );
    assert_eq!((status, code(&v)), (404, "PROVIDER_NOT_FOUND"));
    let (status, v) = s.post("/oauth/sessions", Some(&key), &json!({}));
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"));
    let (status, v) = s.get("/oauth/sessions/oas_nope", Some(&key));
    assert_eq!((status, code(&v)), (404, "SESSION_NOT_FOUND"));
    let (status, _) = s.post("/oauth/sessions", None, &json!({"provider": "github"}));
    assert_eq!(status, 401);
}

#[test]
fn the_user_may_choose_the_deep_link_redirect_per_provider() {
    let d = Dirs::new();
    let (s, key) = bot_server(&d);
    let (_, v) = s.get("/ai/context/github", Some(&key));
    assert_eq!(v["data"]["clientConfigured"], false);
    let v = s.admin_post(
        "/admin/clients",
        &json!({"provider": "github", "clientId": "client-123", "clientSecret": "s", "redirect": "deep_link"}),
    );
    assert_eq!(v["redirectUri"], "akhrot://oauth/callback");
    let (_, v) = s.get("/ai/context/github", Some(&key));
    assert_eq!(v["data"]["clientConfigured"], true);
    let (id, url) = s.oauth_start(&key, "github");
    assert_eq!(
        param(&url, "redirect_uri").as_deref(),
        Some("akhrot://oauth/callback")
    );
    // Such a session completes only through the deep link (the desktop app), not the loopback page.
    let (status, page) = callback(&s, &url, "c");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("akhrot://oauth/callback"), "{page}");
    assert_eq!(s.oauth_session(&key, &id)["status"], "failed");
    // The CLI sets it too, and back.
    let o = s.cli(
        &[
            "clients",
            "set",
            "github",
            "--client-id",
            "client-123",
            "--redirect",
            "loopback",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("http://127.0.0.1:{}/oauth/callback", s.port)
    );
}

/// No server available here omits the refresh token from a refresh answer, so a stand-in does:
/// the first refresh token must be kept and used again.
#[test]
fn a_refresh_answer_without_a_refresh_token_keeps_the_old_one() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" if r.body.contains("grant_type=authorization_code") && r.body.contains("code=norefresh") => {
            (200, "application/json", r#"{"access_token":"short-lived","token_type":"Bearer","expires_in":2}"#.into())
        }
        "/token" if r.body.contains("grant_type=authorization_code") => (
            200,
            "application/json",
            r#"{"access_token":"at-0","token_type":"Bearer","expires_in":2,"refresh_token":"rt-original"}"#.into(),
        ),
                "/token" if r.body.contains("refresh_token=rt-original") => (
            200,
            "application/json",
            format!(r#"{{"access_token":"at-{}","token_type":"Bearer","expires_in":2}}"#, rand_suffix()),
        ),
        "/token" => (400, "application/json", r#"{"error":"invalid_grant"}"#.into()),
        "/user" => (200, "application/json", r#"{"email":"keep@example.test"}"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    write_provider_file(
        &d,
        "keep",
        &format!(
            "[providers.keep]\nname = \"Keep\"\nauth = \"oauth2\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nuserinfo_url = \"{}\"\n\
             token_auth = \"client_secret_post\"\n[[providers.keep.services]]\ncode = \"api\"\nname = \"API\"\nbase_url = \"{}\"\n",
            st.url("/authorize"),
            st.url("/token"),
            st.url("/user"),
            st.url("/api")
        ),
    );
    let (s, key) = serve(&d, "keep", Some("sec"));
    let (_, url) = s.oauth_start(&key, "keep");
    assert_eq!(callback(&s, &url, "ok").0, 200);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "keep"}));
        assert_eq!(status, 200, "{v}");
        assert!(
            seen.insert(v["data"]["accessToken"].as_str().unwrap().to_owned()),
            "a new token each time"
        );
    }
    let refreshes: Vec<_> = st
        .requests_to("/token")
        .into_iter()
        .filter(|r| r.body.contains("grant_type=refresh_token"))
        .collect();
    assert_eq!(refreshes.len(), 3);
    assert!(
        refreshes
            .iter()
            .all(|r| r.body.contains("refresh_token=rt-original")),
        "the old refresh token was kept"
    );

    // A connection that never got a refresh token: once expired, TOKEN_EXPIRED says why.
    let (_, url) = s.oauth_start(&key, "keep");
    s.request(
        "DELETE",
        "/admin/connections/keep",
        Some(&s.admin_token()),
        None,
    );
    assert_eq!(callback(&s, &url, "norefresh").0, 200);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "keep"}));
    assert_eq!((status, code(&v)), (400, "TOKEN_EXPIRED"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no refresh token"),
        "{v}"
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
