//! Telegram StringSessions with the real libraries, offline: Telethon (PyPI, in target/pyenv from
//! tests/python/setup-venv) and GramJS (npm `telegram`, in tests/telegram/node_modules from
//! `npm ci --prefix tests/telegram`) each make a session, the user adds it with
//! `akhrot add telegram`, and each library loads the formats the token answer hands back. No
//! script creates a TelegramClient: nothing connects to Telegram.
//!
//! Missing libraries fail the tests (with the command that installs them), never skip them.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use akhrot_e2e::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use serde_json::{Value, json};

const API_HASH: &str = "344583e45741c457fe1862106095a5eb";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let py = repo().join("target/pyenv/bin/python");
    assert!(
        py.is_file(),
        "Telethon is missing: {} does not exist; run tests/python/setup-venv",
        py.display()
    );
    py
}

fn gramjs_installed() {
    let dir = repo().join("tests/telegram/node_modules/telegram");
    assert!(
        dir.is_dir(),
        "GramJS is missing: {} does not exist; run npm ci --prefix tests/telegram",
        dir.display()
    );
}

#[derive(Clone, Copy)]
enum Lib {
    Telethon,
    Gramjs,
}

/// Runs a library's check script; its stdout is one JSON value.
fn run(lib: Lib, args: &[&str], stdin: Option<&Value>) -> Value {
    let mut cmd = match lib {
        Lib::Telethon => {
            let mut c = Command::new(python());
            c.arg(repo().join("tests/telegram/check_telethon.py"));
            c
        }
        Lib::Gramjs => {
            gramjs_installed();
            let mut c = Command::new("node");
            c.arg(repo().join("tests/telegram/check_gramjs.mjs"));
            c
        }
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut pipe = child.stdin.take().unwrap();
        if let Some(v) = stdin {
            pipe.write_all(v.to_string().as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    eprintln!("{}", err.trim());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A session the library made: the string and what it holds.
struct Made {
    session: String,
    expect: Value,
}

fn make(lib: Lib, dc: u8, ip: &str, port: u16) -> Made {
    let v = run(lib, &["make", &dc.to_string(), ip, &port.to_string()], None);
    let session = v["session"].as_str().unwrap().to_owned();
    secrets::register(&session);
    secrets::register(v["authKey"].as_str().unwrap());
    Made { session, expect: v }
}

/// What a library loaded equals what was made (addresses compared as IP addresses).
fn assert_same(what: &str, got: &Value, want: &Value) {
    assert!(got.get("error").is_none(), "{what}: {}", got["error"]);
    assert_eq!(got["dcId"], want["dcId"], "{what}: dc id");
    assert_eq!(got["port"], want["port"], "{what}: port");
    assert_eq!(got["authKey"], want["authKey"], "{what}: auth key");
    let ip = |v: &Value| {
        v["serverAddress"]
            .as_str()
            .unwrap()
            .parse::<IpAddr>()
            .unwrap()
    };
    assert_eq!(ip(got), ip(want), "{what}: server address");
}

/// Adds the session with `akhrot add telegram` and fetches the token answer as an agent.
fn add_and_fetch(s: &Server, key: &str, account: &str, session: &str) -> Value {
    let o = s.cli(
        &["add", "telegram", "--account", account],
        Some(&format!(
            "apiId=1234567\napiHash={API_HASH}\nsession={session}\n"
        )),
    );
    assert!(o.status.success(), "akhrot add: {}", stderr(&o));
    let (status, v) = s.post(
        "/tokens/fetch",
        Some(key),
        &json!({"provider": "telegram", "account": account}),
    );
    assert_eq!(status, 200, "{v}");
    let t = v["data"].clone();
    assert_eq!(t["accessToken"], json!(session), "accessToken is as given");
    assert_eq!(t["type"], "mtproto");
    assert_eq!(t["apiId"], 1_234_567);
    assert_eq!(t["apiHash"], API_HASH);
    for f in ["sessionTelethon", "sessionGramjs"] {
        secrets::register(t[f].as_str().unwrap());
    }
    t
}

#[test]
fn sessions_each_library_makes_load_in_both_libraries_from_the_token_answer() {
    python();
    gramjs_installed();
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["telegram"]);
    let made = [
        ("telethon-v4", make(Lib::Telethon, 2, "149.154.167.51", 443)),
        (
            "telethon-v6",
            make(Lib::Telethon, 4, "2001:67c:4e8:f004::b", 443),
        ),
        ("gramjs-v4", make(Lib::Gramjs, 2, "149.154.167.51", 443)),
        (
            "gramjs-v6",
            make(Lib::Gramjs, 5, "2001:b28:f23f:f005::a", 443),
        ),
    ];
    for (name, m) in &made {
        let t = add_and_fetch(&s, &key, name, &m.session);
        let strings = json!({
            "accessToken": t["accessToken"],
            "sessionTelethon": t["sessionTelethon"],
            "sessionGramjs": t["sessionGramjs"],
        });
        let telethon = run(Lib::Telethon, &["load"], Some(&strings));
        let gramjs = run(Lib::Gramjs, &["load"], Some(&strings));
        // Each library loads the format named for it, whichever library made the session.
        assert_same(
            &format!("{name}: Telethon loads sessionTelethon"),
            &telethon["sessionTelethon"],
            &m.expect,
        );
        assert_same(
            &format!("{name}: GramJS loads sessionGramjs"),
            &gramjs["sessionGramjs"],
            &m.expect,
        );
        // And the string as given, in the library that made it.
        let own = if name.starts_with("telethon") {
            &telethon
        } else {
            &gramjs
        };
        assert_same(
            &format!("{name}: its own library loads accessToken"),
            &own["accessToken"],
            &m.expect,
        );
        if name.starts_with("telethon") {
            assert_eq!(
                t["sessionTelethon"], t["accessToken"],
                "{name}: same format"
            );
        }
        // GramJS reads Telethon's layout too (its loader has a Telethon branch) ...
        assert_same(
            &format!("{name}: GramJS loads sessionTelethon"),
            &gramjs["sessionTelethon"],
            &m.expect,
        );
        // ... but Telethon misreads GramJS's: why the answer carries both.
        let misread = &telethon["sessionGramjs"];
        assert!(
            misread.get("error").is_some()
                || misread["serverAddress"] != m.expect["serverAddress"]
                || misread["authKey"] != m.expect["authKey"],
            "{name}: Telethon was expected to misread GramJS's format: {misread}"
        );
    }
    // The token answer's fields are documented where agents look.
    let (_, v) = s.get("/ai/context/telegram", Some(&key));
    let session_field = v["data"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "session")
        .unwrap();
    assert_eq!(session_field["returnedAs"], "accessToken");
    assert_eq!(
        session_field["alsoReturnedAs"],
        json!(["sessionTelethon", "sessionGramjs"])
    );
}

#[test]
fn a_malformed_session_or_api_id_is_refused_and_nothing_is_stored() {
    python();
    let d = Dirs::new();
    let s = Server::start(&d);
    let good = make(Lib::Telethon, 2, "149.154.167.51", 443).session;
    // Telethon's layout with an all-zero auth key: a session that never logged in.
    let zero_key = {
        let mut b = vec![2u8, 149, 154, 167, 51, 1, 187];
        b.extend_from_slice(&[0; 256]);
        format!("1{}", URL_SAFE.encode(b))
    };
    let cases: Vec<(String, String, &str)> = vec![
        (
            "1234567".into(),
            format!("2{}", &good[1..]),
            "does not start with the version character `1`",
        ),
        (
            "1234567".into(),
            format!("{}!!", &good[..100]),
            "is not base64",
        ),
        (
            "1234567".into(),
            good[..201].to_owned(),
            "decodes to 150 bytes",
        ),
        ("1234567".into(), zero_key, "auth key is all zeros"),
        (
            "0".into(),
            good.clone(),
            "`apiId` must be the positive integer",
        ),
        (
            "12ab".into(),
            good.clone(),
            "`apiId` must be the positive integer",
        ),
    ];
    for (api_id, session, want) in &cases {
        secrets::register(session);
        let o = s.cli(
            &["add", "telegram"],
            Some(&format!(
                "apiId={api_id}\napiHash={API_HASH}\nsession={session}\n"
            )),
        );
        let err = stderr(&o);
        assert!(!o.status.success(), "{want}: accepted");
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            !err.contains(&session[1..40]),
            "the error echoes the session"
        );
        // The admin route the web UI's form posts to answers in the envelope.
        let (status, v) = s.post(
            "/admin/connections",
            Some(&s.admin_token()),
            &json!({"provider": "telegram", "fields": {
                "apiId": api_id, "apiHash": API_HASH, "session": session}}),
        );
        assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v}"
        );
        assert!(!v.to_string().contains(&session[1..40]));
    }
    let list = s.admin_get("/admin/connections");
    assert!(
        !list.to_string().contains("telegram"),
        "nothing stored: {list}"
    );
}
