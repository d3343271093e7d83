//! The `akhrot` commands against a running owner.
#![allow(clippy::unwrap_used)]

use akhrot_e2e::*;
use serde_json::Value;

/// `akhrot policy set --agent <agent> --provider openai <mode…>`.
fn policy_set(s: &Server, agent: &str, mode: &[&str]) -> std::process::Output {
    let args = [
        &["policy", "set", "--agent", agent, "--provider", "openai"][..],
        mode,
    ]
    .concat();
    s.cli(&args, None)
}

#[test]
fn keys_create_prints_only_the_key_and_list_revoke_work() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let o = s.cli(
        &["keys", "create", "--name", "claude", "--allow", "openai"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let key = out.trim();
    assert_eq!(
        out.lines().count(),
        1,
        "stdout holds the key and nothing else: {out:?}"
    );
    assert!(key.starts_with("akhrot_"));
    assert!(stderr(&o).contains("shown only this once"));
    assert_eq!(s.get("/ai/context/summary", Some(key)).0, 200);

    let o = s.cli(&["keys", "list", "--json"], None);
    assert!(o.status.success());
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0]["id"].is_string());
    assert_eq!(list[0]["name"], "claude");
    assert_eq!(list[0]["policies"]["openai"]["mode"], "allow");
    assert!(!stdout(&o).contains(key), "the key is never listed");
    let o = s.cli(&["keys", "list"], None);
    assert!(stdout(&o).contains("claude") && stdout(&o).contains("NAME"));

    let o = s.cli(&["keys", "create", "--name", "claude"], None);
    assert!(!o.status.success(), "duplicate names are refused");
    assert!(stdout(&o).is_empty());

    let o = s.cli(&["keys", "revoke", "claude"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.get("/ai/context/summary", Some(key)).0, 401);
}

