//! Consent sessions as an attack (issue 15): an agent used `POST /oauth/sessions` to go around
//! policy, pause and approval, and to replace the person's stored connection with an account
//! of its own choosing. Every test drives the real node-oidc-provider and the real server.

use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

/// `OauthEnv` (agent `agent`, allowed every provider) on a server whose approval prompts time
/// out after `timeout_secs`.
fn env(timeout_secs: u64) -> OauthEnv {
    let oidc = Oidc::start(&[]);
    let d = Dirs::new();
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", "client_secret_basic"));
    let s = Server::start_with(
        &d,
        Opts::default()
            .arg("--approval-timeout")
            .arg(&timeout_secs.to_string()),
    )
    .unwrap();
    OauthEnv::with_basic_client(oidc, s, d)
}

fn policy(s: &Server, agent: &str, mode: &str) {
    s.admin_post(
        "/admin/policies",
        &json!({"agent": agent, "provider": "idp", "mode": mode}),
    );
}

/// `POST /oauth/sessions` on its own thread (it may wait for a prompt).
fn start_async(s: &Server, key: &str, body: Value) -> std::thread::JoinHandle<(u16, Value)> {
    let (base, key) = (s.base.clone(), key.to_owned());
    std::thread::spawn(move || {
        let mut r = http_agent(Some(Duration::from_secs(60)))
            .post(format!("{base}/oauth/sessions"))
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = s.admin_get("/admin/approvals").as_array().unwrap().clone();
        if list.len() == n || Instant::now() > deadline {
            assert_eq!(list.len(), n, "{list:?}");
            return list;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn answer(s: &Server, id: &str, a: &str) -> Value {
    s.admin_post(&format!("/admin/approvals/{id}"), &json!({"answer": a}))
}

/// The audit entries of action `connect`, oldest first.
fn connect_log(s: &Server) -> Vec<Value> {
    let mut v = s
        .admin_get("/admin/audit?action=connect")
        .as_array()
        .unwrap()
        .clone();
    v.reverse();
    v
}

/// What an `akhrot token` prints for `account` of `idp`.
fn cli_token(s: &Server, account: &str) -> String {
    let o = s.cli(&["token", "idp", "--account", account], None);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn policy_deny_pause_and_timeout_apply_to_consent_sessions_and_are_audited_with_the_agent() {
    let e = env(1);
    let s = &e.s;
    let body = json!({"provider": "idp", "account": "mallory-label"});
    // Policy deny for the provider.
    let denied = s.create_key("denied", &[]);
    policy(s, "denied", "deny");
    let (status, v) = s.post("/oauth/sessions", Some(&denied), &body);
    assert_eq!((status, code(&v)), (403, "APPROVAL_DENIED"), "{v}");
    // Pause: even the agent allowed everything is refused.
    s.admin_post("/admin/pause", &json!({"paused": true}));
    let (status, v) = s.post("/oauth/sessions", Some(&e.key), &body);
    assert_eq!((status, code(&v)), (403, "APPROVAL_DENIED"), "{v}");
    s.admin_post("/admin/pause", &json!({"paused": false}));
    // Ask, and nobody answers within the (1 s) timeout.
    let asker = s.create_key("asker", &[]);
    let (status, v) = s.post("/oauth/sessions", Some(&asker), &body);
    assert_eq!((status, code(&v)), (408, "APPROVAL_TIMEOUT"), "{v}");
    // proxy-only: allowed without a prompt (a consent session never shows the agent a token).
    let proxied = s.create_key("proxied", &[]);
    policy(s, "proxied", "proxy-only");
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&proxied),
        &json!({"provider": "idp"}),
    );
    assert_eq!(status, 200, "{v}");
    // Unpaused, the allowed agent gets its session.
    let (status, v) = s.post("/oauth/sessions", Some(&e.key), &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["status"], "pending");
    assert!(
        s.admin_get("/admin/connections")
            .as_array()
            .unwrap()
            .is_empty()
    );

    let log = connect_log(s);
    let seen: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["agent"].as_str().unwrap_or("<none>"),
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen.iter().map(|(a, o, _)| (*a, *o)).collect::<Vec<_>>(),
        vec![
            ("denied", "denied"),
            ("agent", "denied"),
            ("asker", "timeout"),
            ("proxied", "started"),
            ("agent", "started"),
        ],
        "{log:?}"
    );
    assert_eq!(seen[0].2, "policy deny");
    assert_eq!(seen[1].2, "agents are paused");
    assert!(seen[3].2.starts_with("session oas_"), "{log:?}");
    for entry in &log {
        assert_eq!(entry["provider"], "idp");
        assert!(entry["agentId"].is_string(), "{entry}");
    }
    assert_eq!(log[0]["account"], "mallory-label");
}

#[test]
fn under_ask_a_consent_session_waits_for_the_person_and_a_broad_answer_grants_nothing_more() {
    let e = env(30);
    let s = &e.s;
    // The person's own connection, so that token hand-outs have something to ask about.
    assert_eq!(e.connect_as_person("alice", Some("work")).1, 200);
    let asker = s.create_key("asker", &[]);

    // Denied at the prompt.
    let w = start_async(
        s,
        &asker,
        json!({"provider": "idp", "account": "new-label", "scopes": ["profile"]}),
    );
    let p = wait_pending(s, 1).remove(0);
    assert_eq!(p["kind"], "connect", "{p}");
    assert_eq!(p["agent"], "asker");
    assert_eq!(p["provider"], "idp");
    assert_eq!(p["account"], "new-label");
    assert_eq!(p["scopes"], json!(["profile"]));
    assert!(p["request"].is_null(), "{p}");
    // The agent sees its own request waiting, as a consent session.
    let (status, own) = s.get("/ai/approvals", Some(&asker));
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["data"][0]["kind"], "connect", "{own}");
    answer(s, p["id"].as_str().unwrap(), "deny");
    let (status, v) = w.join().unwrap();
    assert_eq!((status, code(&v)), (403, "APPROVAL_DENIED"), "{v}");

    // "Always" on a connect prompt is taken as once: the session starts, nothing else changes.
    let w = start_async(s, &asker, json!({"provider": "idp"}));
    let p = wait_pending(s, 1).remove(0);
    assert_eq!(p["kind"], "connect");
    assert_eq!(p["account"], "", "no label asked for");
    let answered = answer(s, p["id"].as_str().unwrap(), "always");
    assert_eq!(answered["answer"], "once", "{answered}");
    let (status, v) = w.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["status"], "pending");
    assert!(
        v["data"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&e.oidc.issuer)
    );
    let keys = s.admin_get("/admin/keys");
    assert_eq!(
        key_record(&keys, "asker")["policies"],
        json!({}),
        "no policy was written: {keys}"
    );
    // "Until quit" likewise.
    let w = start_async(s, &asker, json!({"provider": "idp"}));
    let p = wait_pending(s, 1).remove(0);
    assert_eq!(
        answer(s, p["id"].as_str().unwrap(), "quit")["answer"],
        "once"
    );
    assert_eq!(w.join().unwrap().0, 200);

    // The agent still has to ask for a token, and for the next session.
    let (base, key) = (s.base.clone(), asker.clone());
    let fetch = std::thread::spawn(move || {
        let r = http_agent(Some(Duration::from_secs(60)))
            .post(format!("{base}/tokens/fetch"))
            .header("Authorization", format!("Bearer {key}"))
            .send_json(json!({"provider": "idp"}))
            .unwrap();
        r.status().as_u16()
    });
    let p = wait_pending(s, 1).remove(0);
    assert_eq!(p["kind"], "token", "{p}");
    answer(s, p["id"].as_str().unwrap(), "deny");
    assert_eq!(fetch.join().unwrap(), 403);
    let w = start_async(s, &asker, json!({"provider": "idp"}));
    let p = wait_pending(s, 1).remove(0);
    assert_eq!(p["kind"], "connect");
    answer(s, p["id"].as_str().unwrap(), "once");
    assert_eq!(w.join().unwrap().0, 200);

    // The answers are audited against the agent, as a consent session.
    let approvals = s.admin_get("/admin/audit?action=approval");
    let connects: Vec<&Value> = approvals
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["detail"] == "consent session")
        .collect();
    assert_eq!(connects.len(), 4, "{approvals}");
    assert!(connects.iter().all(|a| a["agent"] == "asker"));
}

