//! Section 2 of the contract: `ask` prompts the user and waits; answers, timeouts,
//! withdrawal, dedup, the per-agent cap, pause, who is asking (from the OS), audit and events.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

fn server(d: &Dirs, timeout_secs: u64) -> Server {
    Server::start_with(
        d,
        Opts::default()
            .arg("--approval-timeout")
            .arg(&timeout_secs.to_string()),
    )
    .unwrap()
}

/// Fires a fetch in a thread (it blocks until answered).
fn fetch_async(s: &Server, key: &str, body: Value) -> std::thread::JoinHandle<(u16, Value)> {
    let (base, key) = (s.base.clone(), key.to_owned());
    std::thread::spawn(move || {
        let mut r = http_agent(Some(Duration::from_secs(60)))
            .post(format!("{base}/tokens/fetch"))
            .header("Authorization", format!("Bearer {key}"))
            .send_json(body)
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
        )
    })
}

fn wait_pending(s: &Server, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = s.admin_get("/admin/approvals").as_array().unwrap().clone();
        if list.len() == n || Instant::now() > deadline {
            assert_eq!(list.len(), n, "{list:?}");
            return list;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn answer(s: &Server, id: &str, a: &str) -> (u16, Value) {
    s.post(
        &format!("/admin/approvals/{id}"),
        Some(&s.admin_token()),
        &json!({"answer": a}),
    )
}

#[test]
fn the_prompt_shows_the_request_and_who_is_asking_and_allow_once_completes_it() {
    let d = Dirs::new();
    let s = server(&d, 30);
    let key = s.create_key("claude-code", &[]);
    s.add("openai", Some("work"), json!({"apiKey": "sk-approve-1"}));
    let w = fetch_async(
        &s,
        &key,
        json!({"provider": "openai", "reason": "summarise my notes"}),
    );
    let p = wait_pending(&s, 1).remove(0);
    assert_eq!(p["agent"], "claude-code");
    assert_eq!(p["provider"], "openai");
    assert_eq!(p["providerName"], "OpenAI");
    assert_eq!(p["account"], "work");
    assert_eq!(p["reason"], "summarise my notes");
    // Who is asking, as the OS says: this test process made the request.
    // One process holds the connection, so the answer is verified (unless a process of this
    // user hides its descriptors from the lookup, as ssh-agent does on a desktop).
    let hidden = p["peer"]["note"]
        .as_str()
        .is_some_and(|n| n.contains("hide"));
    assert_eq!(p["peer"]["verified"], !hidden, "{p}");
    assert_eq!(p["peer"]["processes"].as_array().unwrap().len(), 1, "{p}");
    let proc_ = &p["peer"]["processes"][0];
    assert_eq!(proc_["pid"], std::process::id(), "{p}");
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(proc_["exe"].as_str().unwrap(), exe.to_str().unwrap());
    // An agent key cannot answer.
    let (status, _) = s.post(
        &format!("/admin/approvals/{}", p["id"].as_str().unwrap()),
        Some(&key),
        &json!({"answer": "once"}),
    );
    assert_eq!(status, 401);
    // An answer that is none of the words is refused, without echoing it, and answers nothing.
    for bad in ["sometimes", "for:0", "for:x", "until quit", ""] {
        let (status, v) = answer(&s, p["id"].as_str().unwrap(), bad);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("deny, once, hour, quit, always, for:<seconds>"),
            "{msg}"
        );
        assert!(bad.is_empty() || !msg.contains(bad), "{msg}");
    }
    let (status, v) = answer(&s, p["id"].as_str().unwrap(), "once");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["answer"], "once", "{v}");
    let (status, v) = w.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accessToken"], "sk-approve-1");
    // Once means once: the next request asks again.
    let w = fetch_async(&s, &key, json!({"provider": "openai"}));
    let p = wait_pending(&s, 1).remove(0);
    answer(&s, p["id"].as_str().unwrap(), "deny");
    let (status, v) = w.join().unwrap();
    assert_eq!((status, code(&v)), (403, "APPROVAL_DENIED"));
    // The audit log has both, with the process, and never the key.
    let log = s.admin_get("/admin/audit?agent=claude-code&action=token");
    let outcomes: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["denied", "handed_out"]);
    assert_eq!(log[1]["peer"]["processes"][0]["pid"], std::process::id());
    assert!(!log.to_string().contains("sk-approve-1"));
}

