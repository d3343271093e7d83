//! Client settings and field values that move a provider's URLs: Microsoft's tenant, a
//! self-managed GitLab's server, Mailgun's region. Each against a loopback stand-in that
//! answers as the provider's documentation says; nothing reaches a real provider.
#![allow(clippy::unwrap_used)]

use akhrot_e2e::*;
use serde_json::{Value, json};

/// The person's browser at a stand-in authorization endpoint that answers with the query it
/// would redirect back with (`code=…` or `error=…`); returns Akhrot's callback (status, page).
fn consent_at_standin(s: &Server, authorize_url: &str) -> (u16, String) {
    let query = ureq::get(authorize_url)
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    s.oauth_redirect(authorize_url, &query)
}

fn clients(s: &Server) -> Vec<Value> {
    let out = s.cli(&["clients", "list", "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str::<Vec<Value>>(&stdout(&out)).unwrap()
}

fn client_of(s: &Server, provider: &str) -> Value {
    clients(s)
        .into_iter()
        .find(|c| c["provider"] == provider)
        .unwrap()
}

/// https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow: the
/// endpoints are `/{tenant}/oauth2/v2.0/authorize|token`; an app registered for one directory
/// (the portal's default) is refused at `/common` with AADSTS50194, sent back to the redirect
/// URI as `error=invalid_request`.
#[test]
fn a_single_tenant_microsoft_app_connects_once_its_tenant_is_set() {
    const TENANT: &str = "contoso.onmicrosoft.com";
    let st = StandIn::start(|r| {
        let tenant = r.path.split('/').nth(1).unwrap_or("").to_owned();
        match r.path.rsplit('/').next().unwrap_or("") {
            "authorize" if tenant == TENANT => (200, "text/plain", "code=good".into()),
            "authorize" => (
                200,
                "text/plain",
                "error=invalid_request&error_description=AADSTS50194%3A+Application+%27client-123%27+is+not+configured+as+a+multi-tenant+application.+Usage+of+the+%2Fcommon+endpoint+is+not+supported+for+such+applications+created+after+%2710%2F15%2F2018%27.+Use+a+tenant-specific+endpoint+or+configure+the+application+to+be+multi-tenant.".into(),
            ),
            "token" if tenant == TENANT => (
                200,
                "application/json",
                r#"{"token_type":"Bearer","scope":"openid profile email offline_access User.Read","expires_in":3599,"access_token":"eyJ0-ms-access","refresh_token":"0.AR-ms-refresh"}"#.into(),
            ),
            "token" => (
                400,
                "application/json",
                r#"{"error":"invalid_request","error_description":"AADSTS50194: not a multi-tenant application"}"#.into(),
            ),
            "me" => (
                200,
                "application/json",
                r#"{"displayName":"Ada","userPrincipalName":"ada@contoso.onmicrosoft.com","id":"a1"}"#.into(),
            ),
            _ => (404, "text/plain", "no".into()),
        }
    });
    let d = Dirs::new();
    // Only the host moves to the stand-in; the `{tenant}` placeholder and the setting are the
    // built-in entry's.
    write_provider_file(
        &d,
        "50-microsoft",
        &format!(
            "[providers.microsoft]\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nuserinfo_url = \"{}\"\n",
            st.url("/{tenant}/oauth2/v2.0/authorize"),
            st.url("/{tenant}/oauth2/v2.0/token"),
            st.url("/v1.0/me"),
        ),
    );
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);

    let out = s.cli(
        &["clients", "set", "microsoft", "--client-id", "client-123"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let c = client_of(&s, "microsoft");
    assert_eq!(c["settings"][0]["name"], "tenant");
    assert_eq!(c["settings"][0]["default"], "common");
    assert!(c["settings"][0]["value"].is_null());

    // The default tenant: the single-tenant app is refused, and the person is told why.
    let (id, url) = s.oauth_start(&key, "microsoft");
    assert!(url.contains("/common/oauth2/v2.0/authorize?"), "{url}");
    let (status, page) = consent_at_standin(&s, &url);
    assert!((400..500).contains(&status), "{status} {page}");
    assert!(page.contains("AADSTS50194"), "{page}");
    assert!(
        page.contains("--tenant"),
        "the page says how to fix it: {page}"
    );
    let v = s.oauth_session(&key, &id);
    assert_eq!(v["status"], "failed");
    assert!(v["error"].as_str().unwrap().contains("--tenant"), "{v}");

    // A tenant that is not a plain name is refused before it is stored.
    for bad in ["../evil", "evil.example/x", "a b"] {
        let out = s.cli(
            &[
                "clients",
                "set",
                "microsoft",
                "--client-id",
                "client-123",
                "--tenant",
                bad,
            ],
            None,
        );
        assert!(!out.status.success(), "{bad}");
        assert!(stderr(&out).contains("tenant"), "{}", stderr(&out));
    }
    let out = s.cli(
        &[
            "clients",
            "set",
            "github",
            "--client-id",
            "x",
            "--tenant",
            TENANT,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no client settings"),
        "{}",
        stderr(&out)
    );

    let out = s.cli(
        &[
            "clients",
            "set",
            "microsoft",
            "--client-id",
            "client-123",
            "--tenant",
            TENANT,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("tenant = {TENANT}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(client_of(&s, "microsoft")["settings"][0]["value"], TENANT);

    let (id, url) = s.oauth_start(&key, "microsoft");
    assert!(
        url.starts_with(&st.url(&format!("/{TENANT}/oauth2/v2.0/authorize?"))),
        "{url}"
    );
    let (status, page) = consent_at_standin(&s, &url);
    assert_eq!(status, 200, "{page}");
    let v = s.oauth_session(&key, &id);
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["account"], "ada@contoso.onmicrosoft.com");
    let tokens = st.requests_to(&format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(
        tokens.len(),
        1,
        "the code went to the tenant's token endpoint"
    );
    assert!(st.requests_to("/common/oauth2/v2.0/token").is_empty());
    let (status, v) = s.post(
        "/tokens/fetch",
        Some(&key),
        &json!({"provider": "microsoft"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accessToken"], "eyJ0-ms-access");
}

/// https://docs.gitlab.com/api/oauth2/: a self-managed instance serves the same paths at its
/// own address (`https://gitlab.example.com/oauth/authorize`, `/oauth/token`, `/oauth/revoke`)
/// and its API at `/api/v4`.
#[test]
fn one_gitlab_host_setting_moves_every_url_and_the_proxy_with_it() {
    let st = StandIn::start(|r| {
        match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/oauth/authorize") => (200, "text/plain", "code=good".into()),
        ("POST", "/oauth/token") => (
            200,
            "application/json",
            r#"{"access_token":"glpat-standin-access","token_type":"Bearer","expires_in":7200,"refresh_token":"glrt-standin-refresh","scope":"api read_user","created_at":1700000000}"#.into(),
        ),
        ("POST", "/oauth/revoke") => (200, "application/json", "{}".into()),
        ("GET", "/api/v4/user") => (200, "application/json", r#"{"id":7,"username":"ada"}"#.into()),
        ("GET", "/api/v4/projects") => (
            200,
            "application/json",
            r#"[{"id":1,"name":"self-hosted project"}]"#.into(),
        ),
        _ => (404, "application/json", r#"{"message":"404 Not Found"}"#.into()),
    }
    });
    let d = Dirs::new();
    // No providers.d file: the built-in entry and one setting.
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let origin = st.url("");
    let out = s.cli(
        &[
            "clients",
            "set",
            "gitlab",
            "--client-id",
            "gl-client",
            "--host",
            &origin,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Plain http is for this machine only.
    let out = s.cli(
        &[
            "clients",
            "set",
            "gitlab",
            "--client-id",
            "gl-client",
            "--host",
            "http://gitlab.example.com",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
    assert_eq!(client_of(&s, "gitlab")["settings"][0]["value"], origin);

    let (id, url) = s.oauth_start(&key, "gitlab");
    assert!(url.starts_with(&st.url("/oauth/authorize?")), "{url}");
    let (status, page) = consent_at_standin(&s, &url);
    assert_eq!(status, 200, "{page}");
    assert_eq!(s.oauth_session(&key, &id)["account"], "ada");
    assert_eq!(st.requests_to("/oauth/token").len(), 1);
    assert_eq!(st.requests_to("/api/v4/user").len(), 1);

    // Agents are shown the instance's API, and the proxy reaches it.
    let (status, v) = s.get("/ai/context/gitlab", Some(&key));
    assert_eq!(status, 200, "{v}");
    let base = format!("{origin}/api/v4");
    assert!(
        v["data"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|svc| svc["baseUrl"] == base.as_str()),
        "{v}"
    );
    let (status, v) = s.get("/proxy/gitlab/projects?akhrot_service=repos", Some(&key));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v[0]["name"], "self-hosted project");
    let call = st.requests_to("/api/v4/projects").pop().unwrap();
    assert_eq!(
        call.header("authorization"),
        Some("Bearer glpat-standin-access")
    );

    // Disconnecting revokes at the instance too.
    let out = s.cli(&["disconnect", "gitlab", "--account", "ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let revoke = st.requests_to("/oauth/revoke");
    assert_eq!(revoke.len(), 1);
    assert!(
        revoke[0].body.contains("token=glrt-standin-refresh"),
        "{}",
        revoke[0].body
    );
}

/// https://documentation.mailgun.com/docs/mailgun/api-reference: "For domains created in our
/// EU region the base URL is: https://api.eu.mailgun.net/", and endpoints carry their own
/// version (`/v3`, `/v4`). The proxy's HTTPS goes through a stand-in forward proxy
/// (`HTTPS_PROXY`), which records the host each call was for and lets none through.
#[test]
fn the_mailgun_region_picks_the_api_host_for_agents_and_the_proxy() {
    let forward = StandIn::start(|_| (403, "text/plain", "stand-in: not forwarded".into()));
    let d = Dirs::new();
    let s = Server::start_with(
        &d,
        Opts::default()
            .env("HTTPS_PROXY", &forward.url(""))
            .env("NO_PROXY", ""),
    )
    .unwrap();
    let key = s.create_key("bot", &["*"]);

    let (status, v) = s.post(
        "/admin/connections",
        Some(&s.admin_token()),
        &json!({"provider": "mailgun", "account": "mars", "fields": {"apiKey": "key-mars", "domain": "mg.example.com", "region": "mars"}}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("one of: eu, us"),
        "{v}"
    );

    s.add(
        "mailgun",
        Some("eu"),
        json!({"apiKey": "key-eu-standin", "domain": "mg.example.eu", "region": "eu"}),
    );
    s.add(
        "mailgun",
        Some("us"),
        json!({"apiKey": "key-us-standin", "domain": "mg.example.com"}),
    );
    for (account, host) in [("eu", "api.eu.mailgun.net"), ("us", "api.mailgun.net")] {
        let (status, v) = s.get(
            &format!("/ai/context/mailgun/email?account={account}"),
            Some(&key),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["data"]["baseUrl"], format!("https://{host}"), "{v}");
        let (status, v) = s.get(
            &format!("/proxy/mailgun/v4/domains?akhrot_account={account}"),
            Some(&key),
        );
        assert_eq!(status, 502, "{v}");
        let connects: Vec<String> = forward
            .requests()
            .into_iter()
            .filter(|r| r.method == "CONNECT")
            .map(|r| r.path)
            .collect();
        assert_eq!(
            connects.last().map(String::as_str),
            Some(format!("{host}:443").as_str()),
            "{connects:?}"
        );
    }
    // The token answer keeps the raw value the person gave.
    let (status, v) = s.post(
        "/tokens/fetch",
        Some(&key),
        &json!({"provider": "mailgun", "account": "eu"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["region"], "eu");
}
