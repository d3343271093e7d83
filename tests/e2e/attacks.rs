//! The attack suite: what a hostile web page, a hostile or confused agent, or a forged redirect
//! can try against the real `akhrot serve`, each refused in the contract's envelope with no 5xx,
//! and nothing changed behind the refusal.
//!
//! - DNS rebinding: a foreign `Host` (and its look-alikes), no `Host`, an absolute-form target.
//! - Cross-site browser requests: a foreign `Origin`, `Origin: null`, `Sec-Fetch-Site`,
//!   no-preflight "simple" form posts (text/plain, urlencoded, multipart), with the UI cookie.
//! - The agent key on every admin route; self-approval by every route an agent can reach,
//!   `/mcp` included.
//! - Forged, replayed, cross-session, stateless and expired OAuth callbacks (real
//!   oidc-provider; the expiry with libfaketime moving the server's wall clock).
//! - Oversize bodies, headers and targets.
//! - Path traversal in proxy paths, in every encoding; open-proxy attempts.
//! - Timing of the agent key check.
//! - The plaintext-secret scanner of the harness, shown to find a planted secret.
//! - `attacks/callers.rs`: who the prompt says is calling (over `/mcp`, a forked decoy); joins.
//! - `attacks/exhaustion.rs`: idle and slow connections under a real descriptor limit.
//! - `attacks/sessions.rs`: consent sessions as agent requests; no replacing a connection.
//! - `attacks/stale_owner.rs`: the CLI after a crash, with another process on the owner's port.
//! - `attacks/leaks.rs`: the UI sign-in link in service logs; a credential echoed by a provider.
#![allow(clippy::unwrap_used)]

// Attacks grouped by what they go after, one file each under `attacks/`.
#[path = "attacks/callers.rs"]
mod callers;
#[path = "attacks/exhaustion.rs"]
mod exhaustion;
#[path = "attacks/leaks.rs"]
mod leaks;
#[path = "attacks/sessions.rs"]
mod sessions;
#[path = "attacks/stale_owner.rs"]
mod stale_owner;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

// ------------------------------------------------------------------------------- helpers

