//! `akhrot exec`: tokens reach the command's environment, its stdin, stdout and exit code pass
//! through, the agent key does not, and no token is ever printed by akhrot itself.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

use akhrot_e2e::{Dirs, Server, akhrot_cmd, bin, contains, run_fed, stderr, stdout};
use serde_json::json;

const OPENAI: &str = "sk-exec-test-0123456789abcdef";
const STRIPE: &str = "sk_test_exec_fedcba9876543210";

/// `akhrot exec <args>` as an agent with `key` (or none), feeding `stdin`.
fn exec(s: &Server, key: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let all: Vec<&str> = std::iter::once("exec")
        .chain(args.iter().copied())
        .collect();
    let mut cmd = akhrot_cmd(&s.data, &s.config, &all, stdin.is_some());
    cmd.env_remove("AKHROT_API_KEY");
    if let Some(k) = key {
        cmd.env("AKHROT_API_KEY", k);
    }
    run_fed(cmd, stdin)
}

fn no_token_in(o: &Output) {
    for t in [OPENAI, STRIPE] {
        assert!(
            !contains(&o.stdout, t.as_bytes()) && !contains(&o.stderr, t.as_bytes()),
            "a token was printed: stdout {:?} stderr {:?}",
            stdout(o),
            stderr(o)
        );
    }
}

fn setup() -> (Dirs, Server, String) {
    let dirs = Dirs::new();
    let s = Server::start(&dirs);
    s.add("openai", None, json!({ "apiKey": OPENAI }));
    s.add("stripe", None, json!({ "secretKey": STRIPE }));
    let key = s.create_key("exec-agent", &["openai", "stripe"]);
    (dirs, s, key)
}

#[test]
fn tokens_reach_the_command_and_nothing_else_leaks() {
    let (dirs, s, key) = setup();
    let out = dirs.root.path().join("env.txt");
    let script = format!(
        "printf '%s\\n%s\\n%s\\n' \"$OPENAI_API_KEY\" \"$MY_STRIPE\" \"${{AKHROT_API_KEY-absent}}\" > '{}'",
        out.display()
    );
    let o = exec(
        &s,
        Some(&key),
        &[
            "-p",
            "openai",
            "-p",
            "stripe:MY_STRIPE",
            "--",
            "sh",
            "-c",
            &script,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, format!("{OPENAI}\n{STRIPE}\nabsent\n"));
    no_token_in(&o);
    assert!(o.stdout.is_empty(), "akhrot printed: {}", stdout(&o));

    // The hand-outs are audited like any other, under the agent's name.
    let log = s.admin_get("/admin/audit?agent=exec-agent&action=token");
    let outcomes: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["agent"] == "exec-agent")
        .map(|e| e["provider"].as_str().unwrap().to_owned())
        .collect();
    assert!(outcomes.contains(&"openai".to_owned()), "{log}");
    assert!(outcomes.contains(&"stripe".to_owned()), "{log}");
}

