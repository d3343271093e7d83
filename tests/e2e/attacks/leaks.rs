//! Smaller leaks: the one-time UI sign-in link in service logs, and a credential the provider
//! echoes back through the proxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use akhrot_e2e::*;
use serde_json::json;

#[test]
fn serve_prints_the_sign_in_link_only_to_a_terminal() {
    // stdout is a pipe (a service log): no link, only how to get one.
    let d = Dirs::new();
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(d.data())
        .arg("--config-dir")
        .arg(d.config())
        .args(["serve", "--port", "0"])
        .env_remove("AKHROT_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    r.read_line(&mut first).unwrap();
    r.read_line(&mut second).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("serving on http://127.0.0.1:"), "{first}");
    assert!(second.contains("run `akhrot ui`"), "{second}");
    assert!(!second.contains("code="), "{second}");

    // On a terminal (a pty from `script`), the person sees the link.
    let d = Dirs::new();
    let cmdline = format!(
        "{} --data-dir {} --config-dir {} serve --port 0",
        bin().display(),
        d.data().display(),
        d.config().display()
    );
    let mut child = Command::new("script")
        .args(["-qfec", &cmdline, "/dev/null"])
        .env_remove("AKHROT_PASSPHRASE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        // The pty carries stderr (the log) too: read until the link line, or a few lines.
        let mut text = String::new();
        for _ in 0..40 {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            text.push_str(&line);
            if line.contains("web UI:") {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // `script` forwards signals poorly: stop the server through its own pid.
    if let Ok(info) = std::fs::read_to_string(d.data().join("server.json")) {
        let pid = serde_json::from_str::<serde_json::Value>(&info).unwrap()["pid"].clone();
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("/ui/login?code="), "{text}");
    if let Some(code) = text
        .split("code=")
        .nth(1)
        .and_then(|c| c.split_whitespace().next())
    {
        secrets::register(code);
    }
}

/// An upstream that answers every request with a redirect back to itself carrying the query it
/// got, and a body quoting the query in pieces (so a value may be split across chunks);
/// records the queries.
fn echoing_upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let target = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let query = target
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .to_owned();
            log.lock().unwrap().push(query.clone());
            let decoded = query_params(&target)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let body = format!(
                "{{\"error\":\"moved\",\"url\":\"/next?{query}\",\"decoded\":\"{decoded}\"}}"
            );
            let _ = write!(
                c,
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/v1/next?{query}\r\nX-Echo: {decoded}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            // Half now, half later: the proxy must mask across the split.
            let (a, b) = body.as_bytes().split_at(body.len() / 2 + 7);
            let _ = c.write_all(a);
            let _ = c.flush();
            std::thread::sleep(Duration::from_millis(100));
            let _ = c.write_all(b);
        }
    });
    (port, seen)
}

#[test]
fn a_credential_the_provider_echoes_is_masked_in_every_header_and_body_the_proxy_passes_back() {
    let (port, seen) = echoing_upstream();
    let d = Dirs::new();
    write_provider_file(
        &d,
        "standin",
        &api_key_provider(
            "qry",
            r#"query = { "key" = "{accessToken}" }"#,
            &[("api", format!("http://127.0.0.1:{port}/v1"))],
        ),
    );
    let s = Server::start(&d);
    let issues = s.admin_get("/admin/status")["catalog"]["issues"].clone();
    assert_eq!(issues, json!([]), "providers.d entry rejected");
    // Characters that percent-encode, so every spelling is exercised.
    let secret = "qk_live+Echo/Me=9f3a7c21";
    s.add("qry", None, json!({"apiKey": secret}));
    let key = s.create_key("agent", &[]);
    let out = s.cli(
        &[
            "policy",
            "set",
            "--agent",
            "agent",
            "--provider",
            "qry",
            "proxy-only",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let raw = s.raw(&format!(
        "GET /proxy/qry/search?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {key}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        s.port
    ));
    // The provider got the key (the injection happened), and it was asked for an
    // uncompressed answer so the answer could be checked.
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("key="), "{got:?}");
    assert!(raw.starts_with("HTTP/1.1 302"), "{raw}");
    for spelling in [
        secret.to_owned(),
        secret
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D"),
        "Echo/Me".to_owned(),
    ] {
        assert!(
            !raw.contains(&spelling),
            "{spelling} reached the agent:\n{raw}"
        );
    }
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let location = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .unwrap();
    assert!(location.contains("key=****"), "{location}");
    // Same length as the provider sent: Content-Length still holds.
    let cl: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    assert_eq!(cl, body.len(), "{raw}");
    assert!(body.contains("\"decoded\":\"q=1&key=*"), "{body}");

    // The audit says a header was masked.
    let log = s.admin_get("/admin/audit?provider=qry");
    let text = log.to_string();
    assert!(text.contains("masked"), "{text}");
    assert!(!text.contains("Echo/Me"), "{text}");
}

#[test]
fn a_compressed_answer_that_cannot_be_checked_is_not_passed_on() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\x1f\x8b\x08\x00",
            );
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
        }
    });
    let d = Dirs::new();
    write_provider_file(
        &d,
        "standin",
        &api_key_provider(
            "gz",
            INJECT_X_API_KEY,
            &[("api", format!("http://127.0.0.1:{port}/v1"))],
        ),
    );
    let s = Server::start(&d);
    s.add("gz", None, json!({"apiKey": "secret-gzip-4444"}));
    let key = s.create_key("agent", &["*"]);
    let (status, v) = s.get("/proxy/gz/x", Some(&key));
    assert_eq!(status, 502, "{v}");
    assert_eq!(code(&v), "PROVIDER_ERROR");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("compressed"),
        "{v}"
    );
}
