//! Where refresh grants go (`refresh_url`), the shape of each provider's revocation request
//! (`revoke_request`), identity from a POSTed query (`userinfo_body`) and the catalog's `refresh`
//! flag, each against a loopback stand-in that answers the way the provider's documentation
//! says (the catalog entry cites the page). The RFC 7009 form shape against a real
//! authorization server is `oauth.rs`'s `disconnect_revokes_at_the_provider_and_deletes_locally`.
#![allow(clippy::unwrap_used)]

use akhrot_e2e::*;
use serde_json::{Value, json};

/// A server with agent key `bot` and an OAuth client `client-123` (secret `secret`) for
/// `provider`, whose endpoints a providers.d file (`toml`) points at a stand-in.
fn serve(d: &Dirs, provider: &str, toml: &str) -> (Server, String) {
    write_provider_file(d, &format!("50-{provider}"), toml);
    let s = Server::start(d);
    let key = s.create_key("bot", &["*"]);
    s.admin_post(
        "/admin/clients",
        &json!({"provider": provider, "clientId": "client-123", "clientSecret": "secret"}),
    );
    (s, key)
}

/// Plays the provider's redirect back to the loopback callback with `code`.
fn callback(s: &Server, url: &str, code: &str) -> (u16, String) {
    s.oauth_redirect(url, &format!("code={code}"))
}

fn connect(s: &Server, key: &str, provider: &str, code: &str) -> String {
    let (id, url) = s.oauth_start(key, provider);
    let (status, page) = callback(s, &url, code);
    assert_eq!(status, 200, "{page}");
    s.oauth_session(key, &id)["account"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn disconnect(s: &Server, provider: &str) -> Value {
    let (status, v) = s.request(
        "DELETE",
        &format!("/admin/connections/{provider}"),
        Some(&s.admin_token()),
        None,
    );
    assert_eq!(status, 200, "{v}");
    v["data"].clone()
}

/// HTTP Basic credentials of the OAuth client `client-123` with secret `secret`.
const CLIENT_BASIC: &str = "Basic Y2xpZW50LTEyMzpzZWNyZXQ=";

/// A form body's fields (the values here need no percent-decoding).
fn form(body: &str) -> std::collections::BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Figma (https://developers.figma.com/docs/rest-api/authentication/): refresh tokens are spent
/// at `/v1/oauth/refresh`, not at the token endpoint, and the answer has no new refresh token.
#[test]
fn figma_refreshes_at_its_refresh_endpoint_and_keeps_the_refresh_token() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/v1/oauth/token" if r.body.contains("grant_type=authorization_code") => (
            200,
            "application/json",
            r#"{"user_id":"1","access_token":"fig-at-0","token_type":"bearer","expires_in":2,"refresh_token":"fig-rt"}"#.into(),
        ),
        // The token endpoint takes no refresh grants: they belong at /v1/oauth/refresh.
        "/v1/oauth/token" => (
            400,
            "application/json",
            r#"{"error":"invalid_request","error_description":"refresh at /v1/oauth/refresh"}"#.into(),
        ),
        "/v1/oauth/refresh"
            if r.body.contains("refresh_token=fig-rt")
                && r.header("authorization") == Some(CLIENT_BASIC) =>
        {
            (
                200,
                "application/json",
                format!(r#"{{"access_token":"fig-at-{}","token_type":"bearer","expires_in":2}}"#, nanos()),
            )
        }
        "/v1/oauth/refresh" => (400, "application/json", r#"{"error":"invalid_grant"}"#.into()),
        "/v1/me" => (200, "application/json", r#"{"id":"1","handle":"Ada","email":"ada@figma.test"}"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve(
        &d,
        "figma",
        &format!(
            "[providers.figma]\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nrefresh_url = \"{}\"\nuserinfo_url = \"{}\"\n",
            st.url("/oauth"),
            st.url("/v1/oauth/token"),
            st.url("/v1/oauth/refresh"),
            st.url("/v1/me"),
        ),
    );
    assert_eq!(connect(&s, &key, "figma", "c1"), "ada@figma.test");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "figma"}));
        assert_eq!(status, 200, "{v}");
        let t = v["data"]["accessToken"].as_str().unwrap().to_owned();
        assert!(t != "fig-at-0" && seen.insert(t), "a new token each time");
    }
    let refreshes = st.requests_to("/v1/oauth/refresh");
    assert_eq!(refreshes.len(), 2);
    assert!(
        refreshes
            .iter()
            .all(|r| r.body.contains("refresh_token=fig-rt") && r.method == "POST"),
        "the first refresh token is kept and used again"
    );
    assert!(
        st.requests_to("/v1/oauth/token")
            .iter()
            .all(|r| !r.body.contains("grant_type=refresh_token")),
        "no refresh grant at the token URL"
    );
}

