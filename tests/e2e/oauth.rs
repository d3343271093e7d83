//! OAuth end to end against a real authorization server (node-oidc-provider on loopback),
//! configured as a custom provider in providers.d: consent by a scripted person, token fetch,
//! expiry and refresh, rotation, revocation, client auth methods, provider failures,
//! concurrency, and the CLI. Forged, replayed and cross-session callbacks are in `attacks.rs`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

/// An Akhrot server with provider `idp` pointing at a fresh oidc-provider.
fn env(oidc_flags: &[&str], client: &str, opts: Opts) -> OauthEnv {
    let oidc = Oidc::start(oidc_flags);
    let d = Dirs::new();
    let token_auth = match client {
        "basic-client" => "client_secret_basic",
        "post-client" => "client_secret_post",
        _ => "none",
    };
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", token_auth));
    let s = Server::start_with(&d, opts).unwrap();
    let e = OauthEnv::new(oidc, s, d);
    let mut body = json!({"provider": "idp", "clientId": client});
    match client {
        "basic-client" => body["clientSecret"] = json!("basic-secret"),
        "post-client" => body["clientSecret"] = json!("post-secret"),
        _ => {}
    }
    let v = e.s.admin_post("/admin/clients", &body);
    assert_eq!(
        v["redirectUri"],
        format!("http://127.0.0.1:{}/oauth/callback", e.s.port)
    );
    e
}

fn wait_until_expired(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
}