fn raw_status(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The body of a raw answer, as JSON (Null when it is not JSON).
fn raw_json(raw: &str) -> Value {
    raw.split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

fn host(s: &Server) -> String {
    format!("127.0.0.1:{}", s.port)
}

/// One request on its own connection: `head` is the request line and headers (without the
/// final blank line); `Content-Length` and `Connection: close` are added.
fn send(s: &Server, head: &str, body: &str) -> String {
    let cl = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    s.raw(&format!("{head}\r\n{cl}Connection: close\r\n\r\n{body}"))
}

/// Asserts a refusal with status `status` and code `code` in the envelope.
fn refused(raw: &str, status: u16, code_: &str, what: &str) {
    assert_eq!(raw_status(raw), status, "{what}: {raw}");
    assert_eq!(
        code(&raw_json(raw)),
        code_,
        "{what}: {}",
        &raw[..raw.len().min(400)]
    );
}

fn ok_json(_: &Seen) -> Answer {
    (200, "application/json", r#"{"ok":true}"#.to_owned())
}

// --------------------------------------------------------------------------- DNS rebinding

#[test]
fn dns_rebinding_foreign_hosts_are_refused_on_every_route() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let admin = s.admin_token();
    let p = s.port;
    let get = |target: &str, host_line: &str, bearer: &str| {
        send(
            &s,
            &format!("GET {target} HTTP/1.1\r\n{host_line}Authorization: Bearer {bearer}"),
            "",
        )
    };
    // This listener's own names pass.
    for h in [
        format!("127.0.0.1:{p}"),
        format!("localhost:{p}"),
        format!("[::1]:{p}"),
        format!("LOCALHOST:{p}"),
    ] {
        let r = get("/ai/context/summary", &format!("Host: {h}\r\n"), &key);
        assert_eq!(raw_status(&r), 200, "{h}: {r}");
    }
    // A page at evil.example whose name was rebound to 127.0.0.1 sends `Host: evil.example`;
    // every look-alike of a loopback name is foreign too.
    let foreign = [
        "evil.example".to_owned(),
        format!("evil.example:{p}"),
        "127.0.0.1".into(),
        "localhost".into(),
        format!("127.0.0.1:{}", p.wrapping_add(1)),
        format!("127.0.0.1.nip.io:{p}"),
        format!("127.0.0.1.evil.com:{p}"),
        format!("localhost.evil.com:{p}"),
        format!("localhost.:{p}"),
        format!("127.0.0.1.:{p}"),
        format!("127.0.0.1:{p}.evil.com"),
        format!("127.0.0.1:{p}@evil.com"),
        format!("evil.com#127.0.0.1:{p}"),
        format!("0.0.0.0:{p}"),
        format!("127.0.0.2:{p}"),
        format!("[::ffff:127.0.0.1]:{p}"),
        format!("2130706433:{p}"),
        format!("0x7f000001:{p}"),
        format!("127.1:{p}"),
        format!(" 127.0.0.1:{p}x"),
        String::new(),
    ];
    let routes: &[(&str, &str)] = &[
        ("/ai/skill", ""),
        ("/ai/context/summary", &key),
        ("/openapi.json", ""),
        ("/oauth/callback?state=x&code=y", ""),
        ("/oauth/sessions/oas_x", &key),
        ("/proxy/openai/v1/models", &key),
        ("/admin/status", &admin),
        ("/admin/keys", &admin),
        ("/ui/", ""),
        ("/", ""),
    ];
    for h in &foreign {
        for (route, bearer) in routes {
            let r = get(route, &format!("Host: {h}\r\n"), bearer);
            refused(&r, 403, "FORBIDDEN_HOST", &format!("Host {h:?} {route}"));
        }
    }
    // Two Host headers, either one foreign.
    for (a, b) in [
        (format!("127.0.0.1:{p}"), "evil.example".to_owned()),
        ("evil.example".to_owned(), format!("127.0.0.1:{p}")),
    ] {
        let r = get(
            "/ai/context/summary",
            &format!("Host: {a}\r\nHost: {b}\r\n"),
            &key,
        );
        assert!(
            matches!(raw_status(&r), 400 | 403),
            "Host {a} + Host {b}: {r}"
        );
    }
    // No Host at all: HTTP/1.0 (which may omit it) and HTTP/1.1 (which must not).
    let r = s.raw("GET /ai/skill HTTP/1.0\r\n\r\n");
    assert!(matches!(raw_status(&r), 400 | 403), "{r}");
    let r = send(
        &s,
        &format!("GET /ai/context/summary HTTP/1.1\r\nAuthorization: Bearer {key}"),
        "",
    );
    assert!(matches!(raw_status(&r), 400 | 403), "{r}");
    // An absolute-form target names the host the request is for (RFC 9112 §3.2.2: it wins
    // over `Host`): a foreign one is refused even with a loopback `Host` header.
    for target in [
        "http://evil.example/ai/context/summary".to_owned(),
        format!("http://evil.example:{p}/ai/context/summary"),
        format!("http://127.0.0.1.evil.com:{p}/ai/context/summary"),
    ] {
        let r = get(&target, &format!("Host: 127.0.0.1:{p}\r\n"), &key);
        refused(&r, 403, "FORBIDDEN_HOST", &target);
    }
    // ... and its own name in absolute form is fine.
    let r = get(
        &format!("http://127.0.0.1:{p}/ai/context/summary"),
        &format!("Host: 127.0.0.1:{p}\r\n"),
        &key,
    );
    assert_eq!(raw_status(&r), 200, "{r}");
    // Still healthy.
    assert_eq!(s.get("/ai/context/summary", Some(&key)).0, 200);
}

// ------------------------------------------------------------- cross-site browser requests

#[test]
fn cross_site_browser_requests_and_simple_form_posts_are_refused() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    s.add("openai", None, json!({"apiKey": "sk-cross-site-0001"}));
    let p = s.port;
    let h = host(&s);
    let get = |extra: &str| {
        send(
            &s,
            format!(
                "GET /ai/context/summary HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}\r\n{extra}"
            )
            .trim_end(),
            "",
        )
    };
    // Web-page origins and cross-site fetch metadata are refused; this origin is fine.
    for extra in [
        "Origin: https://evil.example".to_owned(),
        "Origin: null".into(),
        format!("Origin: http://localhost:{}", p.wrapping_add(1)),
        format!("Origin: http://127.0.0.1.evil.com:{p}"),
        format!("Origin: http://127.0.0.1:{p}.evil.com"),
        "Origin: file://".into(),
        "Sec-Fetch-Site: cross-site".into(),
        "Sec-Fetch-Site: same-site".into(),
        format!("Origin: http://127.0.0.1:{p}\r\nOrigin: https://evil.example"),
    ] {
        let r = get(&format!("{extra}\r\n"));
        refused(&r, 403, "FORBIDDEN_HOST", &extra);
    }
    assert_eq!(
        raw_status(&get(&format!("Origin: http://127.0.0.1:{p}\r\n"))),
        200
    );
    assert_eq!(raw_status(&get("Sec-Fetch-Site: same-origin\r\n")), 200);
    // A cross-site top-level navigation reaches only the pages meant for people (the OAuth
    // callback, the UI), never the API.
    let r = get("Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\n");
    refused(&r, 403, "FORBIDDEN_HOST", "navigation to the API");

    // "Simple" requests a page can send without a preflight: form posts in the three form
    // encodings, with and without a (foreign or missing) Origin, to every state-changing route.
    // The browser may attach the UI's cookie (were it not SameSite=Strict): sign in first.
    let link = s.admin_post("/admin/ui-link", &json!({}))["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send(
        &s,
        &format!(
            "GET {} HTTP/1.1\r\nHost: {h}\r\nSec-Fetch-Site: none",
            link.strip_prefix(&s.base).unwrap()
        ),
        "",
    );
    assert_eq!(raw_status(&r), 303, "{r}");
    let cookie = r
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().split(';').next().unwrap().to_owned())
        })
        .unwrap();
    secrets::register(cookie.split_once('=').unwrap().1);
    let w = s.create_key("waiter", &[]);
    let waiting = {
        let base = s.base.clone();
        std::thread::spawn(move || {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent()
                .post(format!("{base}/tokens/fetch"))
                .header("Authorization", format!("Bearer {w}"))
                .send_json(json!({"provider": "openai"}))
                .map(|r| r.status().as_u16())
        })
    };
    let approval = loop {
        let list = s.admin_get("/admin/approvals");
        if let Some(a) = list.as_array().unwrap().first() {
            break a["id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let forms: [(&str, String); 3] = [
        ("text/plain", r#"{"answer":"always","x":"="}"#.to_owned()),
        (
            "application/x-www-form-urlencoded",
            "answer=always&provider=openai".to_owned(),
        ),
        (
            "multipart/form-data; boundary=XyZ",
            "--XyZ\r\nContent-Disposition: form-data; name=\"answer\"\r\n\r\nalways\r\n--XyZ--\r\n"
                .to_owned(),
        ),
    ];
    let targets = [
        format!("/admin/approvals/{approval}"),
        "/admin/policies".to_owned(),
        "/admin/pause".to_owned(),
        "/admin/keys".to_owned(),
        "/admin/connections".to_owned(),
        "/admin/clients".to_owned(),
        "/admin/settings".to_owned(),
        "/admin/ui-link".to_owned(),
        "/tokens/fetch".to_owned(),
        "/oauth/sessions".to_owned(),
        "/oauth/callback".to_owned(),
        "/mcp".to_owned(),
    ];
    let mut n = 0;
    for target in &targets {
        for (ct, body) in &forms {
            for origin in [
                "Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\n",
                "Origin: null\r\n",
                "",
            ] {
                let r = send(
                    &s,
                    &format!(
                        "POST {target} HTTP/1.1\r\nHost: {h}\r\nCookie: {cookie}\r\n{origin}Content-Type: {ct}"
                    ),
                    body,
                );
                let status = raw_status(&r);
                // Refused for its origin (403), for not being JSON (400), for having no
                // credential (401), or the route takes no POST (405): never carried out.
                assert!(
                    matches!(status, 400 | 401 | 403 | 405),
                    "{target} {ct} {origin:?}: {r}"
                );
                if !origin.is_empty() {
                    assert_eq!(status, 403, "{target} {ct} {origin:?}: {r}");
                }
                n += 1;
            }
        }
    }
    assert_eq!(n, targets.len() * 9);
    // Writes need JSON even with a valid agent key (no form can set that content type).
    let body = r#"{"provider":"openai"}"#;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ] {
        let ct_line = if ct.is_empty() {
            String::new()
        } else {
            format!("\r\nContent-Type: {ct}")
        };
        let r = send(
            &s,
            &format!(
                "POST /tokens/fetch HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}{ct_line}"
            ),
            body,
        );
        refused(&r, 400, "BAD_REQUEST", ct);
    }
    // Nothing happened: the approval still waits, nothing was paused, created or stored.
    let list = s.admin_get("/admin/approvals");
    assert_eq!(list[0]["id"], approval.as_str(), "{list}");
    assert_eq!(s.admin_get("/admin/status")["paused"], false);
    assert_eq!(s.admin_get("/admin/keys").as_array().unwrap().len(), 2);
    assert_eq!(
        s.admin_get("/admin/connections").as_array().unwrap().len(),
        1
    );
    let (st, _) = s.post(
        &format!("/admin/approvals/{approval}"),
        Some(&s.admin_token()),
        &json!({"answer": "deny"}),
    );
    assert_eq!(st, 200);
    assert_eq!(waiting.join().unwrap().unwrap(), 403);

    // No CORS grant, even on a preflight.
    let r = send(
        &s,
        &format!(
            "OPTIONS /tokens/fetch HTTP/1.1\r\nHost: {h}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST"
        ),
        "",
    );
    assert!(
        !r.to_ascii_lowercase().contains("access-control-allow"),
        "{r}"
    );
    let r = get("");
    assert!(
        !r.to_ascii_lowercase().contains("access-control-allow"),
        "{r}"
    );
}

// ------------------------------------------------------------- the agent key is not admin

/// Every `/admin/…` route the server has, from its router (so a new one cannot be missed).
fn admin_routes_in_router() -> Vec<String> {
    let src = include_str!("../../crates/akhrot-server/src/lib.rs");
    let mut out: Vec<String> = src
        .split('"')
        .filter(|s| s.starts_with("/admin"))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn agent_keys_are_refused_on_every_admin_route() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let routes: &[(&str, &str, Option<Value>)] = &[
        ("GET", "/admin/status", None),
        ("GET", "/admin/keys", None),
        (
            "POST",
            "/admin/keys",
            Some(json!({"name": "evil", "allowAll": true})),
        ),
        ("DELETE", "/admin/keys/bot", None),
        (
            "POST",
            "/admin/policies",
            Some(json!({"agent": "bot", "provider": "*", "mode": "allow"})),
        ),
        ("GET", "/admin/connections", None),
        (
            "POST",
            "/admin/connections",
            Some(json!({"provider": "openai", "fields": {"apiKey": "sk-agent-wrote-this"}})),
        ),
        ("DELETE", "/admin/connections/openai", None),
        ("POST", "/admin/token", Some(json!({"provider": "openai"}))),
        ("GET", "/admin/providers", None),
        ("GET", "/admin/providers/openai", None),
        ("GET", "/admin/approvals", None),
        (
            "POST",
            "/admin/approvals/apr_x",
            Some(json!({"answer": "always"})),
        ),
        ("POST", "/admin/pause", Some(json!({"paused": true}))),
        ("GET", "/admin/audit", None),
        ("GET", "/admin/events", None),
        ("GET", "/admin/clients", None),
        (
            "POST",
            "/admin/clients",
            Some(json!({"provider": "github", "clientId": "x"})),
        ),
        (
            "POST",
            "/admin/sessions",
            Some(json!({"provider": "github"})),
        ),
        ("GET", "/admin/sessions/oas_x", None),
        ("GET", "/admin/settings", None),
        (
            "POST",
            "/admin/settings",
            Some(json!({"approvalTimeoutSecs": 1})),
        ),
        ("POST", "/admin/ui-link", Some(json!({}))),
        ("POST", "/admin/logout", Some(json!({}))),
    ];
    // Every admin route of the router is in the list above.
    for r in admin_routes_in_router() {
        let pattern = r.split('{').next().unwrap().to_owned();
        assert!(
            routes.iter().any(|(_, p, _)| if r.contains('{') {
                p.starts_with(&pattern) && p.len() > pattern.len()
            } else {
                *p == r
            }),
            "admin route {r} is not covered by this test"
        );
    }
    let h = host(&s);
    for (m, p, b) in routes {
        let (status, v) = s.request(m, p, Some(&key), b.as_ref());
        assert_eq!(status, 401, "{m} {p}: {v}");
        assert_eq!(code(&v), "UNAUTHORIZED");
        // With the UI's header as well (the UI's way in needs its session cookie, not a key).
        let body = b.as_ref().map(Value::to_string).unwrap_or_default();
        let ct = if body.is_empty() {
            ""
        } else {
            "\r\nContent-Type: application/json"
        };
        let r = send(
            &s,
            &format!(
                "{m} {p} HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}\r\nX-Akhrot-UI: 1{ct}"
            ),
            &body,
        );
        refused(&r, 401, "UNAUTHORIZED", &format!("{m} {p} + UI header"));
        // The key in another place, or a look-alike scheme.
        for auth in [
            format!("Authorization: Basic {key}"),
            format!("Authorization: Bearer  {key} "),
            format!("Authorization: Bearer {key}, Bearer {key}"),
            format!("X-Akhrot-UI: 1\r\nCookie: akhrot_session={key}"),
        ] {
            let r = send(
                &s,
                &format!("{m} {p} HTTP/1.1\r\nHost: {h}\r\n{auth}{ct}"),
                &body,
            );
            assert_eq!(raw_status(&r), 401, "{m} {p} {auth}: {r}");
        }
    }
    assert_eq!(
        s.admin_get("/admin/keys").as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    assert_eq!(s.admin_get("/admin/status")["paused"], false);
    assert_eq!(s.admin_get("/admin/connections"), json!([]));
}

// ---------------------------------------------------------------------------- self-approval

/// A JSON-RPC call to `/mcp` with an agent key; returns the JSON-RPC answer.
fn mcp_call(s: &Server, key: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let r = send(
        s,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream",
            host(s)
        ),
        &body,
    );
    assert_eq!(raw_status(&r), 200, "{r}");
    let body = r.split_once("\r\n\r\n").unwrap().1;
    // A JSON answer, or server-sent events whose data lines hold it.
    serde_json::from_str(body).unwrap_or_else(|_| {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC answer in {body}"))
    })
}

fn mcp_tool(s: &Server, key: &str, name: &str, args: Value) -> Value {
    mcp_call(
        s,
        key,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
}

#[test]
fn an_agent_cannot_answer_its_own_prompt_or_change_its_policy() {
    let up = StandIn::start(ok_json);
    let d = Dirs::new();
    write_provider_file(
        &d,
        "standin",
        &api_key_provider("hdr", INJECT_X_API_KEY, &[("api", up.url("/v1"))]),
    );
    let s = Server::start_with(&d, Opts::default().arg("--approval-timeout").arg("60")).unwrap();
    s.add("openai", None, json!({"apiKey": "sk-self-approve-01"}));
    s.add("hdr", None, json!({"apiKey": "secret-hdr-self-01"}));
    let key = s.create_key("sly", &[]);
    let h = host(&s);
    let waiting = {
        let base = s.base.clone();
        let key = key.clone();
        std::thread::spawn(move || {
            let mut r = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent()
                .post(format!("{base}/tokens/fetch"))
                .header("Authorization", format!("Bearer {key}"))
                .send_json(json!({"provider": "openai", "reason": "please"}))
                .unwrap();
            let st = r.status().as_u16();
            (st, r.body_mut().read_to_string().unwrap())
        })
    };
    let id = loop {
        let list = s.admin_get("/admin/approvals");
        if let Some(a) = list.as_array().unwrap().first() {
            break a["id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The agent sees its own prompt (that is what `/ai/approvals` is for) ...
    let (st, v) = s.get("/ai/approvals", Some(&key));
    assert_eq!(st, 200, "{v}");
    assert!(v.to_string().contains(&id), "{v}");
    // ... and tries every way it has to answer it or to allow itself.
    for (m, path, body) in [
        (
            "POST",
            format!("/admin/approvals/{id}"),
            json!({"answer": "always"}),
        ),
        (
            "POST",
            format!("/admin/approvals/{id}"),
            json!({"answer": "once"}),
        ),
        (
            "POST",
            "/admin/policies".into(),
            json!({"agent": "sly", "provider": "*", "mode": "allow"}),
        ),
        (
            "POST",
            "/admin/policies".into(),
            json!({"agent": "sly", "provider": "openai", "mode": "allow"}),
        ),
        (
            "POST",
            "/admin/keys".into(),
            json!({"name": "sly2", "allowAll": true}),
        ),
        ("POST", "/admin/token".into(), json!({"provider": "openai"})),
        (
            "POST",
            "/ai/approvals".into(),
            json!({"id": id, "answer": "always"}),
        ),
        (
            "POST",
            format!("/ai/approvals/{id}"),
            json!({"answer": "always"}),
        ),
        (
            "PUT",
            "/ai/approvals".into(),
            json!({"id": id, "answer": "always"}),
        ),
    ] {
        let (st, v) = s.request(m, &path, Some(&key), Some(&body));
        assert!(matches!(st, 400 | 401 | 404 | 405), "{m} {path}: {st} {v}");
        assert_eq!(v["status"], "error", "{m} {path}: {v}");
    }
    // Through the proxy: traversal out of /proxy/ toward /admin, in several spellings, and a
    // provider "name" that is a path.
    for target in [
        format!("/proxy/hdr/../../admin/approvals/{id}"),
        format!("/proxy/hdr/%2e%2e/%2e%2e/admin/approvals/{id}"),
        format!("/proxy/..%2fadmin/approvals/{id}"),
        format!("/proxy/%2e%2e/admin/approvals/{id}"),
        format!("/proxy/hdr/..%2F..%2Fadmin%2Fapprovals%2F{id}"),
    ] {
        let r = send(
            &s,
            &format!(
                "POST {target} HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json"
            ),
            r#"{"answer":"always"}"#,
        );
        assert!(
            matches!(raw_status(&r), 400 | 401 | 403 | 404),
            "{target}: {r}"
        );
    }
    // Through /mcp: every tool, aimed at the admin routes.
    let tools = mcp_call(&s, &key, "tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{tools}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"call_api") && names.contains(&"get_token"),
        "{names:?}"
    );
    for (tool, args) in [
        (
            "call_api",
            json!({"provider": "hdr", "method": "POST", "path": format!("../../admin/approvals/{id}"), "body": {"answer": "always"}}),
        ),
        (
            "call_api",
            json!({"provider": "hdr", "method": "POST", "path": format!("%2e%2e/%2e%2e/admin/approvals/{id}")}),
        ),
        (
            "call_api",
            json!({"provider": "..", "method": "POST", "path": format!("admin/approvals/{id}")}),
        ),
        (
            "call_api",
            json!({"provider": "../admin", "method": "POST", "path": format!("approvals/{id}")}),
        ),
        (
            "call_api",
            json!({"provider": "hdr", "method": "POST", "path": format!("x/../../../admin/approvals/{id}")}),
        ),
        (
            "call_api",
            json!({"provider": "hdr", "method": "POST", "path": "x", "headers": {"X-Akhrot-UI": "1"}}),
        ),
        (
            "call_api",
            json!({"provider": "hdr", "method": "POST", "path": "x", "headers": {"Authorization": "Bearer x"}}),
        ),
        (
            "describe",
            json!({"provider": format!("../../admin/approvals/{id}")}),
        ),
        (
            "describe",
            json!({"provider": "openai", "service": format!("../../../admin/approvals/{id}")}),
        ),
        (
            "check_connection",
            json!({"sessionId": format!("../../admin/approvals/{id}")}),
        ),
        ("start_connection", json!({"provider": "../admin/policies"})),
        ("get_token", json!({"provider": "../admin/token"})),
    ] {
        let v = mcp_tool(&s, &key, tool, args.clone());
        let text = v.to_string();
        assert!(
            v["result"]["isError"] == true || v.get("error").is_some(),
            "{tool} {args}: {text}"
        );
    }
    assert!(
        up.requests().iter().all(|r| !r.path.contains("admin")),
        "{:?}",
        up.requests()
    );
    // The prompt is still waiting, the policy unchanged; the user's "deny" decides.
    let list = s.admin_get("/admin/approvals");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    let keys = s.admin_get("/admin/keys");
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert!(!keys.to_string().contains("\"allow\""), "{keys}");
    let (st, _) = s.post(
        &format!("/admin/approvals/{id}"),
        Some(&s.admin_token()),
        &json!({"answer": "deny"}),
    );
    assert_eq!(st, 200);
    let (st, body) = waiting.join().unwrap();
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("APPROVAL_DENIED"), "{body}");
    // And the audit log says the user denied it, with nothing approved.
    let log = s.admin_get("/admin/audit?agent=sly");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] != "handed_out"),
        "{log}"
    );
}

// ------------------------------------------------------------- forged and replayed callbacks

fn oauth_env() -> OauthEnv {
    let oidc = Oidc::start(&[]);
    let d = Dirs::new();
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", "client_secret_basic"));
    let s = Server::start(&d);
    OauthEnv::with_basic_client(oidc, s, d)
}

#[test]
fn forged_replayed_and_cross_session_callbacks_are_refused() {
    let e = oauth_env();
    let (id, url) = e.start();
    let cb = e.consent(&url, "gina", false);
    let code_value = param(&cb, "code").unwrap();
    let state = param(&cb, "state").unwrap();
    // A forged state with the real code.
    let (status, page) = e.deliver(&format!(
        "{}/oauth/callback?code={code_value}&state=forged",
        e.s.base
    ));
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("not valid"), "{page}");
    // States that look like the real one: a prefix, a case change, padded, doubled.
    for forged in [
        state[..state.len() - 1].to_owned(),
        state.to_ascii_uppercase(),
        format!("{state}x"),
        format!("%20{state}"),
    ] {
        let (status, page) = e.deliver(&format!(
            "{}/oauth/callback?code={code_value}&state={forged}",
            e.s.base
        ));
        assert!(matches!(status, 400 | 404), "{forged}: {status} {page}");
    }
    // The real state twice (which one wins?) is malformed, not a completion.
    let (status, _) = e.deliver(&format!(
        "{}/oauth/callback?code={code_value}&state={state}&state=forged",
        e.s.base
    ));
    assert!(matches!(status, 400 | 404), "{status}");
    // No state at all; an empty one.
    for q in [
        format!("code={code_value}"),
        format!("code={code_value}&state="),
    ] {
        let (status, _) = e.deliver(&format!("{}/oauth/callback?{q}", e.s.base));
        assert_eq!(status, 400, "{q}");
    }
    // A provider error with a forged state does not fail the real session.
    let (status, _) = e.deliver(&format!(
        "{}/oauth/callback?error=access_denied&state=forged",
        e.s.base
    ));
    assert!(matches!(status, 400 | 403), "{status}");
    // Through a foreign Host (DNS rebinding), even with the real state: refused untouched.
    let r = send(
        &e.s,
        &format!(
            "GET {} HTTP/1.1\r\nHost: evil.example:{}",
            cb.strip_prefix(&e.s.base).unwrap(),
            e.s.port
        ),
        "",
    );
    assert_eq!(raw_status(&r), 403, "{r}");
    assert_eq!(
        e.session(&id)["status"],
        "pending",
        "forgeries do not touch the session"
    );
    // The real callback completes it; replaying it is refused.
    let (status, _) = e.deliver(&cb);
    assert_eq!(status, 200);
    let (status, page) = e.deliver(&cb);
    assert_eq!(status, 400, "{page}");
    assert_eq!(e.session(&id)["status"], "completed");
    assert_eq!(
        e.oidc.stat("authorizationCode"),
        1,
        "the replay never reached the server"
    );

    // Code injection: session A's code delivered with session B's state. B's PKCE verifier
    // does not match A's code, so the provider refuses it and nothing connects as A's person.
    let (id_a, url_a) = e.start();
    let (id_b, url_b) = e.start();
    let cb_a = e.consent(&url_a, "mallory", false);
    let cb_b = e.consent(&url_b, "victim", false);
    let spliced = format!(
        "{}/oauth/callback?code={}&state={}",
        e.s.base,
        param(&cb_a, "code").unwrap(),
        param(&cb_b, "state").unwrap()
    );
    let (status, page) = e.deliver(&spliced);
    assert!((400..500).contains(&status), "{status}: {page}");
    assert_eq!(e.session(&id_b)["status"], "failed");
    assert_eq!(e.session(&id_a)["status"], "pending");
    let accounts = e.s.admin_get("/admin/connections").to_string();
    assert!(!accounts.contains("mallory"), "{accounts}");
    // A's own callback still works (its state was never used).
    assert_eq!(e.deliver(&cb_a).0, 200);
    assert_eq!(e.session(&id_a)["status"], "completed");
    // B's state is spent: its real callback is now refused.
    assert_eq!(e.deliver(&cb_b).0, 400);

    // The person cancels at the provider.
    let (id, url) = e.start();
    let cb = e.consent(&url, "gina", true);
    assert_eq!(param(&cb, "error").as_deref(), Some("access_denied"));
    let (status, page) = e.deliver(&cb);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("denied"), "{page}");
    let sess = e.session(&id);
    assert_eq!(sess["status"], "failed");
    assert!(sess["error"].as_str().unwrap().contains("access_denied"));
    // Another agent cannot see this agent's session.
    let other = e.s.create_key("other", &["*"]);
    let (status, v) = e.s.get(&format!("/oauth/sessions/{id}"), Some(&other));
    assert_eq!((status, code(&v)), (404, "SESSION_NOT_FOUND"));
}