/// Dropbox (https://www.dropbox.com/developers/documentation/http/documentation#auth-token-revoke):
/// `/2/auth/token/revoke` is an RPC call authenticated by the access token itself, no arguments.
#[test]
fn dropbox_disconnect_revokes_with_the_access_token_as_bearer() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/oauth2/token" => (
            200,
            "application/json",
            r#"{"access_token":"sl.db-at","token_type":"bearer","expires_in":14400,"refresh_token":"db-rt","scope":"account_info.read","uid":"12","account_id":"dbid:AAH4"}"#.into(),
        ),
        "/2/auth/token/revoke" if r.header("authorization") == Some("Bearer sl.db-at") && r.body.is_empty() => {
            (200, "application/json", "null".into())
        }
        "/2/auth/token/revoke" => (400, "text/plain", "Error in call to API function \"auth/token/revoke\"".into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve(
        &d,
        "dropbox",
        &format!(
            "[providers.dropbox]\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nrevoke_url = \"{}\"\n",
            st.url("/oauth2/authorize"),
            st.url("/oauth2/token"),
            st.url("/2/auth/token/revoke"),
        ),
    );
    assert_eq!(connect(&s, &key, "dropbox", "c1"), "dbid:AAH4");
    let v = disconnect(&s, "dropbox");
    assert_eq!(v["revokedAtProvider"], true, "{v}");
    let r = &st.requests_to("/2/auth/token/revoke")[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("authorization"), Some("Bearer sl.db-at"));
    assert!(r.body.is_empty(), "no body: {}", r.body);
    assert!(r.header("content-type").is_none());
}

/// Notion (https://developers.notion.com/reference/revoke-token): Basic client auth and a JSON
/// body `{"token": …}` with the access token.
#[test]
fn notion_disconnect_revokes_with_basic_auth_and_a_json_body() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/v1/oauth/token" => (
            200,
            "application/json",
            r#"{"access_token":"ntn_at","token_type":"bearer","refresh_token":"nrt_1","bot_id":"b1","workspace_id":"w1","workspace_name":"Ada's Notes","owner":{"type":"user"}}"#.into(),
        ),
        "/v1/oauth/revoke"
            if r.header("authorization") == Some(CLIENT_BASIC)
                && r.header("content-type") == Some("application/json")
                && serde_json::from_str::<Value>(&r.body).ok() == Some(json!({"token": "ntn_at"})) =>
        {
            (200, "application/json", r#"{"request_id":"r2"}"#.into())
        }
        "/v1/oauth/revoke" => (400, "application/json", r#"{"object":"error","status":400,"code":"invalid_request"}"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve(
        &d,
        "notion",
        &format!(
            "[providers.notion]\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nrevoke_url = \"{}\"\n",
            st.url("/v1/oauth/authorize"),
            st.url("/v1/oauth/token"),
            st.url("/v1/oauth/revoke"),
        ),
    );
    assert_eq!(connect(&s, &key, "notion", "c1"), "Ada's Notes");
    // token_request = "json" alone gives Notion's JSON token body, token_auth its Basic auth.
    let t = &st.requests_to("/v1/oauth/token")[0];
    assert_eq!(t.header("content-type"), Some("application/json"));
    assert_eq!(t.header("authorization"), Some(CLIENT_BASIC));
    let body: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(body["grant_type"], "authorization_code");
    let v = disconnect(&s, "notion");
    assert_eq!(v["revokedAtProvider"], true, "{v}");
    let r = &st.requests_to("/v1/oauth/revoke")[0];
    assert!(!r.body.contains("secret"), "{}", r.body);
}

