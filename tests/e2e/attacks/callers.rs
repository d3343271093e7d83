//! Who the prompt says is asking (issue 15, items 2 and 4).
//!
//! - Over `/mcp`, the tool calls used to be re-sent by the owner to its own listener, so the
//!   prompt named the owner as the calling process: the real client must be named.
//! - An agent that forks after connecting lets a decoy (any executable, argv and directory) hold
//!   the socket while the other process sends the request: every holder is listed, and the
//!   answer is not called verified.
//! - Joined prompts: one prompt shows one reason and one caller, so only requests with the same
//!   reason and caller may share it ("Allow once" releases every joined request).

use super::*;

use std::process::{Child, Command, Stdio};

fn server(d: &Dirs) -> Server {
    Server::start_with(d, Opts::default().arg("--approval-timeout").arg("60")).unwrap()
}

/// The open prompts, once there are `n` of them holding `waiting` requests in all.
fn wait_prompts(s: &Server, n: usize, waiting: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = s.admin_get("/admin/approvals").as_array().unwrap().clone();
        let w: u64 = list.iter().map(|p| p["waiting"].as_u64().unwrap()).sum();
        if (list.len() == n && w == waiting) || Instant::now() > deadline {
            assert_eq!((list.len(), w), (n, waiting), "{list:#?}");
            return list;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn answer(s: &Server, p: &Value, a: &str) {
    let (st, v) = s.post(
        &format!("/admin/approvals/{}", p["id"].as_str().unwrap()),
        Some(&s.admin_token()),
        &json!({ "answer": a }),
    );
    assert_eq!(st, 200, "{v}");
}

fn pids(peer: &Value) -> Vec<u64> {
    peer["processes"]
        .as_array()
        .unwrap_or_else(|| panic!("no processes in {peer}"))
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect()
}

/// A token request from this process on its own connection, in a thread (it waits for the
/// prompt's answer).
fn fetch_async(s: &Server, key: &str, reason: &str) -> std::thread::JoinHandle<(u16, Value)> {
    let (base, key) = (s.base.clone(), key.to_owned());
    let body = json!({ "provider": "openai", "reason": reason });
    std::thread::spawn(move || {
        let mut r = http_agent(Some(Duration::from_secs(60)))
            .post(format!("{base}/tokens/fetch"))
            .header("Authorization", format!("Bearer {key}"))
            .send_json(body)
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

/// A token request sent by bash (builtins only, so no helper process shares the socket), after
/// starting `decoys` background `sleep`s run as `claude` that inherit the connection, as an
/// agent that forks after connecting would. The key comes through the environment.
fn bash_fetch(s: &Server, key: &str, reason: &str, decoys: usize) -> Child {
    let body = json!({ "provider": "openai", "reason": reason }).to_string();
    let script = format!(
        r#"exec 3<>/dev/tcp/127.0.0.1/{port}
for i in $(seq {decoys}); do
  (exec -a claude sleep 30) &
  until [ "$(cat /proc/$!/comm 2>/dev/null)" = sleep ]; do sleep 0.02; done
done
printf 'POST /tokens/fetch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$AKHROT_TEST_KEY" "${{#BODY}}" "$BODY" >&3
while IFS= read -r -t 50 line <&3; do printf '%s\n' "$line"; done
kill $(jobs -p) 2>/dev/null
exit 0"#,
        port = s.port
    );
    Command::new("bash")
        .args(["-c", &script])
        .env("AKHROT_TEST_KEY", key)
        .env("BODY", body)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn bash_answer(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `/mcp` tool call on a connection of this process, in a thread.
fn mcp_async(
    s: &Server,
    key: &str,
    tool: &'static str,
    args: Value,
) -> std::thread::JoinHandle<Value> {
    let (port, key) = (s.port, key.to_owned());
    std::thread::spawn(move || {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            c,
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        let _ = c.read_to_string(&mut raw);
        assert_eq!(raw_status(&raw), 200, "{raw}");
        let body = raw.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap_or_else(|_| {
            body.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|v| v.get("id").is_some())
                .unwrap_or_else(|| panic!("no JSON-RPC answer in {raw}"))
        })
    })
}

/// The single process named, checking it is called verified (unless a process of this user
/// hides its descriptors from the lookup, as ssh-agent does on a desktop: then it must not be).
fn only_process(peer: &Value) -> &Value {
    let procs = peer["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{peer}");
    let hidden = peer["note"].as_str().is_some_and(|n| n.contains("hide"));
    assert_eq!(peer["verified"], !hidden, "{peer}");
    &procs[0]
}

#[test]
fn over_mcp_the_prompt_names_the_real_client_not_the_owner() {
    let d = Dirs::new();
    let s = server(&d);
    let key = s.create_key("mcp-agent", &[]);
    s.add("openai", None, json!({ "apiKey": "sk-mcp-caller-1" }));

    let call = mcp_async(
        &s,
        &key,
        "get_token",
        json!({ "provider": "openai", "reason": "over mcp" }),
    );
    let p = wait_prompts(&s, 1, 1).remove(0);
    assert_eq!(p["agent"], "mcp-agent");
    assert_eq!(p["reason"], "over mcp");
    // The owner re-sending the call to itself made the owner the "caller".
    assert_ne!(pids(&p["peer"]), [u64::from(s.pid())], "{p}");
    let proc_ = only_process(&p["peer"]);
    assert_eq!(proc_["pid"], std::process::id(), "{p}");
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(proc_["exe"].as_str().unwrap(), exe.to_str().unwrap());

    answer(&s, &p, "once");
    let v = call.join().unwrap();
    assert_eq!(
        v["result"]["structuredContent"]["accessToken"], "sk-mcp-caller-1",
        "{v}"
    );
    // The audit log names the same process.
    let log = s.admin_get("/admin/audit?agent=mcp-agent&action=token");
    assert_eq!(log[0]["outcome"], "handed_out", "{log}");
    assert_eq!(pids(&log[0]["peer"]), [u64::from(std::process::id())]);

    // Everything else an agent can reach over /mcp still runs every guard: a denied prompt
    // answers APPROVAL_DENIED to the tool, named the same way.
    let call = mcp_async(
        &s,
        &key,
        "call_api",
        json!({ "provider": "openai", "method": "GET", "path": "/models", "reason": "list" }),
    );
    let p = wait_prompts(&s, 1, 1).remove(0);
    assert_eq!(pids(&p["peer"]), [u64::from(std::process::id())], "{p}");
    answer(&s, &p, "deny");
    let v = call.join().unwrap();
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert_eq!(
        v["result"]["structuredContent"]["error"]["code"], "APPROVAL_DENIED",
        "{v}"
    );
}

#[test]
fn a_forked_decoy_holding_the_socket_is_listed_and_nothing_is_verified() {
    let d = Dirs::new();
    let s = server(&d);
    let key = s.create_key("forker", &[]);
    s.add("openai", None, json!({ "apiKey": "sk-fork-1" }));

    let sender = bash_fetch(&s, &key, "forked", 1);
    let bash_pid = u64::from(sender.id());
    let p = wait_prompts(&s, 1, 1).remove(0);
    let peer = &p["peer"];
    assert_eq!(peer["verified"], false, "{peer}");
    let listed = pids(peer);
    assert_eq!(listed.len(), 2, "{peer}");
    assert!(listed.contains(&bash_pid), "the sender is listed: {peer}");
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "sorted: {peer}");
    let decoy = peer["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] != bash_pid)
        .unwrap();
    assert_eq!(decoy["cmdline"], json!(["claude", "30"]), "{peer}");
    assert!(decoy["exe"].as_str().unwrap().ends_with("/sleep"), "{peer}");
    assert!(
        peer["note"].as_str().unwrap().starts_with(
            "2 processes share this connection; any of them may have sent the request"
        ),
        "{peer}"
    );
    // The key the agent put in no argv of ours; the prompt never shows it.
    let secret = key.rsplit('_').next().unwrap();
    assert!(!p.to_string().contains(secret));
    // `akhrot approvals` says so too.
    let table = stdout(&s.cli(&["approvals"], None));
    assert!(table.contains("not verified: 2 processes share"), "{table}");

    answer(&s, &p, "deny");
    let raw = bash_answer(sender);
    assert_eq!(raw_status(&raw), 403, "{raw}");
    // The audit log keeps the same facts.
    let log = s.admin_get("/admin/audit?agent=forker&action=token");
    assert_eq!(log[0]["outcome"], "denied", "{log}");
    assert_eq!(log[0]["peer"]["verified"], false);
    assert_eq!(pids(&log[0]["peer"]), listed);
}

#[test]
fn prompts_join_only_requests_with_the_same_reason_and_caller() {
    let d = Dirs::new();
    let s = server(&d);
    let key = s.create_key("joiner", &[]);
    s.add("openai", None, json!({ "apiKey": "sk-join-1" }));

    // Same agent, same provider, another reason: two prompts, each answered on its own.
    let a = fetch_async(&s, &key, "read my calendar");
    let b = fetch_async(&s, &key, "delete my repositories");
    let prompts = wait_prompts(&s, 2, 2);
    for p in &prompts {
        assert_eq!(p["waiting"], 1, "{p}");
        let a = if p["reason"] == "read my calendar" {
            "once"
        } else {
            "deny"
        };
        answer(&s, p, a);
    }
    assert_eq!(a.join().unwrap().0, 200);
    assert_eq!(
        b.join().unwrap().0,
        403,
        "Allow once released only what was seen"
    );

    // Same reason and caller: one prompt, two waiting; another process with the same reason
    // gets its own prompt.
    let c = fetch_async(&s, &key, "same thing");
    let e = fetch_async(&s, &key, "same thing");
    wait_prompts(&s, 1, 2);
    let other = bash_fetch(&s, &key, "same thing", 0);
    let prompts = wait_prompts(&s, 2, 3);
    let ours = prompts
        .iter()
        .find(|p| pids(&p["peer"]) == [u64::from(std::process::id())])
        .unwrap_or_else(|| panic!("{prompts:#?}"));
    assert_eq!(ours["waiting"], 2, "{ours}");
    let theirs = prompts.iter().find(|p| p["id"] != ours["id"]).unwrap();
    assert_eq!(pids(&theirs["peer"]), [u64::from(other.id())], "{theirs}");
    assert_eq!(theirs["waiting"], 1);
    answer(&s, ours, "once");
    answer(&s, theirs, "deny");
    assert_eq!(c.join().unwrap().0, 200);
    assert_eq!(e.join().unwrap().0, 200);
    assert_eq!(raw_status(&bash_answer(other)), 403);
}