#[test]
fn allow_for_an_hour_always_and_until_quit() {
    let d = Dirs::new();
    let s = server(&d, 30);
    let key = s.create_key("bot", &[]);
    for p in ["openai", "anthropic", "cohere"] {
        s.add(p, None, json!({"apiKey": format!("sk-{p}")}));
    }
    for (provider, a) in [
        ("openai", "hour"),
        ("anthropic", "always"),
        ("cohere", "quit"),
    ] {
        let w = fetch_async(&s, &key, json!({"provider": provider}));
        let p = wait_pending(&s, 1).remove(0);
        assert_eq!(answer(&s, p["id"].as_str().unwrap(), a).0, 200);
        assert_eq!(w.join().unwrap().0, 200, "{provider}");
        // The next request needs no prompt.
        let (status, _) = s.post("/tokens/fetch", Some(&key), &json!({"provider": provider}));
        assert_eq!(status, 200, "{provider} after {a}");
    }
    let keys = s.admin_get("/admin/keys");
    let pol = &keys[0]["policies"];
    assert_eq!(pol["openai"]["mode"], "allow");
    assert!(pol["openai"]["until"].as_i64().unwrap() > akhrot_now() + 3500);
    assert_eq!(pol["anthropic"]["mode"], "allow");
    assert!(pol["anthropic"].get("until").is_none());
    assert!(
        pol.get("cohere").is_none(),
        "until-quit is not a stored policy"
    );
    // After a restart: the hour and always stay; until-quit is gone.
    drop(s);
    let s = server(&d, 1);
    assert_eq!(
        s.post("/tokens/fetch", Some(&key), &json!({"provider": "openai"}))
            .0,
        200
    );
    assert_eq!(
        s.post(
            "/tokens/fetch",
            Some(&key),
            &json!({"provider": "anthropic"})
        )
        .0,
        200
    );
    let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "cohere"}));
    assert_eq!((status, code(&v)), (408, "APPROVAL_TIMEOUT"));
}

fn akhrot_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn timeout_dedup_cap_and_withdrawal() {
    let d = Dirs::new();
    let s = server(&d, 3);
    let key = s.create_key("bot", &[]);
    for p in ["openai", "anthropic", "cohere", "sendgrid"] {
        s.add(p, None, json!({"apiKey": format!("sk-{p}")}));
    }
    // Two identical requests share one prompt; both get the answer.
    let w1 = fetch_async(&s, &key, json!({"provider": "openai"}));
    let w2 = fetch_async(&s, &key, json!({"provider": "openai"}));
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.admin_get("/admin/approvals")[0]["waiting"] != 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = wait_pending(&s, 1).remove(0);
    assert_eq!(p["waiting"], 2);
    answer(&s, p["id"].as_str().unwrap(), "once");
    assert_eq!(w1.join().unwrap().0, 200);
    assert_eq!(w2.join().unwrap().0, 200);

    // At most three open prompts per agent; the fourth is RATE_LIMITED with Retry-After.
    let waiters: Vec<_> = ["openai", "anthropic", "cohere"]
        .iter()
        .map(|p| fetch_async(&s, &key, json!({"provider": p})))
        .collect();
    wait_pending(&s, 3);
    let raw = s.raw(&format!(
        "POST /tokens/fetch HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 23\r\nConnection: close\r\n\r\n{{\"provider\":\"sendgrid\"}}",
        s.port
    ));
    assert!(raw.starts_with("HTTP/1.1 429"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after:"));
    // Nobody answers: all three time out.
    for w in waiters {
        let (status, v) = w.join().unwrap();
        assert_eq!((status, code(&v)), (408, "APPROVAL_TIMEOUT"));
    }
    assert!(
        s.admin_get("/admin/approvals")
            .as_array()
            .unwrap()
            .is_empty()
    );

    // An agent that disconnects withdraws its prompt.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let body = r#"{"provider":"sendgrid"}"#;
    write!(
        sock,
        "POST /tokens/fetch HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.port,
        body.len()
    )
    .unwrap();
    wait_pending(&s, 1);
    drop(sock);
    wait_pending(&s, 0);
    let log = s.admin_get("/admin/audit?action=token");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "timeout")
    );
}

#[test]
fn pause_denies_every_agent_request_and_survives_a_restart() {
    let d = Dirs::new();
    let s = server(&d, 5);
    let key = s.create_key("bot", &["*"]);
    s.add("openai", None, json!({"apiKey": "sk-pause"}));
    assert_eq!(
        s.post("/tokens/fetch", Some(&key), &json!({"provider": "openai"}))
            .0,
        200
    );
    let o = s.cli(&["pause", "on"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "openai"}));
    assert_eq!((status, code(&v)), (403, "APPROVAL_DENIED"));
    assert!(v["error"]["message"].as_str().unwrap().contains("paused"));
    assert_eq!(s.admin_get("/admin/status")["paused"], true);
    drop(s);
    let s = server(&d, 5);
    assert_eq!(
        s.post("/tokens/fetch", Some(&key), &json!({"provider": "openai"}))
            .0,
        403,
        "still paused"
    );
    s.cli(&["pause", "off"], None);
    assert_eq!(
        s.post("/tokens/fetch", Some(&key), &json!({"provider": "openai"}))
            .0,
        200
    );
}