/// RFC 7009 §2.1: a form body `token` + `token_type_hint`, the client authenticated as at the
/// token endpoint (here client_secret_post); the refresh token ends the grant.
#[test]
fn the_default_revoke_shape_is_an_rfc_7009_form() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" => (
            200,
            "application/json",
            r#"{"access_token":"std-at","token_type":"Bearer","expires_in":3600,"refresh_token":"std-rt"}"#.into(),
        ),
        "/revoke" => (200, "text/plain", String::new()),
        "/user" => (200, "application/json", r#"{"email":"sam@std.test"}"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve(
        &d,
        "std",
        &format!(
            "[providers.std]\nname = \"Std\"\nauth = \"oauth2\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\n\
             revoke_url = \"{}\"\nuserinfo_url = \"{}\"\ntoken_auth = \"client_secret_post\"\n",
            st.url("/authorize"),
            st.url("/token"),
            st.url("/revoke"),
            st.url("/user"),
        ),
    );
    assert_eq!(connect(&s, &key, "std", "c1"), "sam@std.test");
    assert_eq!(disconnect(&s, "std")["revokedAtProvider"], true);
    let r = &st.requests_to("/revoke")[0];
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = form(&r.body);
    assert_eq!(form["token"], "std-rt");
    assert_eq!(form["token_type_hint"], "refresh_token");
    assert_eq!(form["client_id"], "client-123");
    assert_eq!(form["client_secret"], "secret");
    assert!(r.header("authorization").is_none());
}

/// Linear (https://linear.app/developers/graphql): no REST userinfo; the GraphQL `viewer` names
/// the account, so a second Linear account is a second connection, not `default` again.
#[test]
fn two_linear_accounts_become_two_connections_named_by_their_viewer_emails() {
    let st = StandIn::start(|r| match r.path.as_str() {
        "/oauth/token" => {
            let n = if r.body.contains("code=c2") { 2 } else { 1 };
            (
                200,
                "application/json",
                format!(
                    r#"{{"access_token":"lin-at-{n}","token_type":"Bearer","expires_in":86399,"refresh_token":"lin-rt-{n}","scope":"read write"}}"#
                ),
            )
        }
        "/graphql" if r.method == "POST" && r.body.contains("viewer") => {
            let who = match r.header("authorization") {
                Some("Bearer lin-at-1") => r#"{"id":"u1","name":"Ada","email":"ada@linear.test"}"#,
                Some("Bearer lin-at-2") => r#"{"id":"u2","name":"Bo","email":"bo@linear.test"}"#,
                _ => {
                    return (
                        401,
                        "application/json",
                        r#"{"errors":[{"message":"Authentication required"}]}"#.into(),
                    );
                }
            };
            (
                200,
                "application/json",
                format!(r#"{{"data":{{"viewer":{who}}}}}"#),
            )
        }
        "/oauth/revoke" => (200, "application/json", "{}".into()),
        _ => (404, "text/plain", "no".into()),
    });
    let d = Dirs::new();
    let (s, key) = serve(
        &d,
        "linear",
        &format!(
            "[providers.linear]\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nuserinfo_url = \"{}\"\nrevoke_url = \"{}\"\n",
            st.url("/oauth/authorize"),
            st.url("/oauth/token"),
            st.url("/graphql"),
            st.url("/oauth/revoke"),
        ),
    );
    assert_eq!(connect(&s, &key, "linear", "c1"), "ada@linear.test");
    assert_eq!(connect(&s, &key, "linear", "c2"), "bo@linear.test");
    let mut accounts: Vec<String> = s
        .admin_get("/admin/connections")
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["provider"] == "linear")
        .map(|c| c["account"].as_str().unwrap().to_owned())
        .collect();
    accounts.sort();
    assert_eq!(accounts, ["ada@linear.test", "bo@linear.test"]);
    for account in ["ada@linear.test", "bo@linear.test"] {
        let (status, v) = s.post(
            "/tokens/fetch",
            Some(&key),
            &json!({"provider": "linear", "account": account}),
        );
        assert_eq!(status, 200, "{v}");
    }
    let q = &st.requests_to("/graphql")[0];
    assert_eq!(q.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&q.body).unwrap();
    assert!(body["query"].as_str().unwrap().contains("viewer"), "{body}");
    // Linear's revoke takes the access token as Bearer.
    let (status, v) = s.request(
        "DELETE",
        "/admin/connections/linear?account=bo%40linear.test",
        Some(&s.admin_token()),
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        st.requests_to("/oauth/revoke")[0].header("authorization"),
        Some("Bearer lin-at-2")
    );
}