#[test]
fn consent_fetch_expiry_refresh_and_rotation_with_client_secret_basic() {
    let e = env(
        &["--rotate", "--access-ttl", "2"],
        "basic-client",
        Opts::default(),
    );
    let (id, status, page) = e.connect("alice");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("alice@example.test") && page.contains("close this tab"),
        "{page}"
    );
    let sess = e.session(&id);
    assert_eq!(sess["status"], "completed");
    assert_eq!(sess["account"], "alice@example.test");

    let (status, v) = e.fetch();
    assert_eq!(status, 200, "{v}");
    let t = &v["data"];
    let first = t["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(t["tokenType"], "Bearer");
    assert_eq!(t["account"], "alice@example.test");
    assert!(t["expiresAt"].is_string());
    assert!(
        t["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "openid")
    );
    assert_eq!(
        e.oidc.userinfo(&first).unwrap()["email"],
        "alice@example.test",
        "the token is live"
    );
    assert_eq!(e.oidc.stat("refreshToken"), 0);
    assert!(page.find(&first).is_none(), "the page never shows a token");

    // Expiry -> refresh; with rotation, each refresh must present the newest refresh token
    // (a reused one is refused by the server and revokes the grant).
    let mut last = first;
    for round in 1..=3 {
        wait_until_expired(2.2);
        let now = e.token();
        assert_ne!(now, last, "round {round}: a new access token");
        assert!(
            e.oidc.userinfo(&now).is_some(),
            "round {round}: the new token is live"
        );
        assert_eq!(e.oidc.stat("refreshToken"), round, "one refresh per expiry");
        last = now;
    }
    assert_eq!(
        e.oidc.stat("tokenErrors"),
        0,
        "no refresh token was ever reused"
    );
    // The user's own `akhrot token` refreshes too.
    wait_until_expired(2.2);
    let o = e.s.cli(&["token", "idp"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(stdout(&o).trim(), last);
    assert_eq!(e.oidc.stat("refreshToken"), 4);
}

#[test]
fn client_secret_post_and_public_clients_connect_and_refresh() {
    for client in ["post-client", "public-client"] {
        let e = env(&["--access-ttl", "2"], client, Opts::default());
        let (_, status, page) = e.connect("bob");
        assert_eq!(status, 200, "{client}: {page}");
        let first = e.token();
        wait_until_expired(2.2);
        let second = e.token();
        assert_ne!(first, second, "{client}");
        assert_eq!(e.oidc.stat("refreshToken"), 1, "{client}");
        assert_eq!(e.oidc.stat("tokenErrors"), 0, "{client}");
    }
}

#[test]
fn two_hundred_concurrent_fetches_share_one_refresh() {
    let e = Arc::new(env(
        // Tokens live 8 s, so the broker refreshes them after 4 s (half the lifetime): on a
        // loaded 2-core machine 200 threads can take over a second to all be answered, and a
        // new token that is due again meanwhile is rightly refreshed again.
        &["--rotate", "--access-ttl", "8"],
        "basic-client",
        Opts::default().arg("--rate-limit").arg("0"),
    ));
    e.connect("carol");
    let first = e.token();
    wait_until_expired(4.5);
    e.oidc.control("reset-stats");
    e.oidc.control("delay-token?ms=300");
    let start = Instant::now();
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || e.fetch())
        })
        .collect();
    let results: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let took = start.elapsed();
    let tokens: std::collections::HashSet<String> = results
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 200, "{v}");
            v["data"]["accessToken"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "all 200 got the same new token");
    assert!(!tokens.contains(&first));
    assert_eq!(
        e.oidc.stat("refreshToken"),
        1,
        "exactly one refresh at the server"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn invalid_grant_marks_the_connection_for_reconnect_and_a_new_session_fixes_it() {
    let e = env(&["--access-ttl", "2"], "basic-client", Opts::default());
    e.connect("dave");
    e.token();
    e.oidc.control("revoke-all");
    wait_until_expired(2.2);
    let (status, v) = e.fetch();
    assert_eq!((status, code(&v)), (400, "TOKEN_EXPIRED"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("invalid_grant")
            && msg.contains("revoked")
            && msg.contains("akhrot connect idp"),
        "{msg}"
    );
    let conns = e.s.admin_get("/admin/connections");
    assert_eq!(conns[0]["status"], "needs_reconnect");
    let (_, v) = e.s.get("/ai/context/idp", Some(&e.key));
    assert_eq!(v["data"]["accounts"][0]["status"], "needs_reconnect");
    // No more calls to the server for a connection known to be dead.
    let before = e.oidc.stat("tokenRequests");
    let (status, _) = e.fetch();
    assert_eq!(status, 400);
    assert_eq!(e.oidc.stat("tokenRequests"), before);
    // The person reconnecting the same account makes it work again (an agent's session could
    // not: it never replaces a stored connection).
    let (_, status, _) = e.connect_as_person("dave", None);
    assert_eq!(status, 200);
    let t = e.token();
    assert!(e.oidc.userinfo(&t).is_some());
    assert_eq!(
        e.s.admin_get("/admin/connections")[0]["status"],
        "connected"
    );
}

#[test]
fn provider_failures_are_provider_error_and_keep_the_connection() {
    let e = env(&["--access-ttl", "2"], "basic-client", Opts::default());
    e.connect("erin");
    e.token();
    wait_until_expired(2.2);
    e.oidc.control("fail-token?status=503&count=1");
    let (status, v) = e.fetch();
    assert_eq!((status, code(&v)), (502, "PROVIDER_ERROR"), "{v}");
    assert_eq!(
        e.s.admin_get("/admin/connections")[0]["status"],
        "connected"
    );
    // The refresh token was not used up: the next fetch refreshes fine.
    let t = e.token();
    assert!(e.oidc.userinfo(&t).is_some());
    // 500 with a JSON error body is transient too.
    wait_until_expired(2.2);
    e.oidc.control("fail-token?status=500&count=1");
    let (status, v) = e.fetch();
    assert_eq!((status, code(&v)), (502, "PROVIDER_ERROR"), "{v}");
    e.token();
}

#[test]
fn a_slow_provider_times_out_within_the_configured_bound() {
    let oidc_flags = ["--access-ttl", "2"];
    let oidc = Oidc::start(&oidc_flags);
    let d = Dirs::new();
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", "client_secret_basic"));
    std::fs::create_dir_all(d.config()).unwrap();
    std::fs::write(d.config().join("config.toml"), "provider_timeout = 1\n").unwrap();
    let s = Server::start(&d);
    let e = OauthEnv::with_basic_client(oidc, s, d);
    e.connect("frank");
    wait_until_expired(2.2);
    e.oidc.control("delay-token?ms=3000");
    let start = Instant::now();
    let (status, v) = e.fetch();
    let took = start.elapsed();
    assert_eq!((status, code(&v)), (502, "PROVIDER_ERROR"), "{v}");
    assert!(
        took < Duration::from_millis(2500),
        "timed out after {took:?}"
    );
    // Other providers are unaffected meanwhile.
    e.s.add("openai", None, json!({"apiKey": "sk-unaffected"}));
    let (status, _) = e.s.post(
        "/tokens/fetch",
        Some(&e.key),
        &json!({"provider": "openai"}),
    );
    assert_eq!(status, 200);
}

#[test]
fn several_accounts_of_one_provider_are_told_apart() {
    let e = env(&[], "basic-client", Opts::default());
    e.connect("hana");
    e.connect("ivan");
    let (_, v) = e.s.get("/ai/context/summary", Some(&e.key));
    let idp = v["data"]["connected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "idp")
        .cloned()
        .unwrap();
    assert_eq!(
        idp["accounts"],
        json!(["hana@example.test", "ivan@example.test"])
    );
    let (_, v) = e.s.post(
        "/tokens/fetch",
        Some(&e.key),
        &json!({"provider": "idp", "account": "ivan@example.test"}),
    );
    let t = v["data"]["accessToken"].as_str().unwrap();
    assert_eq!(e.oidc.userinfo(t).unwrap()["email"], "ivan@example.test");
    let (_, v) = e.fetch();
    assert_eq!(
        v["data"]["account"], "hana@example.test",
        "the first connected is the default"
    );
}

#[test]
fn disconnect_revokes_at_the_provider_and_deletes_locally() {
    let e = env(&[], "basic-client", Opts::default());
    e.connect("jo");
    let t = e.token();
    let o = e.s.cli(&["disconnect", "idp"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(e.oidc.stat("revocations"), 1);
    let (status, v) = e.fetch();
    assert_eq!((status, code(&v)), (404, "INTEGRATION_NOT_FOUND"));
    // Revoking the refresh token ends the grant at the server.
    assert!(
        e.oidc.userinfo(&t).is_none(),
        "the provider no longer accepts the token"
    );
}

#[test]
fn akhrot_connect_prints_the_url_and_waits_for_completion() {
    let e = env(&[], "post-client", Opts::default());
    let mut child = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(&e.s.data)
        .arg("--config-dir")
        .arg(&e.s.config)
        .args(["connect", "idp", "--no-browser"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with(&e.oidc.issuer), "{url}");
    let cb = e.consent(&url, "kim", false);
    assert_eq!(e.deliver(&cb).0, 200);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Connected idp as kim@example.test"));
    let o = e.s.cli(&["token", "idp"], None);
    assert!(e.oidc.userinfo(stdout(&o).trim()).is_some());
    let o = e.s.cli(&["clients", "list", "--json"], None);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let idp = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "idp")
        .unwrap();
    assert_eq!(idp["configured"], true);
    assert!(
        !stdout(&o).contains("post-secret"),
        "client secrets are never listed"
    );
}