/// libfaketime (Debian `libfaketime`, installed by `scripts/setup-deps test`): moves the server's
/// wall clock (only; its monotonic clock and everything else stay real) by what a file says.
fn faketime_lib() -> &'static str {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} is missing: install Debian's libfaketime (scripts/setup-deps test does)"
    );
    lib
}

#[test]
fn the_callback_of_an_expired_session_is_refused_and_never_exchanged() {
    let oidc = Oidc::start(&[]);
    let d = Dirs::new();
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", "client_secret_basic"));
    let clock = d.root.path().join("clock");
    std::fs::write(&clock, "+0\n").unwrap();
    let s = Server::start_with(
        &d,
        Opts::default()
            .env("LD_PRELOAD", faketime_lib())
            .env("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap())
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    )
    .unwrap();
    let e = OauthEnv::with_basic_client(oidc, s, d);
    let (id, url) = e.start();
    let cb = e.consent(&url, "gina", false);
    assert_eq!(e.session(&id)["status"], "pending");
    // Eleven minutes later (the session lives ten).
    std::fs::write(&clock, "+11m\n").unwrap();
    assert_eq!(e.session(&id)["status"], "expired");
    let (status, page) = e.deliver(&cb);
    assert_eq!(status, 410, "{page}");
    assert!(page.to_lowercase().contains("expired"), "{page}");
    assert_eq!(e.session(&id)["status"], "expired");
    // Not even tried at the provider; and a second try is no different.
    assert_eq!(e.oidc.stat("authorizationCode"), 0);
    assert!(matches!(e.deliver(&cb).0, 400 | 410));
    assert_eq!(e.s.admin_get("/admin/connections"), json!([]));
    // The clock back at the real time: a new session still works end to end.
    std::fs::write(&clock, "+0\n").unwrap();
    let (id, url) = e.start();
    let cb = e.consent(&url, "gina", false);
    assert_eq!(e.deliver(&cb).0, 200);
    assert_eq!(e.session(&id)["status"], "completed");
}

// ------------------------------------------------------------------------------- oversize

#[test]
fn oversize_bodies_headers_and_targets_are_refused_and_the_server_stays_up() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let admin = s.admin_token();
    let h = host(&s);
    // A JSON body over the 64 KiB cap: with a Content-Length, and chunked with none.
    let big = format!(
        r#"{{"provider":"openai","reason":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    for (route, bearer) in [
        ("/tokens/fetch", key.as_str()),
        ("/oauth/sessions", key.as_str()),
        ("/admin/connections", admin.as_str()),
        ("/admin/keys", admin.as_str()),
    ] {
        let r = send(
            &s,
            &format!(
                "POST {route} HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json"
            ),
            &big,
        );
        assert!(
            matches!(raw_status(&r), 400 | 413),
            "{route}: {}",
            &r[..200.min(r.len())]
        );
        assert_eq!(code(&raw_json(&r)), "BAD_REQUEST", "{route}");
        let mut chunked = String::new();
        for c in big.as_bytes().chunks(8000) {
            chunked.push_str(&format!(
                "{:x}\r\n{}\r\n",
                c.len(),
                std::str::from_utf8(c).unwrap()
            ));
        }
        chunked.push_str("0\r\n\r\n");
        let r = s.raw(&format!(
            "POST {route} HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunked}"
        ));
        assert!(
            matches!(raw_status(&r), 400 | 413),
            "{route} chunked: {}",
            &r[..200.min(r.len())]
        );
    }
    // A Content-Length far beyond what is sent (the server must not wait for or allocate it).
    let started = Instant::now();
    let r = s.raw(&format!(
        "POST /tokens/fetch HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n{{}}"
    ));
    assert!(matches!(raw_status(&r), 400 | 413), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The same over /mcp, whose own cap applies.
    let huge_rpc = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"describe","arguments":{{"provider":"{}"}}}}}}"#,
        "y".repeat(5 * 1024 * 1024)
    );
    let r = send(
        &s,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream"
        ),
        &huge_rpc,
    );
    let st = raw_status(&r);
    assert!((400..500).contains(&st), "/mcp: {}", &r[..300.min(r.len())]);
    // Fields and values far longer than any real one.
    for body in [
        json!({"provider": "x".repeat(10_000)}),
        json!({"provider": "openai", "account": "a".repeat(10_000)}),
        json!({"provider": "openai", "reason": "r".repeat(60_000)}),
    ] {
        let (st, v) = s.post("/tokens/fetch", Some(&key), &body);
        assert!(matches!(st, 400 | 404), "{st} {v}");
        assert_eq!(v["status"], "error");
    }
    // Huge headers, many headers, a huge target: refused by the HTTP layer (4xx) or answered;
    // never a 5xx, never a crash.
    let long = "h".repeat(200 * 1024);
    let huge = "h".repeat(1024 * 1024);
    let many: String = (0..2000).map(|i| format!("X-H{i}: v\r\n")).collect();
    // (what, request head, the statuses it may get; 0: the connection is closed unanswered).
    let cases: Vec<(&str, String, &[u16])> = vec![
        // Within hyper's ~400 KiB head buffer a long unrelated header is just carried.
        (
            "one 200 KiB header",
            format!("GET /ai/skill HTTP/1.1\r\nHost: {h}\r\nX-Big: {long}"),
            &[200, 431],
        ),
        (
            "one 1 MiB header",
            format!("GET /ai/skill HTTP/1.1\r\nHost: {h}\r\nX-Big: {huge}"),
            &[400, 431, 0],
        ),
        (
            "a 200 KiB Authorization",
            format!(
                "GET /ai/context/summary HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {long}"
            ),
            &[401, 431],
        ),
        (
            "a 200 KiB Host",
            format!("GET /ai/skill HTTP/1.1\r\nHost: {long}"),
            &[403, 431],
        ),
        (
            "2000 headers",
            format!("GET /ai/skill HTTP/1.1\r\nHost: {h}\r\n{many}")
                .trim_end()
                .to_owned(),
            &[400, 431, 0],
        ),
        (
            "a 200 KiB target",
            format!("GET /ai/context/{long} HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}"),
            &[400, 404, 414, 431],
        ),
        (
            "a 200 KiB query",
            format!(
                "GET /ai/context/openai?account={long} HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}"
            ),
            &[400, 414, 431],
        ),
    ];
    for (what, head, ok) in cases {
        let r = send(&s, &head, "");
        let st = raw_status(&r);
        assert!(ok.contains(&st), "{what}: {}", &r[..300.min(r.len())]);
        // 414 and 431 come from the HTTP layer before any route, with an empty body.
        if (400..500).contains(&st) && st != 431 && st != 414 {
            assert_eq!(
                raw_json(&r)["status"],
                "error",
                "{what}: {}",
                &r[..300.min(r.len())]
            );
        }
    }
    // An agent key of the right shape but a huge id/secret is simply unknown.
    let (st, v) = s.get(
        "/ai/context/summary",
        Some(&format!("akhrot_{}_{}", "a".repeat(5000), "0".repeat(5000))),
    );
    assert_eq!((st, code(&v)), (401, "UNAUTHORIZED"));
    // Malformed JSON is a clear 400.
    let bad = r#"{"provider": "openai""#;
    let r = send(
        &s,
        &format!(
            "POST /tokens/fetch HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json; charset=utf-8"
        ),
        bad,
    );
    assert_eq!(raw_status(&r), 400, "{r}");
    assert!(r.contains("malformed JSON"));
    // Still healthy, and the process is alive.
    assert_eq!(s.get("/ai/context/summary", Some(&key)).0, 200);
}