/// `refresh = false`: Akhrot never sends a refresh grant for the provider and does not keep a
/// refresh token it is given; an expired token answers TOKEN_EXPIRED saying why.
#[test]
fn refresh_false_never_refreshes_and_keeps_no_refresh_token() {
    let st = StandIn::start(|r| {
        match r.path.as_str() {
        "/token" if r.body.contains("grant_type=authorization_code") => (
            200,
            "application/json",
            r#"{"access_token":"nr-at","token_type":"Bearer","expires_in":2,"refresh_token":"nr-rt"}"#.into(),
        ),
        "/token" => (200, "application/json", r#"{"access_token":"nr-refreshed","token_type":"Bearer","expires_in":3600}"#.into()),
        "/revoke" => (200, "text/plain", String::new()),
        "/user" => (200, "application/json", r#"{"login":"nora"}"#.into()),
        _ => (404, "text/plain", "no".into()),
    }
    });
    let d = Dirs::new();
    let (s, key) = serve(
        &d,
        "norefresh",
        &format!(
            "[providers.norefresh]\nname = \"No Refresh\"\nauth = \"oauth2\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\n\
             revoke_url = \"{}\"\nuserinfo_url = \"{}\"\nrefresh = false\n",
            st.url("/authorize"),
            st.url("/token"),
            st.url("/revoke"),
            st.url("/user"),
        ),
    );
    assert_eq!(connect(&s, &key, "norefresh", "c1"), "nora");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, v) = s.post(
        "/tokens/fetch",
        Some(&key),
        &json!({"provider": "norefresh"}),
    );
    assert_eq!((status, code(&v)), (400, "TOKEN_EXPIRED"), "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("does not refresh") && m.contains("reconnect"),
        "{m}"
    );
    assert!(
        st.requests_to("/token")
            .iter()
            .all(|r| !r.body.contains("grant_type=refresh_token")),
        "no refresh grant is ever sent"
    );
    // The refresh token was not stored: the revocation can only carry the access token.
    assert_eq!(disconnect(&s, "norefresh")["revokedAtProvider"], true);
    let form = form(&st.requests_to("/revoke")[0].body);
    assert_eq!(
        (form["token"].as_str(), form["token_type_hint"].as_str()),
        ("nr-at", "access_token")
    );
}

/// Slack (https://docs.slack.dev/reference/methods/auth.revoke): the access token goes as an
/// `Authorization` header, and a refusal is `ok: false` with HTTP 200, which is not a revocation.
#[test]
fn slack_revokes_with_the_token_as_bearer_and_ok_false_is_not_revoked() {
    let st = StandIn::start(|r| match r.path.as_str() {
        "/api/oauth.v2.access" => {
            let n = if r.body.contains("code=c2") { 2 } else { 1 };
            (
                200,
                "application/json",
                format!(
                    r#"{{"ok":true,"app_id":"A1","authed_user":{{"id":"U{n}","scope":"chat:write","access_token":"xoxp-{n}","token_type":"user"}},"team":{{"id":"T{n}","name":"Team {n}"}}}}"#
                ),
            )
        }
        "/api/auth.test" => (200, "application/json", r#"{"ok":true}"#.into()),
        "/api/auth.revoke" if r.header("authorization") == Some("Bearer xoxp-1") => (
            200,
            "application/json",
            r#"{"ok":true,"revoked":true}"#.into(),
        ),
        "/api/auth.revoke" => (
            200,
            "application/json",
            r#"{"ok":false,"error":"invalid_auth"}"#.into(),
        ),
        _ => (404, "text/plain", "no".into()),
    });
    let d = Dirs::new();
    let (s, key) = serve(
        &d,
        "slack",
        &format!(
            "[providers.slack]\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nuserinfo_url = \"{}\"\nrevoke_url = \"{}\"\n",
            st.url("/oauth/v2/authorize"),
            st.url("/api/oauth.v2.access"),
            st.url("/api/auth.test"),
            st.url("/api/auth.revoke"),
        ),
    );
    assert_eq!(connect(&s, &key, "slack", "c1"), "Team 1");
    assert_eq!(connect(&s, &key, "slack", "c2"), "Team 2");
    let remove = |account: &str| {
        let (status, v) = s.request(
            "DELETE",
            &format!(
                "/admin/connections/slack?account={}",
                account.replace(' ', "%20")
            ),
            Some(&s.admin_token()),
            None,
        );
        assert_eq!(status, 200, "{v}");
        v["data"]["revokedAtProvider"].clone()
    };
    assert_eq!(remove("Team 1"), true);
    assert_eq!(
        remove("Team 2"),
        false,
        "ok:false with HTTP 200 is a refusal"
    );
    let reqs = st.requests_to("/api/auth.revoke");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer xoxp-1"));
    assert!(
        reqs.iter().all(|r| r.body.is_empty()),
        "no client credentials, no body"
    );
}