#[test]
fn an_agent_session_never_replaces_a_stored_connection_and_the_person_still_can() {
    let e = env(30);
    let s = &e.s;
    // The person connects two accounts: one under a label, one under the name the provider
    // reports (`bob@example.test`).
    assert_eq!(
        e.connect_as_person("alice", Some("victim@example.com")).1,
        200
    );
    assert_eq!(e.connect_as_person("bob", None).1, 200);
    let before = s.admin_get("/admin/connections");
    let accounts: Vec<&str> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, vec!["victim@example.com", "bob@example.test"]);
    let victim_token = cli_token(s, "victim@example.com");
    let bob_token = cli_token(s, "bob@example.test");

    // 1. Naming the person's label: refused at once, before any prompt or consent page.
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&e.key),
        &json!({"provider": "idp", "account": "victim@example.com"}),
    );
    assert_eq!((status, code(&v)), (409, "CONNECTION_EXISTS"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("akhrot connect idp"), "{msg}");
    assert!(
        s.admin_get("/admin/approvals")
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A look-alike that differs only in case is the same account.
    let (status, v) = s.post(
        "/oauth/sessions",
        Some(&e.key),
        &json!({"provider": "idp", "account": "Victim@Example.com"}),
    );
    assert_eq!((status, code(&v)), (409, "CONNECTION_EXISTS"), "{v}");

    // 2. No label, the consent given as an identity that is already connected; 3. a fresh
    // label, same identity. Both are refused at completion, tokens discarded.
    let revocations = e.oidc.stat("revocations");
    for body in [
        json!({"provider": "idp"}),
        json!({"provider": "idp", "account": "fresh"}),
    ] {
        let (status, v) = s.post("/oauth/sessions", Some(&e.key), &body);
        assert_eq!(status, 200, "{v}");
        let id = v["data"]["sessionId"].as_str().unwrap().to_owned();
        let cb = e.consent(v["data"]["url"].as_str().unwrap(), "bob", false);
        let (status, page) = e.deliver(&cb);
        assert_eq!(status, 409, "{body}: {page}");
        assert!(page.contains("already connected"), "{page}");
        assert!(page.contains("bob@example.test"), "{page}");
        let sess = e.session(&id);
        assert_eq!(sess["status"], "failed", "{sess}");
        assert_eq!(sess["errorCode"], "CONNECTION_EXISTS", "{sess}");
        let err = sess["error"].as_str().unwrap();
        assert!(err.starts_with("CONNECTION_EXISTS"), "{err}");
        assert!(err.contains("akhrot connect idp"), "{err}");
        assert!(sess.get("account").is_none(), "{sess}");
        // The callback cannot be replayed into a success either.
        assert_eq!(e.deliver(&cb).0, 400);
    }
    assert_eq!(
        e.oidc.stat("revocations"),
        revocations + 2,
        "the discarded tokens were revoked at the provider"
    );

    // The vault is exactly as it was: same rows (ids, updatedAt), same tokens.
    assert_eq!(s.admin_get("/admin/connections"), before);
    assert_eq!(cli_token(s, "victim@example.com"), victim_token);
    assert_eq!(cli_token(s, "bob@example.test"), bob_token);
    // ... and the person's tokens still work at the provider.
    assert!(e.oidc.userinfo(victim_token.trim()).is_some());

    // The refusals are audited against the agent.
    let log = connect_log(s);
    let conflicts: Vec<&Value> = log.iter().filter(|e| e["outcome"] == "conflict").collect();
    assert_eq!(conflicts.len(), 4, "{log:?}");
    assert!(conflicts.iter().all(|c| c["agent"] == "agent"), "{log:?}");
    assert_eq!(conflicts[0]["account"], "victim@example.com");
    assert_eq!(conflicts[1]["account"], "Victim@Example.com");
    assert_eq!(conflicts[2]["account"], "bob@example.test");
    assert_eq!(conflicts[3]["account"], "bob@example.test");

    // The person reconnects the label as another identity: that replaces, as it always did.
    let (id, status, page) = e.connect_as_person("carol", Some("victim@example.com"));
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        s.admin_get(&format!("/admin/sessions/{id}"))["status"],
        "completed"
    );
    let after = s.admin_get("/admin/connections");
    assert_eq!(after.as_array().unwrap().len(), 2);
    let new_token = cli_token(s, "victim@example.com");
    assert_ne!(new_token, victim_token);
    assert_eq!(
        e.oidc.userinfo(new_token.trim()).unwrap()["sub"],
        "carol",
        "the person's reconnect stored carol's token"
    );
}