#[test]
fn exit_code_stdin_and_stdout_pass_through() {
    let (_dirs, s, key) = setup();
    let o = exec(
        &s,
        Some(&key),
        &["-p", "openai", "--", "sh", "-c", "exit 7"],
        None,
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    no_token_in(&o);

    let o = exec(
        &s,
        Some(&key),
        &["-p", "openai", "--", "tr", "a-z", "A-Z"],
        Some("hello through exec\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "HELLO THROUGH EXEC\n");
    assert!(o.stderr.is_empty(), "{}", stderr(&o));

    // A command that prints its arguments: an argument starting with `-` stays the command's.
    let o = exec(
        &s,
        Some(&key),
        &["-p", "openai", "--", "printf", "%s|", "-p", "x y"],
        None,
    );
    assert_eq!(stdout(&o), "-p|x y|");
}

#[test]
fn refusals_and_usage_errors_have_their_exit_codes() {
    let (dirs, s, key) = setup();
    // Denied by policy: 4, with the API's code on stderr, the command never runs.
    let denied = s.create_key("denied-agent", &[]);
    s.admin_post(
        "/admin/policies",
        &json!({ "agent": "denied-agent", "provider": "openai", "mode": "deny" }),
    );
    let marker = dirs.root.path().join("ran");
    let touch = format!("touch '{}'", marker.display());
    let o = exec(
        &s,
        Some(&denied),
        &["-p", "openai", "--", "sh", "-c", &touch],
        None,
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("APPROVAL_DENIED"), "{}", stderr(&o));
    assert!(
        !marker.exists(),
        "the command ran although the token was refused"
    );
    no_token_in(&o);

    // Not connected: 4.
    let o = exec(&s, Some(&key), &["-p", "github", "--", "true"], None);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("INTEGRATION_NOT_FOUND"),
        "{}",
        stderr(&o)
    );

    // An unknown or revoked key is refused by the owner too.
    let o = exec(
        &s,
        Some("akhrot_nope_00"),
        &["-p", "openai", "--", "true"],
        None,
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("UNAUTHORIZED"), "{}", stderr(&o));

    // No key, no command, a bad variable name: usage errors (2).
    let o = exec(&s, None, &["-p", "openai", "--", "true"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("AKHROT_API_KEY"), "{}", stderr(&o));
    let o = exec(&s, Some(&key), &["-p", "openai"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = exec(&s, Some(&key), &["-p", "openai:1BAD", "--", "true"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Like a shell: 127 for a command that does not exist, 126 for one that cannot run.
    let o = exec(
        &s,
        Some(&key),
        &["-p", "openai", "--", "no-such-command-akhrot"],
        None,
    );
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    no_token_in(&o);
    let not_exec = dirs.root.path().join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let o = exec(
        &s,
        Some(&key),
        &["-p", "openai", "--", not_exec.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));

    // No owner running: 3.
    s.stop();
    let s2_data = dirs.data();
    let o = Command::new(bin())
        .arg("--data-dir")
        .arg(&s2_data)
        .arg("--config-dir")
        .arg(dirs.config())
        .args(["exec", "-p", "openai", "--", "true"])
        .env("AKHROT_API_KEY", &key)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn a_prompt_waits_for_the_user_and_names_only_the_program() {
    let (_dirs, s, _) = setup();
    let asking = s.create_key("asking-agent", &[]);
    let data = s.data.clone();
    let config = s.config.clone();
    let waiting = std::thread::spawn(move || {
        Command::new(bin())
            .arg("--data-dir")
            .arg(&data)
            .arg("--config-dir")
            .arg(&config)
            .args([
                "exec",
                "-p",
                "openai",
                "--",
                "sh",
                "-c",
                "printf %s \"$OPENAI_API_KEY\" | wc -c",
                "--password=hunter2",
            ])
            .env("AKHROT_API_KEY", &asking)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let prompt = loop {
        let list = s.admin_get("/admin/approvals");
        if let Some(p) = list.as_array().unwrap().first() {
            break p.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no prompt appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(prompt["reason"], "akhrot exec: run `sh`", "{prompt}");
    assert!(!prompt.to_string().contains("hunter2"), "{prompt}");
    s.admin_post(
        &format!("/admin/approvals/{}", prompt["id"].as_str().unwrap()),
        &json!({ "answer": "once" }),
    );
    let o = waiting.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), OPENAI.len().to_string());
    no_token_in(&o);
}

/// Issue 15, item 7: no `AKHROT_*` secret of the caller reaches the command (the vault
/// passphrase a shell may hold, a made-up future one), while settings such as
/// `AKHROT_DATA_DIR` still do.
#[test]
fn no_akhrot_secret_reaches_the_command() {
    let (dirs, s, key) = setup();
    let out = dirs.root.path().join("env.txt");
    let script = format!(
        "printf '%s\\n%s\\n%s\\n%s\\n' \"${{AKHROT_API_KEY-absent}}\" \"${{AKHROT_PASSPHRASE-absent}}\" \
         \"${{AKHROT_SOME_SECRET-absent}}\" \"${{AKHROT_DATA_DIR-absent}}\" > '{}'",
        out.display()
    );
    let mut cmd = akhrot_cmd(
        &s.data,
        &s.config,
        &["exec", "-p", "openai", "--", "sh", "-c", &script],
        false,
    );
    cmd.env("AKHROT_API_KEY", &key)
        .env("AKHROT_PASSPHRASE", "exec-passphrase-must-not-leak")
        .env("AKHROT_SOME_SECRET", "some-secret-must-not-leak")
        .env("AKHROT_DATA_DIR", &s.data);
    let o = run_fed(cmd, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        got,
        format!("absent\nabsent\nabsent\n{}\n", s.data.display())
    );
}