#[test]
fn cli_lists_and_answers_approvals_and_shows_the_log() {
    let d = Dirs::new();
    let s = server(&d, 30);
    let key = s.create_key("bot", &[]);
    s.add("openai", None, json!({"apiKey": "sk-cli-approve"}));
    let w = fetch_async(
        &s,
        &key,
        json!({"provider": "openai", "reason": "cli test"}),
    );
    wait_pending(&s, 1);
    let o = s.cli(&["approvals", "--json"], None);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let o = s.cli(&["approvals"], None);
    assert!(stdout(&o).contains("cli test") && stdout(&o).contains(&id));
    let o = s.cli(&["status", "--json"], None);
    let st: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        st.as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "approval" && x["id"] == id.as_str())
    );
    let o = s.cli(&["approvals", "approve", &id, "--for", "30m"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(w.join().unwrap().0, 200);
    let o = s.cli(&["log", "--json", "--agent", "bot"], None);
    let log: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"token") && actions.contains(&"approval") && actions.contains(&"key"),
        "{actions:?}"
    );
    assert!(log.as_array().unwrap().iter().all(|e| e["id"].is_i64()));
    let o = s.cli(&["log", "--provider", "openai"], None);
    assert!(stdout(&o).contains("handed_out"));
    assert!(!stdout(&o).contains("sk-cli-approve"));
}

#[test]
fn events_stream_announces_new_and_answered_approvals() {
    let d = Dirs::new();
    let s = server(&d, 30);
    let key = s.create_key("bot", &[]);
    s.add("openai", None, json!({"apiKey": "sk-events"}));
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        sock,
        "GET /admin/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        s.port,
        s.admin_token()
    )
    .unwrap();
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let w = fetch_async(&s, &key, json!({"provider": "openai"}));
    let mut seen = String::new();
    while !seen.contains("\"type\":\"created\"") {
        line.clear();
        reader.read_line(&mut line).unwrap();
        seen.push_str(&line);
    }
    assert!(seen.contains("event: approval"), "{seen}");
    let p = wait_pending(&s, 1).remove(0);
    answer(&s, p["id"].as_str().unwrap(), "once");
    while !seen.contains("\"type\":\"resolved\"") {
        line.clear();
        reader.read_line(&mut line).unwrap();
        seen.push_str(&line);
    }
    assert_eq!(w.join().unwrap().0, 200);
    while !seen.contains("handed_out") {
        line.clear();
        reader.read_line(&mut line).unwrap();
        seen.push_str(&line);
    }
    assert!(seen.contains("event: audit"));
    assert!(!seen.contains("sk-events"));
}

#[test]
fn stopping_the_owner_denies_waiting_requests_at_once_and_audits_it() {
    let d = Dirs::new();
    let s = server(&d, 60);
    let key = s.create_key("late-agent", &[]);
    s.add("openai", None, json!({"apiKey": "sk-shutdown"}));
    let w = fetch_async(&s, &key, json!({"provider": "openai"}));
    wait_pending(&s, 1);
    let started = Instant::now();
    let status = s.stop();
    assert!(status.success(), "{status}");
    let (code, v) = w.join().unwrap();
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"]["code"], "APPROVAL_DENIED");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the shutdown waited for the 60 s prompt"
    );
    // The denial is in the audit log (read by the next owner).
    let s = server(&d, 60);
    let log = s.admin_get("/admin/audit?action=approval");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "deny"
                && e["detail"] == "Akhrot shut down"
                && e["agent"] == "late-agent"),
        "{log}"
    );
}

#[test]
fn the_prompt_never_shows_a_key_the_agent_put_on_its_command_line() {
    let d = Dirs::new();
    let s = server(&d, 30);
    let key = s.create_key("curl-agent", &[]);
    s.add("openai", None, json!({"apiKey": "sk-argv-1"}));
    // curl puts the whole header, key included, in its argv: readable by any local process.
    let mut curl = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"provider":"openai"}"#,
        ])
        .arg(format!("{}/tokens/fetch", s.base))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("curl");
    let p = wait_pending(&s, 1).remove(0);
    let cmdline = p["peer"]["processes"][0]["cmdline"].to_string();
    assert!(cmdline.contains("curl"), "{p}");
    assert!(
        cmdline.contains("Authorization: Bearer [redacted]"),
        "{cmdline}"
    );
    let secret = key.rsplit('_').next().unwrap();
    assert!(!p.to_string().contains(secret), "{p}");
    answer(&s, p["id"].as_str().unwrap(), "deny");
    curl.wait().unwrap();
    let log = s.admin_get("/admin/audit?agent=curl-agent");
    assert!(!log.to_string().contains(secret), "{log}");
}