#[test]
fn two_agent_sessions_racing_for_one_new_label_store_exactly_one() {
    let e = env(30);
    let s = &e.s;
    let mut sessions = Vec::new();
    for login in ["alice", "mallory"] {
        let (status, v) = s.post(
            "/oauth/sessions",
            Some(&e.key),
            &json!({"provider": "idp", "account": "shared"}),
        );
        assert_eq!(status, 200, "{v}");
        let id = v["data"]["sessionId"].as_str().unwrap().to_owned();
        let cb = e.consent(v["data"]["url"].as_str().unwrap(), login, false);
        sessions.push((id, cb));
    }
    // Both callbacks arrive at once.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let waiters: Vec<_> = sessions
        .iter()
        .map(|(_, cb)| {
            let (base, path) = (s.base.clone(), cb.strip_prefix(&s.base).unwrap().to_owned());
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                http_agent(Some(Duration::from_secs(60)))
                    .get(format!("{base}{path}"))
                    .call()
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses: Vec<u16> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409]);
    let states: Vec<(String, Value)> = sessions
        .iter()
        .map(|(id, _)| {
            let v = e.session(id);
            (
                v["status"].as_str().unwrap().to_owned(),
                v["errorCode"].clone(),
            )
        })
        .collect();
    assert!(
        states.contains(&("completed".into(), Value::Null))
            && states.contains(&("failed".into(), json!("CONNECTION_EXISTS"))),
        "{states:?}"
    );
    let conns = s.admin_get("/admin/connections");
    let conns = conns.as_array().unwrap();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0]["account"], "shared");

    // Start and completion are audited against the agent that started the sessions.
    let log = connect_log(s);
    let outcomes: Vec<(&str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["agent"].as_str().unwrap_or("<none>"),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let count = |o: &str| {
        outcomes
            .iter()
            .filter(|(a, x)| *a == "agent" && *x == o)
            .count()
    };
    assert_eq!(
        (count("started"), count("connected"), count("conflict")),
        (2, 1, 1),
        "{log:?}"
    );
    assert_eq!(outcomes.len(), 4, "{log:?}");
}
