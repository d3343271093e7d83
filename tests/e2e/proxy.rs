//! The proxy (`/proxy/{provider}/…`) end to end: the real `akhrot serve`, local stand-in
//! provider APIs registered as custom providers in providers.d, and the real OAuth server
//! (node-oidc-provider) for refresh-and-retry. Covers header, basic and query injection; what
//! is never forwarded; redirects passed back, not followed (traversal and other-host tricks
//! are in `attacks.rs`); large bodies streamed both ways; approvals and `proxy-only`; `/ai/approvals`; the
//! audit entries.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

// ------------------------------------------------------------------ a stand-in provider API

#[derive(Debug, Clone)]
struct Got {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
    fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);
type Handler = dyn Fn(&Got) -> Reply + Send + Sync;

/// A small HTTP/1.1 server standing in for a provider's API: records every request (headers
/// and body, Content-Length or chunked) and answers with the handler's reply.
struct Up {
    port: u16,
    seen: Arc<Mutex<Vec<Got>>>,
}

impl Up {
    fn start(handler: impl Fn(&Got) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || {
                    let Some((got, mut stream)) = read_request(stream) else {
                        return;
                    };
                    let (status, headers, body) = handler(&got);
                    log.lock().unwrap().push(got);
                    let mut head = format!("HTTP/1.1 {status} X\r\n");
                    for (k, v) in headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str(&format!(
                        "Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    ));
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body);
                });
            }
        });
        Self { port, seen }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Got> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: TcpStream) -> Option<(Got, TcpStream)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some((
        Got {
            method,
            target,
            headers,
            body,
        },
        stream,
    ))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn hdr(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn body_json(resp: &mut ureq::http::Response<ureq::Body>) -> Value {
    let text = resp.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Audit entries of action `proxy`, once `pred` holds for one of them (entries are written
/// in groups, a moment after the answer).
fn wait_audit(s: &Server, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let log = s.admin_get("/admin/audit?action=proxy&limit=500");
        let list = log.as_array().unwrap().clone();
        if list.iter().any(&pred) {
            return list;
        }
        assert!(Instant::now() < until, "no such audit entry in {log:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Env {
    s: Server,
    key: String,
    up: Up,
    evil: Up,
    _d: Dirs,
}

/// A server with stand-in providers `hdr` (header), `bas` (basic), `qry` (query), `two` (two
/// services on different base URLs) and `down` (nothing listening), all connected; agent
/// `agent` is allowed everything.
fn env() -> Env {
    let evil = Up::start(|_| (200, vec![], b"stolen".to_vec()));
    let evil_base = evil.base();
    let up = Up::start(move |g| match g.path() {
        "/v1/redirect" => (
            302,
            vec![("Location".into(), format!("{evil_base}/collect?from=proxy"))],
            vec![],
        ),
        "/v1/page" => (
            200,
            vec![
                ("Content-Type".into(), "text/html".into()),
                ("Set-Cookie".into(), "session=upstream; Path=/".into()),
                ("X-Upstream-Note".into(), "kept".into()),
                ("Content-Security-Policy".into(), "default-src *".into()),
            ],
            b"<script>alert(1)</script>".to_vec(),
        ),
        _ => (
            200,
            vec![("Content-Type".into(), "application/json".into())],
            json!({"path": g.path(), "len": g.body.len()})
                .to_string()
                .into_bytes(),
        ),
    });
    let d = Dirs::new();
    let b = up.base();
    let mut toml = String::new();
    toml.push_str(&api_key_provider(
        "hdr",
        INJECT_X_API_KEY,
        &[("api", format!("{b}/v1"))],
    ));
    toml.push_str(&api_key_provider(
        "bas",
        r#"basic = ["{user}", "{accessToken}"]"#,
        &[("api", format!("{b}/v1"))],
    ));
    toml.push_str(&api_key_provider(
        "qry",
        r#"query = { "key" = "{accessToken}" }"#,
        &[("api", format!("{b}/v1"))],
    ));
    toml.push_str(&api_key_provider(
        "two",
        r#"headers = { "Authorization" = "Token {accessToken}" }"#,
        &[("alpha", format!("{b}/a")), ("beta", format!("{b}/b"))],
    ));
    toml.push_str(&api_key_provider(
        "ten",
        INJECT_X_API_KEY,
        &[("api", format!("{b}/t/{{user}}"))],
    ));
    toml.push_str(&api_key_provider(
        "down",
        INJECT_X_API_KEY,
        &[("api", format!("http://127.0.0.1:{}/v1", closed_port()))],
    ));
    write_provider_file(&d, "standins", &toml);
    let s = Server::start(&d);
    let issues = s.admin_get("/admin/status")["catalog"]["issues"].clone();
    assert_eq!(issues, json!([]), "providers.d entries rejected");
    for (p, secret) in [
        ("hdr", "secret-hdr-1111"),
        ("bas", "secret-bas-2222"),
        ("qry", "secret-qry-3333"),
        ("two", "secret-two-4444"),
        ("down", "secret-down-5555"),
        ("ten", "secret-ten-6666"),
    ] {
        s.add(p, None, json!({"user": "alice", "apiKey": secret}));
    }
    let key = s.create_key("agent", &["*"]);
    Env {
        s,
        key,
        up,
        evil,
        _d: d,
    }
}

/// `GET <path>` on `s` with the agent key `key`.
fn get_as(s: &Server, path: &str, key: &str) -> ureq::http::Response<ureq::Body> {
    http()
        .get(format!("{}{path}", s.base))
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .unwrap()
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.s.base)
    }
    fn get(&self, path: &str, key: &str) -> ureq::http::Response<ureq::Body> {
        get_as(&self.s, path, key)
    }
    /// GET `path` as the agent: the status and the JSON body.
    fn get_json(&self, path: &str) -> (u16, Value) {
        let mut r = self.get(path, &self.key);
        (r.status().as_u16(), body_json(&mut r))
    }
}

const SECRETS: [&str; 5] = [
    "secret-hdr-1111",
    "secret-bas-2222",
    "secret-qry-3333",
    "secret-two-4444",
    "secret-down-5555",
];

#[test]
fn header_basic_and_query_injection_and_what_is_never_forwarded() {
    let e = env();
    // Header placement; the agent's own credential, cookies and browser headers stay behind.
    let mut r = http()
        .get(e.url("/proxy/hdr/things?x=1&akhrot_account=default&y=two"))
        .header("Authorization", format!("Bearer {}", e.key))
        .header("Cookie", "mine=1")
        .header("Origin", format!("http://127.0.0.1:{}", e.s.port))
        .header("X-Akhrot-Reason", "list things")
        .header("X-Custom", "passed")
        .header("Accept", "application/json")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        hdr(&r, "x-akhrot-upstream").unwrap(),
        format!("127.0.0.1:{}", e.up.port)
    );
    assert_eq!(hdr(&r, "content-security-policy").unwrap(), "sandbox");
    assert_eq!(body_json(&mut r)["path"], "/v1/things");
    let g = e.up.seen().pop().unwrap();
    assert_eq!(g.method, "GET");
    assert_eq!(g.path(), "/v1/things");
    assert_eq!(g.query(), "x=1&y=two", "akhrot_* parameters are stripped");
    assert_eq!(g.header("x-api-key"), Some("secret-hdr-1111"));
    assert_eq!(g.header("x-custom"), Some("passed"));
    assert_eq!(g.header("accept"), Some("application/json"));
    for h in [
        "authorization",
        "cookie",
        "origin",
        "x-akhrot-reason",
        "referer",
    ] {
        assert_eq!(g.header(h), None, "{h} must not be forwarded: {g:?}");
    }
    assert!(
        !format!("{g:?}").contains(&e.key),
        "the agent key never reaches the provider"
    );
    assert_eq!(
        g.header("content-length"),
        None,
        "a GET goes without a body"
    );
    assert_eq!(g.header("transfer-encoding"), None);
    // An empty POST still says its length.
    let r = http()
        .post(e.url("/proxy/hdr/empty"))
        .header("Authorization", format!("Bearer {}", e.key))
        .send_empty()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let g = e.up.seen().pop().unwrap();
    assert_eq!(
        (g.method.as_str(), g.header("content-length")),
        ("POST", Some("0"))
    );

    // Basic auth, and a non-JSON body (the JSON rule of the API does not apply to the proxy).
    let mut r = http()
        .post(e.url("/proxy/bas/forms/submit"))
        .header("Authorization", format!("Bearer {}", e.key))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send("a=1&b=two")
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", body_json(&mut r));
    let g = e.up.seen().pop().unwrap();
    assert_eq!(g.method, "POST");
    assert_eq!(g.path(), "/v1/forms/submit");
    // base64("alice:secret-bas-2222")
    assert_eq!(
        g.header("authorization"),
        Some("Basic YWxpY2U6c2VjcmV0LWJhcy0yMjIy")
    );
    assert_eq!(g.body, b"a=1&b=two");
    assert_eq!(
        g.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );

    // Query placement, and other methods.
    for method in ["GET", "DELETE", "PUT", "PATCH"] {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(e.url("/proxy/qry/search?q=hello%20world"))
            .header("Authorization", format!("Bearer {}", e.key))
            .body(if method == "GET" || method == "DELETE" {
                vec![]
            } else {
                b"{}".to_vec()
            })
            .unwrap();
        let r = http().run(req).unwrap();
        assert_eq!(r.status().as_u16(), 200, "{method}");
        let g = e.up.seen().pop().unwrap();
        assert_eq!(g.method, method);
        assert_eq!(g.query(), "q=hello%20world&key=secret-qry-3333");
    }

    // The provider alone is its base URL.
    let r = e.get("/proxy/hdr", &e.key);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(e.up.seen().pop().unwrap().target, "/v1");
    let r = e.get("/proxy/hdr/?a=b", &e.key);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(e.up.seen().pop().unwrap().target, "/v1/?a=b");

    // A provider with two base URLs needs a service; the header or the query chooses it.
    let (status, v) = e.get_json("/proxy/two/x");
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("alpha") && msg.contains("beta") && msg.contains("X-Akhrot-Service"),
        "{msg}"
    );
    let r = http()
        .get(e.url("/proxy/two/x"))
        .header("Authorization", format!("Bearer {}", e.key))
        .header("X-Akhrot-Service", "beta")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let g = e.up.seen().pop().unwrap();
    assert_eq!(g.path(), "/b/x");
    assert_eq!(g.header("authorization"), Some("Token secret-two-4444"));
    let r = e.get("/proxy/two/y?akhrot_service=alpha", &e.key);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(e.up.seen().pop().unwrap().target, "/a/y");

    // The context answers say how to go through the proxy.
    let (st, v) = e.s.get("/ai/context/hdr", Some(&e.key));
    assert_eq!(st, 200);
    assert_eq!(v["data"]["proxy"]["url"], format!("{}/proxy/hdr", e.s.base));
    let (_, v) = e.s.get("/ai/context/two/beta", Some(&e.key));
    assert_eq!(v["data"]["proxy"]["headers"]["X-Akhrot-Service"], "beta");
    let (_, v) = e.s.get("/ai/context/github/repos", Some(&e.key));
    let ex = &v["data"]["examples"][0];
    let curl = ex["proxyCurl"].as_str().unwrap();
    assert!(
        curl.contains(&format!("{}/proxy/github/user/repos", e.s.base))
            && !curl.contains("X-Akhrot-Service")
            && curl.contains("$AKHROT_API_KEY"),
        "{curl}"
    );
    let (_, v) = e.s.get("/ai/context/telegram", Some(&e.key));
    assert!(v["data"]["proxy"].is_null(), "no proxy for MTProto");

    // Answers: no cookies for the loopback origin, the provider's CSP replaced by a sandbox.
    let mut r = e.get("/proxy/hdr/page", &e.key);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(hdr(&r, "set-cookie"), None);
    assert_eq!(hdr(&r, "x-upstream-note").as_deref(), Some("kept"));
    assert_eq!(
        hdr(&r, "content-security-policy").as_deref(),
        Some("sandbox")
    );
    assert_eq!(hdr(&r, "content-type").as_deref(), Some("text/html"));
    assert_eq!(
        r.body_mut().read_to_string().unwrap(),
        "<script>alert(1)</script>"
    );

    // The audit log: method, host, path, status; never query values or secrets.
    let log = wait_audit(&e.s, |x| {
        x["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("GET") && d.ends_with("/v1/page -> 200"))
    });
    let host = format!("127.0.0.1:{}", e.up.port);
    assert!(
        log.iter()
            .any(|x| x["detail"] == format!("GET {host}/v1/things -> 200")
                && x["outcome"] == "200"
                && x["provider"] == "hdr"
                && x["agent"] == "agent"
                && x["account"] == "default")
    );
    assert!(
        log.iter()
            .any(|x| x["detail"] == format!("POST {host}/v1/forms/submit -> 200"))
    );
    assert!(
        log.iter()
            .any(|x| x["detail"] == format!("PATCH {host}/v1/search -> 200"))
    );
    let text = serde_json::to_string(&log).unwrap();
    for s in SECRETS
        .iter()
        .copied()
        .chain([e.key.as_str(), "hello", "x=1", "a=1"])
    {
        assert!(!text.contains(s), "audit log contains {s}: {text}");
    }
    assert!(e.evil.seen().is_empty());
}

#[test]
/// (Traversal and other-host tricks are in `attacks.rs`.)
fn redirects_filled_base_urls_and_upstream_failures() {
    let e = env();
    let evil = format!("127.0.0.1:{}", e.evil.port);
    // A redirect to another host is passed back as it is, never followed with the credential.
    let r = e.get("/proxy/hdr/redirect", &e.key);
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(
        hdr(&r, "location").unwrap(),
        format!("http://{evil}/collect?from=proxy")
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(e.evil.seen().is_empty(), "the redirect was not followed");

    // A base URL filled with the connection's values: plain names only.
    let r = e.get("/proxy/ten/x", &e.key);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(e.up.seen().pop().unwrap().target, "/t/alice/x");
    e.s.add(
        "ten",
        None,
        json!({"user": "alice/../../v1", "apiKey": "secret-ten-6666"}),
    );
    let (status, v) = e.get_json("/proxy/ten/x");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`user`"),
        "{v}"
    );

    // Providers the proxy cannot carry, unknown and unconnected ones.
    for (path, says) in [
        ("/proxy/telegram/x", "MTProto"),
        ("/proxy/mongodb/x", "Digest"),
    ] {
        let (status, v) = e.get_json(path);
        assert_eq!(status, 400, "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{path}: {v}"
        );
    }
    for (path, code_) in [
        ("/proxy/nosuch/x", "PROVIDER_NOT_FOUND"),
        ("/proxy/github/user", "INTEGRATION_NOT_FOUND"),
        (
            "/proxy/hdr/x?akhrot_account=nobody",
            "INTEGRATION_NOT_FOUND",
        ),
    ] {
        let (status, v) = e.get_json(path);
        assert_eq!((status, code(&v)), (404, code_), "{path}: {v}");
    }

    // No agent key, a bad one.
    let mut r = http().get(e.url("/proxy/hdr/x")).call().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(code(&body_json(&mut r)), "UNAUTHORIZED");
    let r = e.get("/proxy/hdr/x", &e.s.admin_token());
    assert_eq!(r.status().as_u16(), 401);

    // The provider cannot be reached: 502 PROVIDER_ERROR, with a message and no secret.
    let (status, v) = e.get_json("/proxy/down/x?token=abc");
    assert_eq!((status, code(&v)), (502, "PROVIDER_ERROR"), "{v}");
    let text = v.to_string();
    assert!(text.contains("could not be reached"), "{text}");
    assert!(
        !text.contains("secret-down") && !text.contains("abc"),
        "{text}"
    );
}

#[test]
fn large_bodies_stream_both_ways() {
    const TOTAL: usize = 20 << 20;
    const FIRST: usize = 1 << 20;
    // Upstream sends 1 MiB, then waits until the agent has read that first MiB through the proxy
    // before sending the other 19: a proxy that buffered whole answers would stall here.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let released = Arc::new(AtomicBool::new(false));
    let rel = released.clone();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let (got, mut stream) = read_request(stream).unwrap();
        assert_eq!(got.path(), "/files/big.bin");
        let data = pattern(TOTAL);
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        stream.write_all(&data[..FIRST]).unwrap();
        stream.flush().unwrap();
        if go_rx.recv_timeout(Duration::from_secs(20)).is_ok() {
            rel.store(true, Ordering::SeqCst);
        }
        stream.write_all(&data[FIRST..]).unwrap();
    });
    let up = Up::start(|g| {
        (
            200,
            vec![],
            json!({"len": g.body.len(), "same": g.body == pattern(g.body.len()), "cl": g.header("content-length")})
                .to_string()
                .into_bytes(),
        )
    });
    let d = Dirs::new();
    let mut toml = loopback_provider("big", port);
    toml.push_str(&api_key_provider(
        "sink",
        INJECT_X_API_KEY,
        &[("api", up.base())],
    ));
    write_provider_file(&d, "big", &toml);
    let s = Server::start(&d);
    s.add("big", None, json!({"apiKey": "secret-big"}));
    s.add("sink", None, json!({"apiKey": "secret-sink"}));
    let key = s.create_key("agent", &["*"]);

    let started = Instant::now();
    let mut r = get_as(&s, "/proxy/big/files/big.bin", &key);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(hdr(&r, "content-length").unwrap(), TOTAL.to_string());
    let mut reader = r.body_mut().with_config().limit(64 << 20).reader();
    let mut first = vec![0u8; FIRST];
    reader.read_exact(&mut first).unwrap();
    assert!(
        !released.load(Ordering::SeqCst),
        "the first MiB arrived before the provider sent the rest"
    );
    go_tx.send(()).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    server.join().unwrap();
    assert!(
        released.load(Ordering::SeqCst),
        "released by the agent, not by the timeout"
    );
    first.extend_from_slice(&rest);
    assert_eq!(first.len(), TOTAL);
    assert!(first == pattern(TOTAL), "the 20 MiB arrived intact");
    assert!(started.elapsed() < Duration::from_secs(15));

    // 4 MiB up (more than the retry buffer): streamed to the provider with its length.
    let data = pattern(4 << 20);
    let mut r = http()
        .post(format!("{}/proxy/sink/upload", s.base))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/octet-stream")
        .send(&data[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v = body_json(&mut r);
    assert_eq!(v["len"], 4 << 20);
    assert_eq!(v["same"], true);
    assert_eq!(v["cl"], (4 << 20).to_string());
    // And 512 KiB (kept for a retry) arrives the same.
    let data = pattern(512 << 10);
    let mut r = http()
        .put(format!("{}/proxy/sink/upload", s.base))
        .header("Authorization", format!("Bearer {key}"))
        .send(&data[..])
        .unwrap();
    let v = body_json(&mut r);
    assert_eq!(
        (v["len"].as_u64(), v["same"].as_bool()),
        (Some(512 << 10), Some(true))
    );
}

#[test]
fn approvals_on_proxy_calls_proxy_only_and_own_pending_prompts() {
    let e = env();
    let asker = e.s.create_key("asker", &[]);
    let other = e.s.create_key("other", &[]);
    let base = e.url("");
    let ask = |path: &str, key: &str| {
        let (url, key) = (format!("{base}{path}"), key.to_owned());
        std::thread::spawn(move || {
            let mut r = http()
                .get(url)
                .header("Authorization", format!("Bearer {key}"))
                .header("X-Akhrot-Reason", "read the things")
                .call()
                .unwrap();
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap())
        })
    };
    let wait_prompt = || {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let list = e.s.admin_get("/admin/approvals");
            if let Some(p) = list.as_array().unwrap().first() {
                return p.clone();
            }
            assert!(Instant::now() < until, "no prompt appeared");
            std::thread::sleep(Duration::from_millis(30));
        }
    };

    // Under `ask` the call waits; the prompt shows method and URL, query names only.
    let t = ask("/proxy/hdr/things?page=2&q=private-words", &asker);
    let p = wait_prompt();
    let expected = format!("GET http://127.0.0.1:{}/v1/things?page&q", e.up.port);
    assert_eq!(p["request"], expected);
    assert_eq!(p["reason"], "read the things");
    assert_eq!(p["agent"], "asker");
    // The agent sees its own prompt; another agent does not; admin credentials are not agents.
    let (st, mine) = e.s.get("/ai/approvals", Some(&asker));
    assert_eq!(st, 200, "{mine}");
    let mine = mine["data"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], p["id"]);
    assert_eq!(mine[0]["provider"], "hdr");
    assert_eq!(mine[0]["request"], expected);
    assert_eq!(mine[0]["reason"], "read the things");
    assert_eq!(mine[0]["agent"], "asker");
    assert!(mine[0]["createdAt"].as_str().unwrap().ends_with('Z'));
    let (st, theirs) = e.s.get("/ai/approvals", Some(&other));
    assert_eq!((st, theirs["data"].clone()), (200, json!([])));
    let (st, _) = e.s.get("/ai/approvals", Some(&e.s.admin_token()));
    assert_eq!(st, 401);
    // The agent cannot answer its own prompt.
    let (st, _) = e.s.post(
        &format!("/admin/approvals/{}", p["id"].as_str().unwrap()),
        Some(&asker),
        &json!({"answer": "once"}),
    );
    assert_eq!(st, 401);
    // `akhrot approvals` shows the request.
    let out = e.s.cli(&["approvals"], None);
    let table = stdout(&out);
    assert!(
        table.contains("REQUEST") && table.contains(&expected),
        "{table}"
    );
    assert!(!table.contains("private-words"));
    // A different call of the same agent is a prompt of its own.
    let t2 = ask("/proxy/hdr/other", &asker);
    let until = Instant::now() + Duration::from_secs(10);
    while e.s.admin_get("/admin/approvals").as_array().unwrap().len() < 2 {
        assert!(
            Instant::now() < until,
            "the second call did not get its own prompt"
        );
        std::thread::sleep(Duration::from_millis(30));
    }

    let before = e.up.seen().len();
    e.s.admin_post(
        &format!("/admin/approvals/{}", p["id"].as_str().unwrap()),
        &json!({"answer": "once"}),
    );
    let (status, body) = t.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(e.up.seen().len(), before + 1);
    let p2 = e.s.admin_get("/admin/approvals")[0].clone();
    assert_eq!(
        p2["request"],
        format!("GET http://127.0.0.1:{}/v1/other", e.up.port)
    );
    e.s.admin_post(
        &format!("/admin/approvals/{}", p2["id"].as_str().unwrap()),
        &json!({"answer": "deny"}),
    );
    let (status, body) = t2.join().unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("APPROVAL_DENIED"), "{body}");
    assert_eq!(
        e.up.seen().len(),
        before + 1,
        "the denied call was not sent"
    );
    let (st, mine) = e.s.get("/ai/approvals", Some(&asker));
    assert_eq!((st, mine["data"].clone()), (200, json!([])));
    wait_audit(&e.s, |x| {
        x["outcome"] == "denied"
            && x["agent"] == "asker"
            && x["detail"]
                .as_str()
                .is_some_and(|d| d.contains("/v1/other") && d.contains("denied by the user"))
    });

    // "For an hour" on a proxied call's prompt grants proxied calls only, never tokens.
    let t3 = ask("/proxy/qry/hour", &asker);
    let p3 = wait_prompt();
    e.s.admin_post(
        &format!("/admin/approvals/{}", p3["id"].as_str().unwrap()),
        &json!({"answer": "hour"}),
    );
    assert_eq!(t3.join().unwrap().0, 200);
    let keys = e.s.admin_get("/admin/keys");
    let a = key_record(&keys, "asker");
    assert_eq!(a["policies"]["qry"]["mode"], "proxy-only", "{a}");
    assert!(a["policies"]["qry"]["until"].as_i64().is_some(), "{a}");
    let (st, v) =
        e.s.post("/tokens/fetch", Some(&asker), &json!({"provider": "qry"}));
    assert_eq!((st, code(&v)), (403, "APPROVAL_DENIED"), "{v}");
    let r = e.get("/proxy/qry/again", &asker);
    assert_eq!(r.status().as_u16(), 200, "no prompt for the hour");

    // proxy-only (set with the CLI): no tokens, proxied calls go through without a prompt.
    let out = e.s.cli(
        &[
            "policy",
            "set",
            "--agent",
            "asker",
            "--provider",
            "hdr",
            "proxy-only",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (st, v) =
        e.s.post("/tokens/fetch", Some(&asker), &json!({"provider": "hdr"}));
    assert_eq!(st, 403);
    assert_eq!(code(&v), "APPROVAL_DENIED");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("/proxy/hdr/"), "{msg}");
    assert!(!v.to_string().contains("secret-hdr"));
    let r = e.get("/proxy/hdr/things", &asker);
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        e.s.admin_get("/admin/approvals")
            .as_array()
            .unwrap()
            .is_empty()
    );
    let keys = e.s.admin_get("/admin/keys");
    let a = key_record(&keys, "asker");
    assert_eq!(a["policies"]["hdr"]["mode"], "proxy-only", "{a}");
    // Other providers keep asking; the admin API sets the mode too, and it survives a restart.
    e.s.admin_post(
        "/admin/policies",
        &json!({"agent": "other", "provider": "*", "mode": "proxy-only"}),
    );
    let (st, v) =
        e.s.post("/tokens/fetch", Some(&other), &json!({"provider": "qry"}));
    assert_eq!((st, code(&v)), (403, "APPROVAL_DENIED"));
    let r = e.get("/proxy/qry/x", &other);
    assert_eq!(r.status().as_u16(), 200);
    let (st, v) = e.s.post(
        "/admin/policies",
        Some(&e.s.admin_token()),
        &json!({"agent": "other", "provider": "*", "mode": "sometimes"}),
    );
    assert_eq!(st, 400);
    assert!(v.to_string().contains("proxy-only"));
    wait_audit(&e.s, |x| x["agent"] == "other" && x["outcome"] == "200");
    let log = e.s.admin_get("/admin/audit?action=token&agent=asker");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|x| x["outcome"] == "denied" && x["detail"] == "policy proxy-only"),
        "{log:#}"
    );
}