// ------------------------------------------------- proxy traversal and open-proxy attempts

struct ProxyEnv {
    s: Server,
    key: String,
    up: StandIn,
    evil: StandIn,
    _d: Dirs,
}

fn proxy_env() -> ProxyEnv {
    let evil = StandIn::start(|_| (200, "text/plain", "stolen".to_owned()));
    let up = StandIn::start(ok_json);
    let d = Dirs::new();
    write_provider_file(
        &d,
        "standin",
        &api_key_provider("hdr", INJECT_X_API_KEY, &[("api", up.url("/v1"))]),
    );
    let s = Server::start(&d);
    let issues = s.admin_get("/admin/status")["catalog"]["issues"].clone();
    assert_eq!(issues, json!([]), "providers.d entry rejected");
    s.add("hdr", None, json!({"apiKey": "secret-hdr-attack-1111"}));
    let key = s.create_key("agent", &["*"]);
    ProxyEnv {
        s,
        key,
        up,
        evil,
        _d: d,
    }
}

impl ProxyEnv {
    fn raw(&self, method: &str, target: &str) -> String {
        send(
            &self.s,
            &format!(
                "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}",
                host(&self.s),
                self.key
            ),
            "",
        )
    }
}

/// Whether a forwarded path escapes `/v1` once an upstream decodes it (percent-decoding as
/// often as it likes, `\` as `/`, overlong and full-width dots as dots).
fn escapes_base(path: &str) -> bool {
    let mut p = path.to_owned();
    for _ in 0..3 {
        p = p
            .replace("%25", "%")
            .replace("%2e", ".")
            .replace("%2E", ".")
            .replace("%2f", "/")
            .replace("%2F", "/")
            .replace("%5c", "/")
            .replace("%5C", "/")
            .replace("%c0%ae", ".")
            .replace("%C0%AE", ".")
            .replace("%ef%bc%8e", ".")
            .replace("%EF%BC%8E", ".")
            .replace("%00", "");
    }
    let p = p.replace('\\', "/").replace('．', ".");
    let p = p.split(['?', '#', ';']).next().unwrap_or("");
    !p.starts_with("/v1/") && p != "/v1" || p.split('/').any(|seg| seg == ".." || seg == ".")
}