#[test]
fn add_token_status_disconnect() {
    let d = Dirs::new();
    let s = Server::start(&d);
    // One-field provider: the bare secret on stdin.
    let o = s.cli(&["add", "openai"], Some("sk-cli-1234\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("sk-cli-1234") && !stderr(&o).contains("sk-cli-1234"));
    let o = s.cli(&["token", "openai"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "sk-cli-1234\n");

    // Several fields: field=value lines.
    let o = s.cli(
        &["add", "twilio", "--account", "prod"],
        Some("accountSid=AC99\nauthToken=tw-cli-secret\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.cli(&["token", "twilio", "--account", "prod"], None);
    assert_eq!(stdout(&o).trim(), "tw-cli-secret");

    // Missing a required field: a clear error naming it, nothing stored.
    let o = s.cli(&["add", "mailgun"], Some("apiKey=key-1\n"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("domain"), "{}", stderr(&o));
    // Unknown provider, OAuth provider.
    let o = s.cli(&["add", "nosuch"], Some("x"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nosuch"));
    let o = s.cli(&["add", "github"], Some("x"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("OAuth"), "{}", stderr(&o));
    // Secrets never come from argv.
    let o = s.cli(&["add", "openai", "sk-on-argv"], None);
    assert!(!o.status.success());

    let o = s.cli(&["status", "--json"], None);
    assert!(o.status.success());
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|c| c["id"].is_string()));
    assert!(!stdout(&o).contains("sk-cli-1234") && !stdout(&o).contains("tw-cli-secret"));
    let o = s.cli(&["status"], None);
    assert!(stdout(&o).contains("openai") && stdout(&o).contains("prod"));

    let o = s.cli(&["disconnect", "openai"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.cli(&["token", "openai"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("INTEGRATION_NOT_FOUND"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn policy_set_changes_what_an_agent_may_fetch() {
    let d = Dirs::new();
    let s = Server::start_with(&d, Opts::default().arg("--approval-timeout").arg("1")).unwrap();
    let key = s.create_key("bot", &[]);
    s.cli(&["add", "openai"], Some("sk-pol"));
    let body = serde_json::json!({"provider": "openai"});
    assert_eq!(
        s.post("/tokens/fetch", Some(&key), &body).0,
        408,
        "asked, unanswered"
    );
    let o = policy_set(&s, "bot", &["allow", "--for", "1h"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.post("/tokens/fetch", Some(&key), &body).0, 200);
    let o = policy_set(&s, "bot", &["deny"]);
    assert!(o.status.success());
    assert_eq!(s.post("/tokens/fetch", Some(&key), &body).0, 403);
    let o = policy_set(&s, "nobody", &["allow"]);
    assert!(!o.status.success());
}

#[test]
fn commands_say_when_no_owner_runs() {
    let d = Dirs::new();
    for args in [
        vec!["status"],
        vec!["keys", "list"],
        vec!["token", "openai"],
    ] {
        let o = cli_in(&d.data(), &d.config(), &args, None);
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("no Akhrot owner is running") && err.contains("akhrot serve"),
            "{err}"
        );
    }
}

#[test]
fn help_and_completions() {
    let d = Dirs::new();
    let o = cli_in(&d.data(), &d.config(), &["--help"], None);
    assert!(o.status.success());
    for word in [
        "serve",
        "keys",
        "add",
        "token",
        "disconnect",
        "status",
        "policy",
    ] {
        assert!(stdout(&o).contains(word), "{word}");
    }
    let o = cli_in(&d.data(), &d.config(), &["completions", "bash"], None);
    assert!(o.status.success());
    assert!(stdout(&o).contains("_akhrot"));
}

#[test]
fn config_file_sets_serve_options_and_flags_override_it() {
    let d = Dirs::new();
    std::fs::create_dir_all(d.config()).unwrap();
    // `port = 1` would fail to bind; the harness's `--port 0` flag must win over it.
    std::fs::write(d.config().join("config.toml"), "port = 1\nrate_limit = 2\n").unwrap();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    assert_eq!(s.get("/ai/context/summary", Some(&key)).0, 200);
    assert_eq!(s.get("/ai/context/summary", Some(&key)).0, 200);
    let (status, v) = s.get("/ai/context/summary", Some(&key));
    assert_eq!(
        (status, code(&v)),
        (429, "RATE_LIMITED"),
        "rate_limit came from config.toml"
    );
    drop(s);
    std::fs::write(d.config().join("config.toml"), "rate_limit = \"lots\"\n").unwrap();
    let err = Server::start_with(&d, Opts::default())
        .err()
        .expect("a malformed config is refused");
    assert!(err.contains("config.toml:1"), "{err}");
}

/// Issue 15, item 7: `akhrot ui` run with `AKHROT_PASSPHRASE` and an agent key in its
/// environment opens the browser without either (`akhrot connect` opens it the same way).
#[test]
fn the_browser_akhrot_ui_opens_gets_no_akhrot_secret() {
    const PASS: &str = "cli-e2e passphrase that must not leak";
    const AGENT_KEY: &str = "akhrot_e2eleak_cli-agent-key-that-must-not-leak";
    let d = Dirs::new();
    let s = Server::start(&d);
    let browser = FakeBrowser::new();
    let mut cmd = akhrot_cmd(&d.data(), &d.config(), &["ui"], false);
    cmd.env_remove("AKHROT_NO_BROWSER")
        .env("PATH", browser.path())
        .env("AKHROT_PASSPHRASE", PASS)
        .env("AKHROT_API_KEY", AGENT_KEY)
        .env("AKHROT_DATA_DIR", d.data());
    let o = run_fed(cmd, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Opened"), "{}", stderr(&o));
    let url = stdout(&o).trim().to_owned();
    let seen = browser.seen(30).expect("the browser never started");
    assert!(seen.contains(&format!("URL={url}")), "{seen}");
    for leak in [PASS, AGENT_KEY, "AKHROT_PASSPHRASE", "AKHROT_API_KEY"] {
        assert!(!seen.contains(leak), "the browser got {leak}: {seen}");
    }
    assert!(seen.contains("AKHROT_DATA_DIR="), "{seen}");
    assert!(s.stop().success());
}