#[test]
fn a_401_refreshes_once_and_the_retry_carries_the_new_token() {
    let oidc = Oidc::start(&[]);
    let d = Dirs::new();
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", "client_secret_basic"));
    let s = Server::start(&d);
    let key = s.create_key("agent", &["*"]);
    s.add_basic_client();
    let (_, st, page) = s.oauth_connect(&key, "idp", "alice");
    assert_eq!(st, 200, "{page}");

    let token = |s: &Server| {
        s.admin_post("/admin/token", &json!({"provider": "idp"}))["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = token(&s);
    // Through the proxy: the real server's userinfo endpoint, with the live token.
    let mut r = get_as(&s, "/proxy/idp/me", &key);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(body_json(&mut r)["email"], "alice@example.test");
    let refreshes = oidc.stat("refreshToken");

    // The provider forgets its access tokens early (refresh tokens stay good): the proxy gets a
    // 401, refreshes once, and retries with the new token.
    oidc.control("drop-access-tokens");
    assert!(oidc.userinfo(&first).is_none(), "the old token is dead");
    // A body too large to keep (over 1 MiB) is streamed once: the 401 comes back, no refresh.
    // (A GET with a body: the server's userinfo reads no body on GET, so it judges the token.)
    let req = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("{}/proxy/idp/me", s.base))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/octet-stream")
        .body(vec![b'a'; 2 << 20])
        .unwrap();
    let r = http().run(req).unwrap();
    assert_eq!(r.status().as_u16(), 401, "the provider's 401, passed back");
    assert_eq!(
        oidc.stat("refreshToken"),
        refreshes,
        "no refresh for a streamed body"
    );
    let body = "purpose=retry-test";
    let mut r = http()
        .post(format!("{}/proxy/idp/me", s.base))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(body_json(&mut r)["email"], "alice@example.test");
    assert_eq!(
        oidc.stat("refreshToken"),
        refreshes + 1,
        "exactly one refresh"
    );
    let second = token(&s);
    assert_ne!(first, second);
    assert!(
        oidc.userinfo(&second).is_some(),
        "the retry used the new, live token"
    );
    wait_audit(&s, |x| {
        x["detail"].as_str().is_some_and(|d| {
            d.starts_with("POST") && d.ends_with("/me -> 200 (retried after a refresh)")
        })
    });

    // Several calls refused at once share one refresh.
    oidc.control("drop-access-tokens");
    let before = oidc.stat("refreshToken");
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (url, key) = (format!("{}/proxy/idp/me", s.base), key.clone());
            std::thread::spawn(move || {
                http()
                    .get(url)
                    .header("Authorization", format!("Bearer {key}"))
                    .call()
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.join().unwrap(), 200);
    }
    assert_eq!(
        oidc.stat("refreshToken"),
        before + 1,
        "one refresh for six calls"
    );

    // When the refresh token is gone too, the provider's 401 is passed back as it is.
    oidc.control("revoke-all");
    let r = get_as(&s, "/proxy/idp/me", &key);
    assert_eq!(r.status().as_u16(), 401);
    assert!(hdr(&r, "www-authenticate").is_some());
    let (st, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "idp"}));
    assert_eq!((st, code(&v)), (400, "TOKEN_EXPIRED"), "{v}");
}