#[test]
fn proxy_paths_cannot_traverse_in_any_encoding() {
    let e = proxy_env();
    // The proxy works at all (so the refusals below mean something).
    let r = e.raw("GET", "/proxy/hdr/items?x=1");
    assert_eq!(raw_status(&r), 200, "{r}");
    let seen = e.up.requests_to("/v1/items");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-api-key"), Some("secret-hdr-attack-1111"));
    let before = e.up.requests().len();
    let traversals = [
        "/proxy/hdr/a/../b",
        "/proxy/hdr/..",
        "/proxy/hdr/../x",
        "/proxy/hdr/./x",
        "/proxy/hdr/a/%2e%2e/b",
        "/proxy/hdr/a/%2E%2E/b",
        "/proxy/hdr/a/%2e%2E/b",
        "/proxy/hdr/a/%2e./b",
        "/proxy/hdr/a/.%2e/b",
        "/proxy/hdr/a/%252e%252e/b",
        "/proxy/hdr/a/%25252e%25252e/b",
        "/proxy/hdr/a/%2e%2e%2fb",
        "/proxy/hdr/a/..%2f..%2fb",
        "/proxy/hdr/a/..%2F..%2Fb",
        "/proxy/hdr/a/%2e%2e%5cb",
        "/proxy/hdr/a/%5c..%5cb",
        "/proxy/hdr/a/..%5c..%5cb",
        "/proxy/hdr/a\\..\\b",
        "/proxy/hdr/a/..\\b",
        "/proxy/hdr/a/%c0%ae%c0%ae/b",
        "/proxy/hdr/a/%C0%AE%C0%AE/b",
        "/proxy/hdr/a/%ef%bc%8e%ef%bc%8e/b",
        "/proxy/hdr/a/..%00/b",
        "/proxy/hdr/a/.%00./b",
        "/proxy/hdr/a/..;/b",
        "/proxy/hdr/a/%2e%2e;/b",
        "/proxy/hdr/%2e%2e",
        "/proxy/hdr/%2e",
        "/proxy/hdr/a/%2e/b",
        "/proxy/hdr/a/....//b",
        "/proxy/hdr/a/%u002e%u002e/b",
    ];
    let mut forwarded_paths = Vec::new();
    for path in traversals {
        let r = e.raw("GET", path);
        let st = raw_status(&r);
        assert!(matches!(st, 200 | 400), "{path}: {r}");
        if st == 400 {
            assert_eq!(code(&raw_json(&r)), "BAD_REQUEST", "{path}");
        } else {
            forwarded_paths.push(path);
        }
    }
    // Only these are not traversals to anyone: `....` is a name, and `%u002e` is not percent
    // encoding (it is sent on as the literal text it is).
    assert_eq!(
        forwarded_paths,
        ["/proxy/hdr/a/....//b", "/proxy/hdr/a/%u002e%u002e/b"],
        "refused or forwarded differently than expected"
    );
    // Whatever was forwarded stays inside the service's base path, however the upstream
    // decodes it.
    let forwarded: Vec<String> = e.up.requests()[before..]
        .iter()
        .map(|r| {
            if r.query.is_empty() {
                r.path.clone()
            } else {
                format!("{}?{}", r.path, r.query)
            }
        })
        .collect();
    for f in &forwarded {
        assert!(!escapes_base(f), "forwarded {f:?}, which leaves /v1");
    }
    // The same through the other methods.
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = e.raw(m, "/proxy/hdr/a/%2e%2e/%2e%2e/x");
        assert_eq!(raw_status(&r), 400, "{m}: {r}");
    }
    // The provider segment itself.
    for path in [
        "/proxy/../admin/status",
        "/proxy/%2e%2e/admin/status",
        "/proxy/./hdr/x",
        "/proxy/hdr%2f..%2fx/y",
    ] {
        let r = e.raw("GET", path);
        assert!(matches!(raw_status(&r), 400 | 404), "{path}: {r}");
    }
    assert!(e.evil.requests().is_empty());
}

