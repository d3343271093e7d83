//! The web UI's server side: embedded files, one-time sign-in links, the session cookie and its
//! CSRF header, people's page visits from other sites, and the Settings endpoint. (The pages
//! themselves are tested in a real browser: `tests/browser`.)
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

/// One raw HTTP/1.1 exchange: (status, lower-cased head, body).
fn exchange(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
        s.port
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let raw = s.raw(&req);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn new_link(s: &Server) -> String {
    s.admin_post("/admin/ui-link", &json!({}))["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Opens a sign-in link; returns the `name=value` of the session cookie.
fn sign_in(s: &Server) -> String {
    let link = new_link(s);
    let path = link.strip_prefix(&s.base).unwrap();
    let (status, head, _) = exchange(s, "GET", path, &[("Sec-Fetch-Site", "none")], "");
    assert_eq!(status, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/ui/"));
    let cookie = header(&head, "set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("httponly") && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    // The head was lower-cased; the secret is hex, so it survives that.
    cookie.split(';').next().unwrap().to_owned()
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[test]
fn serve_prints_a_one_time_link_and_the_ui_is_embedded() {
    let d = Dirs::new();
    let s = Server::start(&d);
    // `/` and `/ui` lead to the UI; its files are served with a strict CSP.
    let (status, head, _) = exchange(&s, "GET", "/", &[], "");
    assert_eq!((status, header(&head, "location")), (303, Some("/ui/")));
    let (status, head, body) = exchange(&s, "GET", "/ui/", &[], "");
    assert_eq!(status, 200);
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = header(&head, "content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(header(&head, "access-control-allow-origin").is_none());
    // Every script and stylesheet the page names is served, with its type.
    let mut assets = 0;
    for attr in ["src=\"", "href=\""] {
        for part in body.split(attr).skip(1) {
            let name = part.split('"').next().unwrap();
            if name.starts_with("http") || name.starts_with('#') {
                continue;
            }
            let (status, head, _) = exchange(&s, "GET", &format!("/ui/{name}"), &[], "");
            assert_eq!(status, 200, "/ui/{name}");
            assert!(header(&head, "content-type").is_some());
            assets += 1;
        }
    }
    assert!(
        assets >= 2,
        "index.html names its scripts and styles: {body}"
    );
    let (status, _, body) = exchange(&s, "GET", "/ui/nope.js", &[], "");
    assert_eq!(
        (status, json_body(&body)["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _, _) = exchange(&s, "GET", "/ui/../admin.token", &[], "");
    assert_ne!(status, 200);

    // The link `akhrot ui --no-browser` prints works once.
    let out = s.cli(&["ui", "--no-browser"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let link = stdout(&out).trim().to_owned();
    assert!(
        link.starts_with(&format!("{}/ui/login?code=", s.base)),
        "{link}"
    );
    let path = link.strip_prefix(&s.base).unwrap();
    assert_eq!(exchange(&s, "GET", path, &[], "").0, 303);
    let (status, head, body) = exchange(&s, "GET", path, &[], "");
    assert_eq!(status, 403, "a spent link");
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        body.contains("akhrot ui"),
        "says how to get a new one: {body}"
    );
    assert!(header(&head, "set-cookie").is_none());
    for bad in [
        "/ui/login",
        "/ui/login?code=",
        "/ui/login?code=zz",
        &format!("/ui/login?code={}", "0".repeat(64)),
    ] {
        assert_eq!(exchange(&s, "GET", bad, &[], "").0, 403, "{bad}");
    }
}

#[test]
fn the_session_cookie_needs_the_ui_header_and_ends_at_sign_out() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let cookie = sign_in(&s);
    let ui = [("Cookie", cookie.as_str()), ("X-Akhrot-UI", "1")];

    let (status, _, body) = exchange(&s, "GET", "/admin/status", &ui, "");
    assert_eq!(status, 200, "{body}");
    // The UI asks first whether it is signed in; that question needs no session.
    let (_, _, body) = exchange(&s, "GET", "/ui/session", &[("Cookie", cookie.as_str())], "");
    assert_eq!(json_body(&body)["data"]["signedIn"], true);
    let (status, _, body) = exchange(&s, "GET", "/ui/session", &[], "");
    assert_eq!(
        (status, &json_body(&body)["data"]["signedIn"]),
        (200, &json!(false))
    );
    let (status, _, body) = exchange(&s, "POST", "/admin/keys", &ui, r#"{"name":"from-ui"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(
        json_body(&body)["data"]["key"]
            .as_str()
            .unwrap()
            .starts_with("akhrot_")
    );

    // Without the header (what a cross-site form or link could send), the cookie is not enough.
    let (status, _, body) = exchange(
        &s,
        "POST",
        "/admin/pause",
        &[("Cookie", cookie.as_str())],
        r#"{"paused":true}"#,
    );
    assert_eq!(
        (status, json_body(&body)["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );
    assert_eq!(
        exchange(&s, "GET", "/admin/keys", &[("Cookie", cookie.as_str())], "").0,
        401
    );
    // ... except for the event stream, which EventSource opens without custom headers.
    let (status, head, _) = {
        let mut req = format!(
            "GET /admin/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\n\r\n",
            s.port
        );
        req.push_str("");
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(&mut sock, req.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = std::io::Read::read(&mut sock, &mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head, ())
    };
    assert_eq!(status, 200);
    assert!(head.contains("text/event-stream"), "{head}");

    // A cookie with another value, or for another owner's port, is nothing.
    let forged = format!("akhrot_ui_{}={}", s.port, "ab".repeat(32));
    assert_eq!(
        exchange(
            &s,
            "GET",
            "/admin/status",
            &[("Cookie", &forged), ("X-Akhrot-UI", "1")],
            ""
        )
        .0,
        401
    );
    let other_port = cookie.replacen(&format!("akhrot_ui_{}", s.port), "akhrot_ui_1", 1);
    assert_eq!(
        exchange(
            &s,
            "GET",
            "/admin/status",
            &[("Cookie", &other_port), ("X-Akhrot-UI", "1")],
            ""
        )
        .0,
        401
    );

    // Agents cannot mint links, and an agent key next to a valid cookie is still an agent key.
    let agent = format!("Bearer {key}");
    assert_eq!(
        exchange(
            &s,
            "POST",
            "/admin/ui-link",
            &[("Authorization", &agent)],
            "{}"
        )
        .0,
        401
    );
    let (status, _, _) = exchange(
        &s,
        "GET",
        "/admin/status",
        &[
            ("Authorization", &agent),
            ("Cookie", cookie.as_str()),
            ("X-Akhrot-UI", "1"),
        ],
        "",
    );
    assert_eq!(status, 401, "a bearer is judged as what it is");

    // Signing out ends the session at once.
    let (status, head, _) = exchange(&s, "POST", "/admin/logout", &ui, "{}");
    assert_eq!(status, 200);
    assert!(header(&head, "set-cookie").unwrap().contains("max-age=0"));
    assert_eq!(exchange(&s, "GET", "/admin/status", &ui, "").0, 401);

    // A restart forgets every session and link.
    let cookie = sign_in(&s);
    let link = new_link(&s);
    let s = {
        drop(s);
        Server::start(&d)
    };
    let ui = [("Cookie", cookie.as_str()), ("X-Akhrot-UI", "1")];
    assert_eq!(exchange(&s, "GET", "/admin/status", &ui, "").0, 401);
    let path = link
        .split_once("/ui/")
        .map(|(_, p)| format!("/ui/{p}"))
        .unwrap();
    assert_eq!(exchange(&s, "GET", &path, &[], "").0, 403);
}

#[test]
fn an_open_event_stream_does_not_hold_up_shutdown() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let req = format!(
        "GET /admin/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\r\n",
        s.port,
        s.admin_token()
    );
    std::io::Write::write_all(&mut sock, req.as_bytes()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = std::io::Read::read(&mut sock, &mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("200"),
        "the stream is open"
    );
    let t = Instant::now();
    let status = s.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    // The stream was ended, not cut: reading reaches its end.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut sock, &mut rest);
    assert!(!d.data().join("server.json").exists());
}

#[test]
fn people_arriving_from_other_sites_reach_pages_but_not_the_api() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let nav = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Dest", "document"),
    ];
    // A provider sending the person back (a cross-site navigation) reaches the callback page,
    // which judges the state itself.
    let (status, head, body) = exchange(&s, "GET", "/oauth/callback?state=forged&code=x", &nav, "");
    assert_eq!(status, 400, "{body}");
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let same_site = [
        ("Sec-Fetch-Site", "same-site"),
        ("Sec-Fetch-Mode", "navigate"),
    ];
    assert_eq!(
        exchange(
            &s,
            "GET",
            "/oauth/callback?state=forged&code=x",
            &same_site,
            ""
        )
        .0,
        400
    );
    assert_eq!(exchange(&s, "GET", "/ui/", &nav, "").0, 200);
    // The API is still closed to other sites, navigation or not.
    let key = s.create_key("bot", &["*"]);
    let agent = format!("Bearer {key}");
    for (path, method) in [
        ("/ai/context/summary", "GET"),
        ("/admin/status", "GET"),
        ("/tokens/fetch", "POST"),
    ] {
        let mut h = vec![("Authorization", agent.as_str())];
        h.extend_from_slice(&nav);
        let (status, _, body) = exchange(&s, method, path, &h, "{\"provider\":\"openai\"}");
        assert_eq!(
            (status, json_body(&body)["error"]["code"].as_str()),
            (403, Some("FORBIDDEN_HOST")),
            "{path}"
        );
    }
    let cors = [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "cors")];
    assert_eq!(
        exchange(&s, "GET", "/oauth/callback?state=x&code=y", &cors, "").0,
        403
    );
    let post_nav = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "navigate"),
    ];
    assert_eq!(exchange(&s, "POST", "/ui/login", &post_nav, "{}").0, 403);
}

#[test]
fn settings_apply_at_once_and_keep_the_users_config_file() {
    let d = Dirs::new();
    std::fs::create_dir_all(d.config()).unwrap();
    std::fs::write(
        d.config().join("config.toml"),
        "# mine\nprovider_timeout = 9 # slow network\n",
    )
    .unwrap();
    let s = Server::start_with(&d, Opts::default().arg("--approval-timeout").arg("120")).unwrap();
    let key = s.create_key("bot", &[]);
    s.add("openai", None, json!({"apiKey": "sk-settings-test"}));
    let v = s.admin_get("/admin/settings");
    assert_eq!(v["approvalTimeoutSecs"], 120);
    assert_eq!(v["port"], s.port);
    assert_eq!(v["keySource"], "keyring");
    assert!(v["configPath"].as_str().unwrap().ends_with("config.toml"));

    let v = s.admin_post(
        "/admin/settings",
        &json!({"approvalTimeoutSecs": 5, "rateLimitPerMinute": 2}),
    );
    assert_eq!(
        (
            v["approvalTimeoutSecs"].as_u64(),
            v["rateLimitPerMinute"].as_u64()
        ),
        (Some(5), Some(2))
    );
    assert_eq!(v["restartRequired"], false);
    // The new timeout applies to the next prompt: it times out after 5 s, not 120.
    let t = Instant::now();
    let (status, body) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "openai"}));
    assert_eq!((status, code(&body)), (408, "APPROVAL_TIMEOUT"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The new rate limit too: 2 a minute, the third is RATE_LIMITED with Retry-After.
    let _ = s.get("/ai/context/summary", Some(&key));
    let (status, head, _) = exchange(
        &s,
        "GET",
        "/ai/context/summary",
        &[("Authorization", &format!("Bearer {key}"))],
        "",
    );
    assert_eq!(status, 429);
    assert!(
        header(&head, "retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );

    let v = s.admin_post("/admin/settings", &json!({"port": 47999}));
    assert_eq!(v["restartRequired"], true);
    assert_eq!(v["configuredPort"], 47999);
    let text = std::fs::read_to_string(d.config().join("config.toml")).unwrap();
    assert!(
        text.contains("# mine") && text.contains("# slow network"),
        "{text}"
    );
    assert!(
        text.contains("approval_timeout = 5")
            && text.contains("rate_limit = 2")
            && text.contains("port = 47999"),
        "{text}"
    );

    // Bad values are refused and change nothing.
    let admin = s.admin_token();
    for bad in [
        json!({}),
        json!({"approvalTimeoutSecs": 0}),
        json!({"approvalTimeoutSecs": "soon"}),
        json!({"rateLimitPerMinute": -1}),
        json!({"port": 70000}),
        json!({"colour": "blue"}),
    ] {
        let (status, body) = s.post("/admin/settings", Some(&admin), &bad);
        assert_eq!((status, code(&body)), (400, "BAD_REQUEST"), "{bad}: {body}");
    }
    assert_eq!(
        std::fs::read_to_string(d.config().join("config.toml")).unwrap(),
        text
    );
    let (status, _) = s.post(
        "/admin/settings",
        Some(&key),
        &json!({"approvalTimeoutSecs": 60}),
    );
    assert_eq!(status, 401, "agents cannot change settings");
    let (status, _) = s.get("/admin/settings", Some(&key));
    assert_eq!(status, 401);
    // The change is in the audit log.
    let log = s.admin_get("/admin/audit?action=settings");
    assert!(!log.as_array().unwrap().is_empty(), "{log}");
}
