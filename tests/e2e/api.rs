//! Every agent endpoint and error code of the contract (OAuth flows and approvals come later),
//! against the real `akhrot serve`. The loopback hygiene rules (Host, Origin, form posts,
//! oversize bodies) and the agent key on admin routes are in `attacks.rs`.
#![allow(clippy::unwrap_used)]

use akhrot_e2e::*;
use serde_json::{Value, json};

fn fetch(s: &Server, key: &str, body: Value) -> (u16, Value) {
    s.post("/tokens/fetch", Some(key), &body)
}

#[test]
fn skill_document_is_public_and_names_this_instance() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let (status, v) = s.get("/ai/skill", None);
    assert_eq!(status, 200);
    let text = v.as_str().unwrap();
    assert!(text.contains(&format!("http://127.0.0.1:{}/ai/context/summary", s.port)));
    assert!(!text.contains("akhrot.ai"));
    assert!(text.contains("openai") && text.contains("x-twitter") && text.contains("telegram"));
}

#[test]
fn unauthorized_for_missing_malformed_unknown_revoked_and_admin_keys() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let unknown = {
        let (id_part, _) = key.rsplit_once('_').unwrap();
        format!("{id_part}_{}", "0".repeat(64))
    };
    let admin = s.admin_token();
    for bearer in [
        None,
        Some("nope"),
        Some("akhrot_abc_def"),
        Some(unknown.as_str()),
        Some(admin.as_str()),
    ] {
        let (status, v) = s.get("/ai/context/summary", bearer);
        assert_eq!(status, 401, "{bearer:?}: {v}");
        assert_eq!(code(&v), "UNAUTHORIZED");
    }
    let (status, _) = s.get("/ai/context/summary", Some(&key));
    assert_eq!(status, 200);
    let (status, _) = s.request("DELETE", "/admin/keys/bot", Some(&admin), None);
    assert_eq!(status, 200);
    let (status, v) = s.get("/ai/context/summary", Some(&key));
    assert_eq!((status, code(&v)), (401, "UNAUTHORIZED"));
    // The scheme is case-insensitive, as HTTP says.
    let key2 = s.create_key("bot2", &["*"]);
    let raw = s.raw(&format!(
        "GET /ai/context/summary HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: bearer {key2}\r\nConnection: close\r\n\r\n",
        s.port
    ));
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

