//! The OpenAPI document: the served `GET /openapi.json` and `akhrot openapi` are exactly the
//! checked-in `docs/openapi.json`; and the answers schemathesis found wrong stay right (a wrong
//! method is 405 with `Allow`, malformed paths and queries are JSON errors).
#![allow(clippy::unwrap_used)]

use akhrot_e2e::*;
use serde_json::{Value, json};

fn checked_in() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    std::fs::read_to_string(&path).unwrap()
}

/// Status line, headers (lower-cased names) and body of a raw answer.
fn parse(raw: &str) -> (u16, Vec<(String, String)>, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn send(
    s: &Server,
    method: &str,
    target: &str,
    extra: &str,
) -> (u16, Vec<(String, String)>, String) {
    parse(&s.raw(&format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{extra}Connection: close\r\n\r\n",
        s.port
    )))
}

#[test]
fn served_document_and_cli_output_equal_docs_openapi_json() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let (status, headers, body) = send(&s, "GET", "/openapi.json", "");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert!(
        body == checked_in(),
        "GET /openapi.json differs from docs/openapi.json; run `UPDATE_OPENAPI=1 cargo test -p akhrot-server openapi`"
    );
    let out = s.cli(&["openapi"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out) == checked_in(),
        "`akhrot openapi` differs from docs/openapi.json"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
}

#[test]
fn wrong_method_is_405_with_allow_in_the_envelope() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    for (method, path, allow) in [
        ("PUT", "/tokens/fetch", "POST"),
        ("PATCH", "/oauth/sessions", "POST"),
        ("DELETE", "/ai/context/summary", "GET,HEAD"),
        ("POST", "/ai/context/openai", "GET,HEAD"),
        ("PUT", "/openapi.json", "GET,HEAD"),
        ("POST", "/ai/approvals", "GET,HEAD"),
        // The proxy takes any method but forwards only these.
        (
            "TRACE",
            "/proxy/openai/v1/models",
            "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS",
        ),
    ] {
        // No JSON content type, no body: still a 405, not the writes' 400.
        let (status, headers, body) = send(
            &s,
            method,
            path,
            &format!("Authorization: Bearer {key}\r\n"),
        );
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(header(&headers, "allow"), Some(allow), "{method} {path}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code(&v), "METHOD_NOT_ALLOWED", "{method} {path}");
    }
    // The right method without a JSON content type is still refused.
    let (status, _, body) = send(
        &s,
        "POST",
        "/tokens/fetch",
        &format!(
            "Authorization: Bearer {key}\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
        ),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn malformed_paths_and_queries_are_json_errors_that_echo_nothing() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let auth = format!("Authorization: Bearer {key}\r\n");
    for target in [
        "/ai/context/%FF%FE",
        "/ai/context/openai/%C3%28",
        "/oauth/sessions/%FF",
        "/ai/context/openai?account=a&account=b",
        "/ai/context/openai/api?account=x&account=y",
    ] {
        let (status, headers, body) = send(&s, "GET", target, &auth);
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/json"),
            "{target}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code(&v), "BAD_REQUEST", "{target}");
        assert!(
            !body.contains("account=") && !body.contains("%FF"),
            "{body}"
        );
    }
    let long = "a".repeat(201);
    let (status, v) = s.get(&format!("/ai/context/openai?account={long}"), Some(&key));
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&key),
        &json!({ "provider": "github", "scopes": ["ok", ""] }),
    );
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
}

#[test]
fn a_refused_write_leaves_the_connection_usable() {
    use std::io::{Read, Write};
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let body = "x".repeat(1000);
    let host = format!("127.0.0.1:{}", s.port);
    // Refused before anything reads the body: wrong content type, then a foreign Origin.
    let first = format!(
        "POST /tokens/fetch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let second = format!(
        "POST /tokens/fetch HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let third = format!("GET /openapi.json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    c.write_all(format!("{first}{second}{third}").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(
        statuses,
        ["400", "403", "200"],
        "{}",
        &text[..text.len().min(600)]
    );
}

/// Every admin route the owner serves (the router in `akhrot_server::routes`), by method. The
/// document must describe each of them, and the owner must serve each operation the document
/// describes: a route added on one side only fails here.
const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("/admin/status", "get"),
    ("/admin/keys", "get"),
    ("/admin/keys", "post"),
    ("/admin/keys/{name}", "delete"),
    ("/admin/policies", "post"),
    ("/admin/connections", "get"),
    ("/admin/connections", "post"),
    ("/admin/connections/{provider}", "delete"),
    ("/admin/token", "post"),
    ("/admin/providers", "get"),
    ("/admin/providers/{code}", "get"),
    ("/admin/clients", "get"),
    ("/admin/clients", "post"),
    ("/admin/sessions", "post"),
    ("/admin/sessions/{id}", "get"),
    ("/admin/approvals", "get"),
    ("/admin/approvals/{id}", "post"),
    ("/admin/pause", "post"),
    ("/admin/audit", "get"),
    ("/admin/events", "get"),
    ("/admin/settings", "get"),
    ("/admin/settings", "post"),
    ("/admin/ui-link", "post"),
    ("/admin/logout", "post"),
];

#[test]
fn the_document_and_the_router_describe_the_same_admin_routes() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let v: Value = serde_json::from_str(&checked_in()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in v["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item[method].is_object() {
                documented.push((path.clone(), method.to_owned()));
            }
        }
    }
    // Documented -> served: with no credential, a served operation answers anything but the
    // router's fallbacks (404 "no such route", 405).
    for (path, method) in &documented {
        let target: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let (status, _, body) = send(&s, &method.to_ascii_uppercase(), &target, "");
        assert_ne!(
            status, 405,
            "{method} {path} is documented but not served: {body}"
        );
        assert!(
            !(status == 404 && body.contains("no such route")),
            "{method} {path} is documented but not served: {body}"
        );
    }
    // Served -> documented, with the admin credential's security scheme.
    for (path, method) in ADMIN_ROUTES {
        let op = &v["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is served but not documented"
        );
        assert_eq!(
            op["security"][0]["adminCredential"],
            json!([]),
            "{method} {path}: the admin credential"
        );
        assert_eq!(op["tags"][0], "admin", "{method} {path}: tag");
    }
    let admin_documented = documented
        .iter()
        .filter(|(p, _)| p.starts_with("/admin/"))
        .count();
    assert_eq!(
        admin_documented,
        ADMIN_ROUTES.len(),
        "the document has admin operations this list does not"
    );
    assert_eq!(
        v["components"]["securitySchemes"]["adminCredential"]["scheme"],
        "bearer"
    );
}