#[test]
fn the_proxy_is_not_an_open_proxy() {
    let e = proxy_env();
    let evil = format!("127.0.0.1:{}", e.evil.port);
    let p = e.s.port;
    let h = host(&e.s);
    // Tricks to reach another host land on the provider's own host, or nowhere.
    for path in [
        format!("/proxy/hdr/@{evil}/x"),
        format!("/proxy/hdr//{evil}/x"),
        format!("/proxy/hdr///{evil}/x"),
        format!("/proxy/hdr/http://{evil}/x"),
        format!("/proxy/hdr/http:%2F%2F{evil}/x"),
        format!("/proxy/hdr/%2F%2F{evil}/x"),
        format!("/proxy/hdr/%40{evil}/x"),
        format!("/proxy/hdr/x@{evil}/y"),
        format!("/proxy/hdr/x%40{evil}"),
        format!("/proxy/hdr/\\\\{evil}/x"),
        format!("/proxy/hdr/x?@{evil}"),
        format!("/proxy/hdr/x#@{evil}"),
        format!("/proxy/hdr:pw@{evil}/x"),
        format!("/proxy/{evil}/x"),
        format!("/proxy/http:%2F%2F{evil}/x"),
        format!("/proxy/http%3A%2F%2F{evil}%2Fx/y"),
        "/proxy/nosuch/x".to_owned(),
        "/proxy/example.com/x".to_owned(),
    ] {
        let r = e.raw("GET", &path);
        let st = raw_status(&r);
        if path.starts_with("/proxy/hdr/") {
            assert!(matches!(st, 200 | 400 | 403), "{path}: {r}");
        } else {
            assert!(matches!(st, 400 | 403 | 404), "{path}: {r}");
        }
        if st == 200 {
            let upstream = r
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("x-akhrot-upstream:")
                        .map(|v| v.trim().to_owned())
                })
                .unwrap_or_default();
            assert_eq!(upstream, format!("127.0.0.1:{}", e.up.port), "{path}");
        }
    }
    // Absolute-form targets and CONNECT: this is not a forward proxy.
    for head in [
        format!("GET http://{evil}/x HTTP/1.1\r\nHost: {evil}"),
        format!("GET http://{evil}/x HTTP/1.1\r\nHost: {h}"),
        format!("GET http://{evil}/proxy/hdr/x HTTP/1.1\r\nHost: {h}"),
        format!("CONNECT {evil} HTTP/1.1\r\nHost: {evil}"),
        format!("CONNECT {evil} HTTP/1.1\r\nHost: {h}"),
        format!("CONNECT 127.0.0.1:{p} HTTP/1.1\r\nHost: {h}"),
    ] {
        let r = send(
            &e.s,
            &format!("{head}\r\nAuthorization: Bearer {}", e.key),
            "",
        );
        let st = raw_status(&r);
        assert!((400..500).contains(&st), "{head}: {r}");
        assert!(!r.contains("stolen"), "{head}: {r}");
    }
    // Headers that would re-point a forwarding hop.
    for extra in [
        format!("X-Forwarded-Host: {evil}"),
        format!("Forwarded: host={evil}"),
        format!("X-Original-URL: http://{evil}/x"),
        format!("X-Rewrite-URL: http://{evil}/x"),
    ] {
        let r = send(
            &e.s,
            &format!(
                "GET /proxy/hdr/x HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {}\r\n{extra}",
                e.key
            ),
            "",
        );
        assert!(matches!(raw_status(&r), 200 | 400), "{extra}: {r}");
    }
    // The upstream saw its own Host each time, never the agent's or evil's.
    for r in e.up.requests() {
        assert_eq!(
            r.header("host"),
            Some(format!("127.0.0.1:{}", e.up.port).as_str()),
            "{r:?}"
        );
    }
    assert!(
        e.evil.requests().is_empty(),
        "a request reached another host: {:?}",
        e.evil.requests()
    );
}