#[test]
fn summary_is_small_and_lists_connected_and_available() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    s.add("openai", None, json!({"apiKey": "sk-sum-1"}));
    s.add("anthropic", Some("work"), json!({"apiKey": "sk-ant-1"}));
    s.add("anthropic", Some("home"), json!({"apiKey": "sk-ant-2"}));
    s.add(
        "twilio",
        None,
        json!({"accountSid": "AC123", "authToken": "tw-secret"}),
    );
    let (status, v) = s.get("/ai/context/summary", Some(&key));
    assert_eq!(status, 200);
    let body = serde_json::to_string(&v).unwrap();
    // Three connections (one with two accounts): the contract says "about 500 bytes for a few
    // connections"; the 34 `available` codes alone take ~380 of them.
    assert!(body.len() <= 650, "{} bytes: {body}", body.len());
    assert_eq!(v["status"], "success");
    let connected = v["data"]["connected"].as_array().unwrap();
    let providers: Vec<&str> = connected
        .iter()
        .map(|c| c["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers.len(), 3);
    for p in ["openai", "anthropic", "twilio"] {
        assert!(providers.contains(&p));
    }
    let anthropic = connected
        .iter()
        .find(|c| c["provider"] == "anthropic")
        .unwrap();
    assert_eq!(anthropic["accounts"], json!(["work", "home"]));
    assert!(!anthropic["services"].as_array().unwrap().is_empty());
    let available = v["data"]["available"].as_array().unwrap();
    assert_eq!(available.len(), 34);
    assert!(available.contains(&json!("google")));
    assert!(!available.contains(&json!("openai")));
}

#[test]
fn provider_and_service_context() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    // Not connected: 200 with how to connect.
    let (status, v) = s.get("/ai/context/openai", Some(&key));
    assert_eq!(status, 200, "{v}");
    let p = &v["data"];
    assert_eq!(p["connected"], false);
    assert_eq!(p["authType"], "api_key");
    assert_eq!(p["accounts"], json!([]));
    assert_eq!(p["fields"][0]["name"], "apiKey");
    assert!(
        p["connect"]["command"]
            .as_str()
            .unwrap()
            .contains("akhrot add openai")
    );
    assert_eq!(p["getToken"]["method"], "POST");
    assert!(
        p["getToken"]["curl"]
            .as_str()
            .unwrap()
            .contains(&format!("{}/tokens/fetch", s.base))
    );

    s.add(
        "mailgun",
        None,
        json!({"apiKey": "key-mg", "domain": "mg.example.com"}),
    );
    let (_, v) = s.get("/ai/context/mailgun", Some(&key));
    let p = &v["data"];
    assert_eq!(p["connected"], true);
    assert_eq!(p["accounts"][0]["account"], "default");
    assert_eq!(p["accounts"][0]["status"], "connected");
    assert!(p["accounts"][0]["expiresAt"].is_null());
    let service = p["services"][0]["code"].as_str().unwrap().to_owned();
    let (status, v) = s.get(&format!("/ai/context/mailgun/{service}"), Some(&key));
    assert_eq!(status, 200, "{v}");
    let svc = &v["data"];
    let examples = svc["examples"].as_array().unwrap();
    assert!(examples.len() >= 2);
    for e in examples {
        let curl = e["curl"].as_str().unwrap();
        assert!(curl.starts_with("curl "), "{curl}");
        assert!(e["url"].as_str().unwrap().starts_with("https://"));
        assert!(!curl.contains("key-mg"), "no secret in examples");
    }
    // Non-secret values of the connection fill the templates.
    assert!(
        serde_json::to_string(svc)
            .unwrap()
            .contains("mg.example.com")
    );
    assert!(
        svc["getToken"]["curl"]
            .as_str()
            .unwrap()
            .contains("/tokens/fetch")
    );

    // OAuth provider: scopes and how to start a session.
    let (_, v) = s.get("/ai/context/google", Some(&key));
    assert_eq!(v["data"]["authType"], "oauth2");
    assert!(
        v["data"]["connect"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/sessions")
    );
    let (status, v) = s.get("/ai/context/google/gmail", Some(&key));
    assert_eq!(status, 200);
    assert!(
        v["data"]["baseUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://gmail.googleapis.com")
    );

    let (status, v) = s.get("/ai/context/nosuch", Some(&key));
    assert_eq!((status, code(&v)), (404, "PROVIDER_NOT_FOUND"));
    let (status, v) = s.get("/ai/context/google/nosuch", Some(&key));
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["status"], "error");
}

#[test]
fn token_fetch_for_api_key_and_telegram_providers() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    s.add("openai", None, json!({"apiKey": "sk-fetch-1"}));
    let (status, v) = fetch(
        &s,
        &key,
        json!({"provider": "openai", "reason": "summarise my notes"}),
    );
    assert_eq!(status, 200, "{v}");
    let t = &v["data"];
    assert_eq!(t["accessToken"], "sk-fetch-1");
    assert_eq!(t["provider"], "openai");
    assert_eq!(t["account"], "default");
    assert!(t["expiresAt"].is_null());
    assert_eq!(t["scopes"], json!([]));
    assert!(t["tokenType"].is_string());

    s.add(
        "twilio",
        None,
        json!({"accountSid": "AC42", "authToken": "tw-tok"}),
    );
    let (_, v) = fetch(&s, &key, json!({"provider": "twilio"}));
    assert_eq!(v["data"]["accessToken"], "tw-tok");
    assert_eq!(v["data"]["accountSid"], "AC42");

    let session = telethon_session();
    s.add(
        "telegram",
        None,
        json!({"apiId": "123456", "apiHash": "0123abcd", "session": session}),
    );
    let (_, v) = fetch(&s, &key, json!({"provider": "telegram"}));
    let t = &v["data"];
    assert_eq!(t["accessToken"], json!(session));
    assert_eq!(
        t["sessionTelethon"],
        json!(session),
        "already Telethon's format"
    );
    assert!(t["sessionGramjs"].as_str().unwrap().starts_with('1'));
    assert_eq!(t["apiId"], 123456, "apiId is an integer");
    assert_eq!(t["apiHash"], "0123abcd");
    assert_eq!(t["type"], "mtproto");
}

