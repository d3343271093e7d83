//! The CLI after an owner crashed: `server.json` and `admin.token` stay behind, and any process
//! may listen on the port they name. No command sends a credential there, and `akhrot ui` opens
//! only the owner's own `http://127.0.0.1:<port>/` link.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use akhrot_e2e::*;
use serde_json::json;

/// A listener on `port` that records every byte it is sent and answers every request with
/// `answer` (a success envelope), as a process squatting on a dead owner's port would.
struct Squatter {
    seen: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Squatter {
    fn start(port: u16, answer: serde_json::Value) -> Self {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("the dead owner's port is free");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (log, n) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                *n.lock().unwrap() += 1;
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    log.lock().unwrap().extend_from_slice(line.as_bytes());
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                log.lock().unwrap().extend_from_slice(&body);
                let b = json!({"status": "success", "data": answer}).to_string();
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                );
            }
        });
        Self { seen, connections }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// A fake browser: `BROWSER` pointing at a script that records the URLs it was asked to open.
fn fake_browser(dir: &Path) -> (String, std::path::PathBuf) {
    let log = dir.join("browser.log");
    let script = dir.join("browser.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n", log.display()),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    (script.display().to_string(), log)
}

fn run(d: &Dirs, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = akhrot_cmd(&d.data(), &d.config(), args, false);
    cmd.env_remove("AKHROT_NO_BROWSER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_fed(cmd, None)
}

#[test]
fn no_credential_goes_to_whatever_listens_on_a_dead_owners_port() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let port = s.port;
    let key = s.create_key("agent", &["*"]);
    s.add("openai", None, json!({"apiKey": "sk-stale-owner-3333"}));
    let admin = s.admin_token();
    s.kill();
    assert!(
        d.data().join("server.json").exists(),
        "SIGKILL leaves server.json"
    );
    assert!(
        d.data().join("admin.token").exists(),
        "SIGKILL leaves admin.token"
    );

    let squatter = Squatter::start(port, json!({"url": "file:///etc/passwd"}));
    let tmp = tempfile::tempdir().unwrap();
    let (browser, browser_log) = fake_browser(tmp.path());
    for args in [
        &["status"][..],
        &["ui"],
        &["token", "openai"],
        &["approvals"],
        &["exec", "-p", "openai", "--", "true"],
    ] {
        let out = run(&d, args, &[("AKHROT_API_KEY", &key), ("BROWSER", &browser)]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "akhrot {args:?} must say no owner is running: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("not running"),
            "akhrot {args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(squatter.connections(), 0, "{}", squatter.seen());
    let seen = squatter.seen();
    assert!(!seen.contains(&admin) && !seen.contains(&key), "{seen}");
    assert!(!browser_log.exists(), "a browser was opened");

    // A new owner takes over the files; the CLI works again.
    drop(squatter);
    let s = Server::start(&d);
    let out = s.cli(&["status"], None);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Files that describe a live owner (this test process holds the owner lock, and server.json
/// names this pid) at a port where a stand-in answers: what a client sees if the owner itself
/// answered something it should not.
fn fake_live_owner(d: &Dirs, port: u16, pid: u32) -> std::fs::File {
    std::fs::create_dir_all(d.data()).unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(d.data().join("owner.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let info = json!({
        "pid": pid,
        "port": port,
        // A client never uses this: it builds http://127.0.0.1:<port> itself.
        "baseUrl": "http://evil.example",
        "startedAt": "2026-12-04T00:00:00Z",
        "version": "0.1.0",
    });
    std::fs::write(d.data().join("server.json"), info.to_string()).unwrap();
    std::fs::write(d.data().join("admin.token"), "akhrot-admin-fake").unwrap();
    lock
}

#[test]
fn akhrot_ui_opens_only_the_owners_own_loopback_link() {
    let tmp = tempfile::tempdir().unwrap();
    let (browser, browser_log) = fake_browser(tmp.path());
    for bad in [
        "file:///etc/passwd",
        "http://evil.example/ui/login?code=1",
        "javascript:alert(1)",
        "http://127.0.0.1:1/ui/login?code=1",
    ] {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let squatter = Squatter::start(port, json!({ "url": bad, "expiresInSecs": 3600 }));
        let d = Dirs::new();
        let _lock = fake_live_owner(&d, port, std::process::id());
        let out = run(&d, &["ui"], &[("BROWSER", &browser)]);
        assert!(!out.status.success(), "{bad}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("not opening it"),
            "{bad}: {}",
            stderr(&out)
        );
        assert!(!stdout(&out).contains(bad), "{bad} was printed");
        assert!(!browser_log.exists(), "{bad} was opened");
        assert_eq!(squatter.connections(), 1);
    }
    // The owner's own link is opened.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let good = format!("http://127.0.0.1:{port}/ui/login?code=abc");
    let _squatter = Squatter::start(port, json!({ "url": good, "expiresInSecs": 3600 }));
    let d = Dirs::new();
    let _lock = fake_live_owner(&d, port, std::process::id());
    let out = run(&d, &["ui"], &[("BROWSER", &browser)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The opener runs detached: give it a moment.
    let mut opened = String::new();
    for _ in 0..100 {
        opened = std::fs::read_to_string(&browser_log).unwrap_or_default();
        if opened.contains(&good) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        opened.contains(&good),
        "the owner's own link was not opened: {opened:?}"
    );
}

#[test]
fn an_owner_lock_held_by_another_pid_than_server_json_names_is_refused() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let squatter = Squatter::start(port, json!({}));
    let d = Dirs::new();
    // This process holds the lock, but server.json names pid 1.
    let _lock = fake_live_owner(&d, port, 1);
    let out = run(&d, &["status"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("held by pid"), "{}", stderr(&out));
    assert_eq!(squatter.connections(), 0);
}