// ------------------------------------------------------------------ timing of key compare

/// A keep-alive connection timing single requests.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn new(port: u16) -> Self {
        let w = TcpStream::connect(("127.0.0.1", port)).unwrap();
        w.set_nodelay(true).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }
    /// Sends `req`, reads the whole answer; returns (status, elapsed nanoseconds).
    fn time(&mut self, req: &[u8]) -> (u16, u64) {
        let t = Instant::now();
        self.w.write_all(req).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status = raw_status(&line);
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).unwrap();
        (status, t.elapsed().as_nanos() as u64)
    }
}

fn median(v: &mut [i64]) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Paired, interleaved comparison of classes A and B: the median of (tA - tB) over rounds, and
/// the median of tA. Interleaving cancels slow drifts of a loaded machine; the median ignores
/// the spikes.
fn paired(samples: &[(u64, u64)]) -> (i64, i64) {
    let mut d: Vec<i64> = samples.iter().map(|(a, b)| *a as i64 - *b as i64).collect();
    let mut a: Vec<i64> = samples.iter().map(|(a, _)| *a as i64).collect();
    (median(&mut d), median(&mut a))
}

/// The standard error of that median difference, from the spread of the differences (median
/// absolute deviation, scaled to a standard deviation, times 1.2533 / sqrt(n) for a median):
/// how finely the measurement can tell two classes apart.
fn median_se(samples: &[(u64, u64)]) -> f64 {
    let mut d: Vec<i64> = samples.iter().map(|(a, b)| *a as i64 - *b as i64).collect();
    let m = median(&mut d);
    let mut dev: Vec<i64> = d.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&mut dev) as f64;
    1.2533 * 1.4826 * mad / (samples.len() as f64).sqrt()
}

/// Whether a median difference is a leak: more than 20 µs or 15 % of a request, whichever is
/// larger (a loopback request here takes ~100 µs; see the printed figures).
fn leaks(diff_ns: i64, base_ns: i64) -> bool {
    diff_ns.abs() > 20_000.max(base_ns * 15 / 100)
}