#[test]
fn accounts_select_and_default_to_the_first_connected() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    s.add("anthropic", Some("work"), json!({"apiKey": "sk-work"}));
    s.add("anthropic", Some("home"), json!({"apiKey": "sk-home"}));
    let (_, v) = fetch(&s, &key, json!({"provider": "anthropic"}));
    assert_eq!(
        (
            v["data"]["account"].as_str(),
            v["data"]["accessToken"].as_str()
        ),
        (Some("work"), Some("sk-work"))
    );
    let (_, v) = fetch(
        &s,
        &key,
        json!({"provider": "anthropic", "account": "home"}),
    );
    assert_eq!(v["data"]["accessToken"], "sk-home");
    let (status, v) = fetch(
        &s,
        &key,
        json!({"provider": "anthropic", "account": "nope"}),
    );
    assert_eq!((status, code(&v)), (404, "INTEGRATION_NOT_FOUND"));
    // Replacing an account's key keeps its place.
    s.add("anthropic", Some("work"), json!({"apiKey": "sk-work-2"}));
    let (_, v) = fetch(&s, &key, json!({"provider": "anthropic"}));
    assert_eq!(v["data"]["accessToken"], "sk-work-2");
}

#[test]
fn fetch_error_codes() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    s.add("openai", None, json!({"apiKey": "sk-err-1"}));
    let (status, v) = fetch(&s, &key, json!({"provider": "nosuch"}));
    assert_eq!((status, code(&v)), (404, "PROVIDER_NOT_FOUND"));
    let (status, v) = fetch(&s, &key, json!({"provider": "google"}));
    assert_eq!((status, code(&v)), (404, "INTEGRATION_NOT_FOUND"));
    let (status, v) = fetch(&s, &key, json!({"provider": "stripe"}));
    assert_eq!((status, code(&v)), (404, "INTEGRATION_NOT_FOUND"));
    for bad in [
        json!({}),
        json!({"provider": 5}),
        json!({"provider": ""}),
        json!([1]),
        json!("x"),
        json!({"provider": "openai", "account": 3}),
    ] {
        let (status, v) = fetch(&s, &key, bad.clone());
        assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{bad}");
    }
    let long_reason = "r".repeat(501);
    let (status, v) = fetch(
        &s,
        &key,
        json!({"provider": "openai", "reason": long_reason}),
    );
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"));
    assert!(!v.to_string().contains("sk-err-1"));
    // An audit filter names a known action; an unknown one says which are.
    let (status, v) = s.get("/admin/audit?action=tokens", Some(&s.admin_token()));
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
    assert!(v.to_string().contains("token, proxy, connect"), "{v}");
}

#[test]
fn policies_deny_and_unallowed_providers() {
    let d = Dirs::new();
    let s = Server::start_with(&d, Opts::default().arg("--approval-timeout").arg("1")).unwrap();
    let key = s.create_key("scoped", &["openai"]);
    s.add("openai", None, json!({"apiKey": "sk-pol-1"}));
    s.add("anthropic", None, json!({"apiKey": "sk-pol-2"}));
    let (status, _) = fetch(&s, &key, json!({"provider": "openai"}));
    assert_eq!(status, 200);
    // Not allowed yet: the user is asked; nobody answers within the (1 s) timeout.
    let (status, v) = fetch(&s, &key, json!({"provider": "anthropic"}));
    assert_eq!((status, code(&v)), (408, "APPROVAL_TIMEOUT"));
    assert!(!v.to_string().contains("sk-pol-2"));
    s.admin_post(
        "/admin/policies",
        &json!({"agent": "scoped", "provider": "openai", "mode": "deny"}),
    );
    let (status, v) = fetch(&s, &key, json!({"provider": "openai"}));
    assert_eq!((status, code(&v)), (403, "APPROVAL_DENIED"));
    s.admin_post(
        "/admin/policies",
        &json!({"agent": "scoped", "provider": "anthropic", "mode": "allow"}),
    );
    let (status, _) = fetch(&s, &key, json!({"provider": "anthropic"}));
    assert_eq!(status, 200);
}