/// An upstream on loopback that reads each request, writes `first` (maybe nothing) and then
/// holds the connection open without another byte; returns its port.
fn holding_upstream(first: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Some((_, mut s)) = read_request(stream) {
                let _ = s.write_all(first);
                held.push(s);
            }
        }
    });
    port
}

/// A stand-in provider `code` (key as `X-Api-Key`) whose one service is `http://127.0.0.1:<port>`.
fn loopback_provider(code: &str, port: u16) -> String {
    api_key_provider(
        code,
        INJECT_X_API_KEY,
        &[("api", format!("http://127.0.0.1:{port}"))],
    )
}

#[test]
fn a_provider_that_does_not_answer_is_a_502_after_the_provider_timeout() {
    // Accepts, reads the request, and never answers.
    let port = holding_upstream(b"");
    let d = Dirs::new();
    write_provider_file(&d, "slow", &loopback_provider("slow", port));
    std::fs::create_dir_all(d.config()).unwrap();
    std::fs::write(d.config().join("config.toml"), "provider_timeout = 2\n").unwrap();
    let s = Server::start(&d);
    s.add("slow", None, json!({"apiKey": "secret-slow"}));
    let key = s.create_key("agent", &["*"]);
    let started = Instant::now();
    let mut r = get_as(&s, "/proxy/slow/wait", &key);
    let took = started.elapsed();
    assert_eq!(r.status().as_u16(), 502);
    let v = body_json(&mut r);
    assert_eq!(code(&v), "PROVIDER_ERROR");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 2 s"),
        "{v}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // A streamed upload gets its time: the clock starts when the body has been sent.
    let data = pattern(3 << 20);
    let started = Instant::now();
    let r = http()
        .post(format!("{}/proxy/slow/upload", s.base))
        .header("Authorization", format!("Bearer {key}"))
        .send(&data[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert!(started.elapsed() >= Duration::from_secs(2));
    wait_audit(&s, |x| {
        x["outcome"] == "502" && x["detail"] == format!("POST 127.0.0.1:{port}/upload -> 502")
    });
}

#[test]
fn shutdown_cuts_a_streaming_answer_instead_of_waiting_for_it() {
    // Sends headers and a first chunk of an endless chunked answer, then holds the connection.
    let port = holding_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    let d = Dirs::new();
    write_provider_file(&d, "endless", &loopback_provider("endless", port));
    let s = Server::start(&d);
    s.add("endless", None, json!({"apiKey": "secret-endless"}));
    let key = s.create_key("agent", &["*"]);
    let r = get_as(&s, "/proxy/endless/stream", &key);
    assert_eq!(r.status().as_u16(), 200);
    let mut reader = r.into_body().into_reader();
    let mut first = [0u8; 5];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"hello");
    let reading = std::thread::spawn(move || {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).is_err()
    });
    let started = Instant::now();
    let status = s.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the owner stopped without waiting for the stream: {:?}",
        started.elapsed()
    );
    assert!(
        reading.join().unwrap(),
        "the agent sees a broken answer, not a complete one"
    );
}