#[test]
fn key_compare_timing_does_not_depend_on_how_much_of_the_key_is_right() {
    // The decision rule itself flags a real difference and passes none (so the test can fail).
    assert!(leaks(40_000, 100_000));
    assert!(leaks(-40_000, 100_000));
    assert!(!leaks(5_000, 100_000));

    let d = Dirs::new();
    let s = Server::start_with(&d, Opts::default().arg("--rate-limit").arg("0")).unwrap();
    let key = s.create_key("bot", &["*"]);
    for p in ["openai", "anthropic", "cohere", "sendgrid"] {
        s.add(p, None, json!({"apiKey": format!("sk-timing-{p}-0000")}));
    }
    let (id_part, secret) = key.rsplit_once('_').unwrap();
    let flip = |c: char| if c == '0' { '1' } else { '0' };
    // Wrong in the last hex digit only: shares 63 of 64 with the real secret.
    let mut long_prefix = secret.to_owned();
    let last = long_prefix.pop().unwrap();
    long_prefix.push(flip(last));
    // Wrong from the first digit on.
    let first_wrong: String = secret.chars().map(flip).collect();
    let unknown_id = format!("akhrot_zzzzzzzzzz_{secret}");
    let classes = [
        format!("{id_part}_{long_prefix}"),
        format!("{id_part}_{first_wrong}"),
        unknown_id,
        key.clone(),
    ];
    let reqs: Vec<Vec<u8>> = classes
        .iter()
        .map(|k| {
            format!(
                "GET /ai/context/summary HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {k}\r\n\r\n",
                s.port
            )
            .into_bytes()
        })
        .collect();
    let mut c = Conn::new(s.port);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Warm up.
    for _ in 0..200 {
        for r in &reqs {
            c.time(r);
        }
    }
    let rounds = 3000;
    let mut t = vec![Vec::with_capacity(rounds); reqs.len()];
    // A fresh random order of the classes each round (xorshift, seeded from the clock), so no
    // class systematically follows another (a valid key's answer leaves work behind it).
    let mut x = seed | 1;
    for _ in 0..rounds {
        let mut order: Vec<usize> = (0..reqs.len()).collect();
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for k in order {
            let (status, ns) = c.time(&reqs[k]);
            assert_eq!(status, if k == 3 { 200 } else { 401 }, "class {k}");
            t[k].push(ns);
        }
    }
    let pair = |a: usize, b: usize| -> Vec<(u64, u64)> {
        t[a].iter().copied().zip(t[b].iter().copied()).collect()
    };
    let (prefix_vs_first, base) = paired(&pair(0, 1));
    let (prefix_vs_unknown, _) = paired(&pair(0, 2));
    let (valid_vs_wrong, _) = paired(&pair(3, 0));
    let se = median_se(&pair(0, 1)).max(median_se(&pair(0, 2)));
    let bound = 20_000.max(base * 15 / 100);
    eprintln!(
        "key compare timing over {rounds} interleaved rounds: median wrong-key request {:.1} µs; \
         median paired difference 63-digit-prefix minus first-digit-wrong {:+.2} µs, \
         known id minus unknown id {:+.2} µs (standard error {:.2} µs); bound ±{:.1} µs; \
         for scale, a valid key's 200 minus a wrong key's 401: {:+.2} µs",
        base as f64 / 1e3,
        prefix_vs_first as f64 / 1e3,
        prefix_vs_unknown as f64 / 1e3,
        se / 1e3,
        bound as f64 / 1e3,
        valid_vs_wrong as f64 / 1e3,
    );
    // The measurement is fine enough that a leak at the bound would stand out (so this test
    // can fail): its standard error is under a quarter of the bound.
    assert!(
        se < bound as f64 / 4.0,
        "too noisy to judge: standard error {se:.0} ns against a bound of {bound} ns"
    );
    assert!(
        !leaks(prefix_vs_first, base),
        "a key right in 63 of 64 digits is answered {prefix_vs_first} ns slower than one wrong from the first"
    );
    assert!(
        !leaks(prefix_vs_unknown, base),
        "a known id with a wrong secret is answered {prefix_vs_unknown} ns slower than an unknown id"
    );
}

// ------------------------------------------------------------ the plaintext-secret scanner

/// Standard base64 with padding (the scanner has its own; this one is written independently,
/// the plain way, to check it).
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = String::new();
    for b in data {
        bits.push_str(&format!("{b:08b}"));
    }
    while !bits.len().is_multiple_of(6) {
        bits.push('0');
    }
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|c| A[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char)
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[test]
fn the_secret_scanner_finds_a_planted_plaintext_secret() {
    assert_eq!(b64(b"sk-test-secret-123"), "c2stdGVzdC1zZWNyZXQtMTIz");
    assert_eq!(b64(b"ab"), "YWI=");
    let d = Dirs::new();
    let s = Server::start_with(&d, Opts::default().env("RUST_LOG", "debug")).unwrap();
    // Deliberately not registered (a registered one would fail this test at its end): the
    // scanner is handed these directly.
    let planted = format!("sk-planted-{}", std::process::id());
    let logged = format!("logged-{}-secret", std::process::id());
    let list = vec![planted.as_bytes().to_vec(), logged.as_bytes().to_vec()];
    assert_eq!(s.find_secrets(&list), Vec::<String>::new(), "nothing yet");
    // A plaintext secret in a file of the data dir.
    let plant = d.data().join("leak.log");
    std::fs::write(&plant, format!("xx{planted}yy")).unwrap();
    let hits = s.find_secrets(&list);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].contains("leak.log"), "{hits:?}");
    assert!(!hits[0].contains(&planted), "a hit never shows the secret");
    std::fs::remove_file(&plant).unwrap();
    // Appended to the database file itself.
    let mut db = std::fs::read(d.vault()).unwrap();
    let len = db.len();
    db.extend_from_slice(planted.as_bytes());
    std::fs::write(d.data().join("vault.db-copy"), &db).unwrap();
    let hits = s.find_secrets(&list);
    assert!(hits.iter().any(|h| h.contains("vault.db-copy")), "{hits:?}");
    std::fs::remove_file(d.data().join("vault.db-copy")).unwrap();
    assert_eq!(db.len(), len + planted.len());
    // Encoded is not encrypted: hex and base64 spellings are found too.
    let hex: String = planted.bytes().map(|b| format!("{b:02x}")).collect();
    let encoded = [
        ("in hex", hex),
        // What a standard encoder makes of it after 0, 1 and 2 other bytes.
        ("base64", b64(planted.as_bytes())),
        (
            "base64",
            b64(&[b"k".as_slice(), planted.as_bytes()].concat()),
        ),
        (
            "base64",
            b64(&[b"ke".as_slice(), planted.as_bytes()].concat()),
        ),
    ];
    for (how, text) in encoded {
        std::fs::write(&plant, format!("{{\"v\":\"{text}\"}}")).unwrap();
        let hits = s.find_secrets(&list);
        assert_eq!(hits.len(), 1, "{how} {text}: {hits:?}");
        assert!(hits[0].contains(how), "{how}: {hits:?}");
        assert!(!hits[0].contains(&text) && !hits[0].contains(&planted));
    }
    std::fs::remove_file(&plant).unwrap();
    // Something the server writes to its log: at debug level it logs request paths.
    let (st, _) = s.get(&format!("/nope/{logged}"), None);
    assert_eq!(st, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    let hits = loop {
        let hits = s.find_secrets(&list);
        if !hits.is_empty() || Instant::now() > deadline {
            break hits;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].contains("server stderr"), "{hits:?}");
    // The registry ignores values too short to search for, and keeps the rest.
    let (n0, _, _) = secrets::stats();
    secrets::register("short");
    secrets::register(&format!("registered-{}-value", std::process::id()));
    let (n1, _, _) = secrets::stats();
    assert!(n1 <= n0 + 1 && n1 >= 1);
    // The harness registered this test's admin credential once it was read.
    let admin = s.admin_token();
    assert!(secrets::all().iter().any(|x| x == admin.as_bytes()));
}