#[test]
fn rate_limited_with_retry_after() {
    let d = Dirs::new();
    let s = Server::start_with(&d, Opts::default().arg("--rate-limit").arg("5")).unwrap();
    let key = s.create_key("fast", &["*"]);
    let other = s.create_key("other", &["*"]);
    for _ in 0..5 {
        assert_eq!(s.get("/ai/context/summary", Some(&key)).0, 200);
    }
    let raw = s.raw(&format!(
        "GET /ai/context/summary HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n",
        s.port
    ));
    assert!(raw.starts_with("HTTP/1.1 429"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: "), "{raw}");
    assert!(raw.contains("RATE_LIMITED"));
    assert_eq!(
        s.get("/ai/context/summary", Some(&other)).0,
        200,
        "limits are per key"
    );
}

fn raw_status(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn error_messages_never_echo_submitted_secrets() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let admin = s.admin_token();
    // A value of the wrong type in an admin body must not be echoed back.
    let (status, v) = s.post(
        "/admin/connections",
        Some(&admin),
        &json!({"provider": "openai", "fields": {"apiKey": ["sk-echo-secret-1"]}}),
    );
    assert_eq!(status, 400);
    assert!(!v.to_string().contains("sk-echo-secret-1"), "{v}");
    let (status, v) = s.post(
        "/admin/connections",
        Some(&admin),
        &json!({"provider": "openai", "fields": {"nokey": "sk-echo-secret-2"}}),
    );
    assert_eq!(status, 400);
    assert!(!v.to_string().contains("sk-echo-secret-2"), "{v}");
    let (status, v) = s.post(
        "/admin/connections",
        Some(&admin),
        &json!({"provider": "openai", "fields": {"apiKey": "sk-bad\nline"}}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(!v.to_string().contains("sk-bad"), "{v}");
}

#[test]
fn no_5xx_for_odd_requests() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let admin = s.admin_token();
    let host = format!("127.0.0.1:{}", s.port);
    let paths = [
        "/",
        "/ai",
        "/ai/context",
        "/ai/context/",
        "/ai/context/%00",
        "/ai/context/..%2F..%2Fetc",
        "/ai/context/openai/..",
        "/ai/context/openai/x/y",
        "/tokens/fetch",
        "/admin",
        "/admin/keys/%ff",
        "/admin/connections/%2e%2e",
        "/oauth/sessions",
        "/oauth/sessions/abc",
        "/oauth/callback?state=x&code=y",
        &"/a".repeat(2000),
    ];
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE",
    ];
    let bodies = [
        "",
        "{}",
        "null",
        "[]",
        "{\"provider\":{}}",
        "\u{0}\u{1}",
        "{\"provider\":\"openai\"",
        "{\"provider\":\"\\ud800\"}",
    ];
    let mut n = 0;
    for (i, path) in paths.iter().enumerate() {
        for (j, m) in methods.iter().enumerate() {
            let body = bodies[(i + j) % bodies.len()];
            let bearer = if (i + j) % 3 == 0 {
                admin.as_str()
            } else {
                key.as_str()
            };
            let r = s.raw(&format!(
                "{m} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
            let status = raw_status(&r);
            assert!((200..500).contains(&status), "{m} {path} -> {status}: {r}");
            n += 1;
        }
    }
    assert!(n > 100);
    // Still healthy afterwards.
    assert_eq!(s.get("/ai/context/summary", Some(&key)).0, 200);
}

#[test]
fn unknown_routes_and_methods_answer_in_the_envelope() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let (status, v) = s.get("/nope", None);
    assert_eq!(status, 404);
    assert_eq!(code(&v), "NOT_FOUND");
    let (status, v) = s.request("DELETE", "/tokens/fetch", None, None);
    assert_eq!(status, 405);
    assert_eq!(v["status"], "error");
}
