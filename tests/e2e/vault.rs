//! The vault at rest and across restarts: no plaintext on disk, tamper detection, the
//! keyring (wrong, missing, unavailable), passphrase mode, one owner per data dir, file
//! modes, clean shutdown and revocation — against the real `akhrot serve`.
#![allow(clippy::unwrap_used)]

use std::hash::BuildHasher;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

/// `n` random hex digits (from the std's randomly keyed hasher: no extra dependency).
fn random_hex(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < n {
        let h = std::collections::hash_map::RandomState::new().hash_one(i);
        s.push_str(&format!("{h:016x}"));
        i += 1;
    }
    s.truncate(n);
    s
}

fn fetch(s: &Server, key: &str, provider: &str, account: Option<&str>) -> (u16, Value) {
    let mut body = json!({ "provider": provider });
    if let Some(a) = account {
        body["account"] = json!(a);
    }
    s.post("/tokens/fetch", Some(key), &body)
}

/// Fetches and returns the access token, asserting success.
fn token(s: &Server, key: &str, provider: &str, account: Option<&str>) -> String {
    let (status, v) = fetch(s, key, provider, account);
    assert_eq!(status, 200, "{provider}/{account:?}: {v}");
    v["data"]["accessToken"].as_str().unwrap().to_owned()
}

/// The main database file, byte for byte (compared exactly, so no hash is needed).
fn db_bytes(d: &Dirs) -> Vec<u8> {
    std::fs::read(d.vault()).unwrap()
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn with_suffix(p: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn assert_no_secret(bytes: &[u8], secrets: &[&str], when: &str) {
    assert!(!bytes.is_empty(), "{when}: the vault files are empty");
    for secret in secrets {
        assert!(
            !contains(bytes, secret.as_bytes()),
            "{when}: `{secret}` appears in plaintext in the vault files"
        );
    }
}

fn openai_key() -> String {
    format!("sk-proj-{}", random_hex(48))
}

#[test]
fn no_plaintext_secret_at_rest_while_running_and_after_stop() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let key_secret = key.rsplit_once('_').unwrap().1.to_owned();
    assert_eq!(key_secret.len(), 64, "{key}");
    let admin = s.admin_token();

    let openai = openai_key();
    let twilio_token = random_hex(32);
    let tg_hash = random_hex(32);
    let tg_session = telethon_session();
    s.add("openai", None, json!({ "apiKey": openai }));
    s.add(
        "twilio",
        None,
        json!({ "accountSid": format!("AC{}", random_hex(32)), "authToken": twilio_token }),
    );
    s.add(
        "telegram",
        None,
        json!({ "apiId": "1234567", "apiHash": tg_hash, "session": tg_session }),
    );
    assert_eq!(token(&s, &key, "openai", None), openai);
    assert_eq!(token(&s, &key, "twilio", None), twilio_token);
    let (status, v) = fetch(&s, &key, "telegram", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accessToken"], json!(tg_session));
    assert_eq!(v["data"]["apiHash"], json!(tg_hash));
    assert_eq!(v["data"]["apiId"], json!(1_234_567));

    let secrets = [
        openai.as_str(),
        twilio_token.as_str(),
        tg_hash.as_str(),
        tg_session.as_str(),
        key.as_str(),
        key_secret.as_str(),
        admin.as_str(),
    ];
    assert_no_secret(&vault_bytes(&d.vault()), &secrets, "while running");
    assert!(s.stop().success());
    assert_no_secret(&vault_bytes(&d.vault()), &secrets, "after stop");

    let s = Server::start(&d);
    assert_eq!(token(&s, &key, "openai", None), openai);
    assert_eq!(token(&s, &key, "twilio", None), twilio_token);
    assert_eq!(token(&s, &key, "telegram", None), tg_session);
    assert_no_secret(&vault_bytes(&d.vault()), &secrets, "after restart");
}

/// Opens the stopped server's vault for writing (as an attacker with file access would).
fn open_rw(d: &Dirs) -> rusqlite::Connection {
    rusqlite::Connection::open(d.vault()).unwrap()
}

fn secret_of(c: &rusqlite::Connection, provider: &str) -> Vec<u8> {
    c.query_row(
        "SELECT secret FROM connections WHERE provider = ?1",
        [provider],
        |r| r.get(0),
    )
    .unwrap()
}

fn set_secret_of(c: &rusqlite::Connection, provider: &str, blob: &[u8]) {
    let n = c
        .execute(
            "UPDATE connections SET secret = ?1 WHERE provider = ?2",
            rusqlite::params![blob, provider],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn assert_integrity_error(s: &Server, key: &str, provider: &str, secret: &str) {
    let (status, v) = fetch(s, key, provider, None);
    assert_eq!(status, 409, "{provider}: {v}");
    assert_eq!(code(&v), "VAULT_INTEGRITY", "{v}");
    let text = v.to_string();
    assert!(!text.contains(secret), "the error leaks the secret: {text}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(provider),
        "the message names the connection: {v}"
    );
    // The owner's own path reports it the same way.
    let (status, v) = s.post(
        "/admin/token",
        Some(&s.admin_token()),
        &json!({ "provider": provider }),
    );
    assert_eq!((status, code(&v)), (409, "VAULT_INTEGRITY"), "{v}");
    assert!(!v.to_string().contains(secret));
}

/// Starts, adds an OpenAI and an Anthropic connection, stops; returns (agent key, the OpenAI
/// key, the Anthropic key).
fn vault_with_two_connections(d: &Dirs) -> (String, String, String) {
    let s = Server::start(d);
    let key = s.create_key("bot", &["*"]);
    let openai = openai_key();
    let anthropic = format!("sk-ant-{}", random_hex(40));
    s.add("openai", None, json!({ "apiKey": openai }));
    s.add("anthropic", None, json!({ "apiKey": anthropic }));
    assert!(s.stop().success());
    (key, openai, anthropic)
}

#[test]
fn tampered_ciphertext_is_detected_and_other_connections_still_work() {
    let d = Dirs::new();
    let (key, openai, anthropic) = vault_with_two_connections(&d);

    {
        let c = open_rw(&d);
        let mut blob = secret_of(&c, "openai");
        let i = blob.len() / 2;
        blob[i] ^= 0x01;
        set_secret_of(&c, "openai", &blob);
    }

    let s = Server::start(&d);
    assert_integrity_error(&s, &key, "openai", &openai);
    assert_eq!(token(&s, &key, "anthropic", None), anthropic);
    // Nothing else breaks, and nothing answers 5xx.
    for path in [
        "/ai/context/summary",
        "/ai/context/openai",
        "/ai/context/openai/chat",
    ] {
        let (status, v) = s.get(path, Some(&key));
        assert!(status < 500, "{path}: {status} {v}");
    }
    let (status, v) = s.get("/admin/status", Some(&s.admin_token()));
    assert_eq!(status, 200, "{v}");
    assert!(!v.to_string().contains(&openai));
}

#[test]
fn row_swapped_ciphertexts_are_detected() {
    let d = Dirs::new();
    let (key, openai, anthropic) = vault_with_two_connections(&d);

    {
        let c = open_rw(&d);
        let a = secret_of(&c, "openai");
        let b = secret_of(&c, "anthropic");
        assert_ne!(a, b);
        set_secret_of(&c, "openai", &b);
        set_secret_of(&c, "anthropic", &a);
    }

    let s = Server::start(&d);
    assert_integrity_error(&s, &key, "openai", &anthropic);
    assert_integrity_error(&s, &key, "anthropic", &openai);
    let (status, v) = fetch(&s, &key, "openai", None);
    assert!(!v.to_string().contains(&openai) && status == 409);
}

/// Starts, adds an OpenAI connection, stops; returns (vault id, agent key, the OpenAI key).
fn vault_with_connection(d: &Dirs) -> (String, String, String) {
    let s = Server::start(d);
    let key = s.create_key("bot", &["*"]);
    let openai = openai_key();
    s.add("openai", None, json!({ "apiKey": openai }));
    assert!(s.stop().success());
    (vault_id(&d.vault()), key, openai)
}

#[test]
fn a_different_keyring_key_refuses_to_start_and_changes_nothing() {
    let d = Dirs::new();
    let (id, key, openai) = vault_with_connection(&d);
    let entry = keyring_entry(&id);
    let original = entry.get_secret().unwrap();
    assert_eq!(original.len(), 32);
    entry.set_secret(&[7u8; 32]).unwrap();
    let before = db_bytes(&d);

    let err = Server::start_with(&d, Opts::default())
        .err()
        .expect("the server must not start with a different key");
    assert!(err.contains("different key"), "{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
    assert!(err.contains(&format!("vault-{id}")), "{err}");
    assert!(db_bytes(&d) == before, "vault.db changed");
    assert_eq!(vault_id(&d.vault()), id);
    // The keyring entry was not "repaired" either.
    assert_eq!(entry.get_secret().unwrap(), vec![7u8; 32]);

    entry.set_secret(&original).unwrap();
    let s = Server::start(&d);
    assert_eq!(token(&s, &key, "openai", None), openai);
    assert!(s.stop().success());
    let _ = entry.delete_credential();
}

#[test]
fn a_missing_keyring_entry_is_an_error_not_a_first_run() {
    let d = Dirs::new();
    let (id, key, openai) = vault_with_connection(&d);
    let entry = keyring_entry(&id);
    let original = entry.get_secret().unwrap();
    entry.delete_credential().unwrap();
    let before = db_bytes(&d);

    let err = Server::start_with(&d, Opts::default())
        .err()
        .expect("the server must not start without its key");
    assert!(err.contains("has no entry"), "{err}");
    assert!(err.contains("unlock"), "{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
    assert!(db_bytes(&d) == before, "vault.db changed");
    assert_eq!(vault_id(&d.vault()), id, "the vault was re-created");
    assert!(
        matches!(entry.get_secret(), Err(keyring::Error::NoEntry)),
        "a keyring entry was created for the existing vault"
    );
    assert!(!d.data().join("admin.token").exists());
    assert!(!d.data().join("server.json").exists());

    entry.set_secret(&original).unwrap();
    let s = Server::start(&d);
    assert_eq!(token(&s, &key, "openai", None), openai);
    assert!(s.stop().success());
    let _ = entry.delete_credential();
}

fn no_secret_service() -> Opts {
    Opts::default().env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
}

#[test]
fn no_secret_service_fails_clearly_on_a_fresh_dir_and_on_an_existing_vault() {
    // (a) a fresh data dir: nothing is left behind.
    let d = Dirs::new();
    let err = Server::start_with(&d, no_secret_service())
        .err()
        .expect("no keyring: must not start");
    assert!(err.contains("keyring could not be used"), "{err}");
    assert!(err.contains("AKHROT_PASSPHRASE"), "{err}");
    let left = std::fs::metadata(d.vault()).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "a vault.db was left behind");
    for f in ["-wal", "-shm"] {
        assert!(!with_suffix(&d.vault(), f).exists(), "{f} left behind");
    }
    assert!(!d.data().join("admin.token").exists());
    // Afterwards, with a keyring, it is an ordinary first run.
    let s = Server::start(&d);
    assert_eq!(
        s.admin_get("/admin/status")["vault"]["keySource"],
        "keyring"
    );
    let id = vault_id(&d.vault());
    assert!(s.stop().success());
    let _ = keyring_entry(&id).delete_credential();

    // (b) an existing vault: refused, unchanged.
    let d = Dirs::new();
    let (id, key, openai) = vault_with_connection(&d);
    let before = db_bytes(&d);
    let err = Server::start_with(&d, no_secret_service())
        .err()
        .expect("no keyring: must not start");
    assert!(err.contains("keyring could not be used"), "{err}");
    assert!(err.contains("AKHROT_PASSPHRASE"), "{err}");
    assert!(db_bytes(&d) == before, "vault.db changed");
    assert_eq!(vault_id(&d.vault()), id);
    let s = Server::start(&d);
    assert_eq!(token(&s, &key, "openai", None), openai);
    assert!(s.stop().success());
    let _ = keyring_entry(&id).delete_credential();
}

#[test]
fn passphrase_mode_round_trip_wrong_and_missing_passphrase() {
    const PASS: &str = "correct horse battery staple, but longer";
    let d = Dirs::new();
    let with_pass = |p: &str| Opts::default().env("AKHROT_PASSPHRASE", p);

    let s = Server::start_with(&d, with_pass(PASS)).unwrap();
    let status = s.admin_get("/admin/status");
    assert_eq!(status["vault"]["keySource"], "passphrase", "{status}");
    let key = s.create_key("bot", &["*"]);
    let openai = openai_key();
    s.add("openai", None, json!({ "apiKey": openai }));
    assert!(s.stop().success());
    let id = vault_id(&d.vault());
    assert!(
        matches!(
            keyring_entry(&id).get_secret(),
            Err(keyring::Error::NoEntry)
        ),
        "passphrase mode must not use the keyring"
    );
    assert!(!contains(&vault_bytes(&d.vault()), PASS.as_bytes()));
    assert!(!contains(&vault_bytes(&d.vault()), openai.as_bytes()));

    let s = Server::start_with(&d, with_pass(PASS)).unwrap();
    assert_eq!(token(&s, &key, "openai", None), openai);
    assert!(s.stop().success());

    let before = db_bytes(&d);
    let err = Server::start_with(&d, with_pass("not the right passphrase"))
        .err()
        .expect("a wrong passphrase must not open the vault");
    assert!(err.contains("does not open"), "{err}");
    assert!(db_bytes(&d) == before, "vault.db changed");

    let err = Server::start_with(&d, Opts::default())
        .err()
        .expect("no passphrase: must not start");
    assert!(err.contains("AKHROT_PASSPHRASE"), "{err}");
    assert!(err.contains("passphrase"), "{err}");
    assert!(db_bytes(&d) == before, "vault.db changed");
    assert!(matches!(
        keyring_entry(&id).get_secret(),
        Err(keyring::Error::NoEntry)
    ));
    assert_eq!(vault_id(&d.vault()), id);

    let s = Server::start_with(&d, with_pass(PASS)).unwrap();
    assert_eq!(token(&s, &key, "openai", None), openai);
}

#[test]
fn restart_keeps_keys_policies_connections_accounts_and_last_used() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let used = s.create_key("used", &["openai", "twilio"]);
    let idle = s.create_key("idle", &["*"]);
    s.admin_post(
        "/admin/policies",
        &json!({ "agent": "idle", "provider": "anthropic", "mode": "deny" }),
    );
    let work = openai_key();
    let personal = openai_key();
    let anthropic = format!("sk-ant-{}", random_hex(40));
    let sid = format!("AC{}", random_hex(32));
    let twilio = random_hex(32);
    s.add("openai", Some("work"), json!({ "apiKey": work }));
    s.add("openai", Some("personal"), json!({ "apiKey": personal }));
    s.add("anthropic", None, json!({ "apiKey": anthropic }));
    s.add(
        "twilio",
        None,
        json!({ "accountSid": sid, "authToken": twilio }),
    );
    assert_eq!(token(&s, &used, "openai", Some("personal")), personal);
    let keys = s.admin_get("/admin/keys");
    assert!(key_record(&keys, "idle")["lastUsedAt"].is_null(), "{keys}");
    assert!(s.stop().success());

    // The last use was written at shutdown.
    {
        let c = rusqlite::Connection::open_with_flags(
            d.vault(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let t: Option<i64> = c
            .query_row(
                "SELECT last_used_at FROM agents WHERE name = 'used'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(t.is_some_and(|t| t > 1_600_000_000), "{t:?}");
    }

    let s = Server::start_with(&d, Opts::default().arg("--approval-timeout").arg("1")).unwrap();
    let keys = s.admin_get("/admin/keys");
    let u = key_record(&keys, "used");
    assert!(u["lastUsedAt"].as_i64().is_some_and(|t| t > 0), "{keys}");
    assert!(key_record(&keys, "idle")["lastUsedAt"].is_null(), "{keys}");
    assert_eq!(u["policies"]["openai"]["mode"], "allow", "{keys}");
    assert_eq!(u["policies"]["twilio"]["mode"], "allow", "{keys}");
    let i = key_record(&keys, "idle");
    assert_eq!(i["policies"]["*"]["mode"], "allow", "{keys}");
    assert_eq!(i["policies"]["anthropic"]["mode"], "deny", "{keys}");

    // Connections and accounts.
    assert_eq!(token(&s, &used, "openai", Some("work")), work);
    assert_eq!(token(&s, &used, "openai", Some("personal")), personal);
    let (status, v) = fetch(&s, &used, "twilio", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accessToken"], json!(twilio));
    assert_eq!(v["data"]["accountSid"], json!(sid));
    // Policies still apply: `used` is asked about anthropic (nobody answers), `idle` is denied.
    let (status, v) = fetch(&s, &used, "anthropic", None);
    assert_eq!((status, code(&v)), (408, "APPROVAL_TIMEOUT"), "{v}");
    let (status, v) = fetch(&s, &idle, "anthropic", None);
    assert_eq!((status, code(&v)), (403, "APPROVAL_DENIED"), "{v}");
    assert_eq!(token(&s, &idle, "openai", Some("work")), work);

    let (status, v) = s.get("/ai/context/summary", Some(&used));
    assert_eq!(status, 200);
    let connected = v["data"]["connected"].as_array().unwrap();
    let openai = connected
        .iter()
        .find(|c| c["provider"] == "openai")
        .unwrap_or_else(|| panic!("{v}"));
    let mut accounts: Vec<&str> = openai["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    accounts.sort_unstable();
    assert_eq!(accounts, ["personal", "work"]);
    assert!(connected.iter().any(|c| c["provider"] == "anthropic"));
    assert!(connected.iter().any(|c| c["provider"] == "twilio"));
    let status = s.admin_get("/admin/status");
    assert_eq!(status["connections"].as_array().unwrap().len(), 4);
    assert_eq!(status["agents"]["active"], 2);
}

#[test]
fn two_instances_with_different_data_dirs_do_not_interfere() {
    let da = Dirs::new();
    let db = Dirs::new();
    let a = Server::start(&da);
    let b = Server::start(&db);
    assert_ne!(a.port, b.port);
    assert_ne!(vault_id(&da.vault()), vault_id(&db.vault()));
    let ka = a.create_key("bot", &["*"]);
    let kb = b.create_key("bot", &["*"]);
    let openai_a = openai_key();
    let anthropic_b = format!("sk-ant-{}", random_hex(40));
    a.add("openai", None, json!({ "apiKey": openai_a }));
    b.add("anthropic", None, json!({ "apiKey": anthropic_b }));

    let (status, v) = b.get("/ai/context/summary", Some(&ka));
    assert_eq!((status, code(&v)), (401, "UNAUTHORIZED"));
    let (status, v) = fetch(&b, &ka, "anthropic", None);
    assert_eq!((status, code(&v)), (401, "UNAUTHORIZED"));
    let (status, v) = a.get("/ai/context/summary", Some(&kb));
    assert_eq!((status, code(&v)), (401, "UNAUTHORIZED"));
    // Each admin credential works only on its own instance.
    let (status, _) = b.get("/admin/status", Some(&a.admin_token()));
    assert_eq!(status, 401);

    // Each agent sees only its own instance's connections.
    for (s, key, want) in [(&b, &kb, "anthropic"), (&a, &ka, "openai")] {
        let (_, v) = s.get("/ai/context/summary", Some(key));
        let connected: Vec<&str> = v["data"]["connected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["provider"].as_str().unwrap())
            .collect();
        assert_eq!(connected, [want], "{v}");
    }
    let (status, v) = fetch(&b, &kb, "openai", None);
    assert_eq!((status, code(&v)), (404, "INTEGRATION_NOT_FOUND"));

    assert!(a.stop().success());
    assert_eq!(token(&b, &kb, "anthropic", None), anthropic_b);
    assert!(b.admin_get("/admin/status")["connections"].is_array());
    let ida = vault_id(&da.vault());
    let idb = vault_id(&db.vault());
    assert!(b.stop().success());
    for id in [ida, idb] {
        let _ = keyring_entry(&id).delete_credential();
    }
}

#[test]
fn a_second_owner_on_the_same_data_dir_fails_fast_and_the_first_keeps_working() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    let openai = openai_key();
    s.add("openai", None, json!({ "apiKey": openai }));
    let admin = s.admin_token();
    let server_json = std::fs::read(d.data().join("server.json")).unwrap();

    let t = Instant::now();
    let err = Server::start_with(&d, Opts::default())
        .err()
        .expect("a second owner must not start");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&format!("port {}", s.port)), "{err}");
    assert!(err.contains(&format!("pid {}", s.pid())), "{err}");

    // The first owner's files and service are untouched.
    assert_eq!(s.admin_token(), admin);
    assert_eq!(
        std::fs::read(d.data().join("server.json")).unwrap(),
        server_json
    );
    assert_eq!(token(&s, &key, "openai", None), openai);
    assert!(s.admin_get("/admin/status")["vault"]["vaultId"].is_string());
    assert!(s.stop().success());
}

#[test]
fn data_dir_and_files_are_private() {
    let d = Dirs::new();
    let s = Server::start(&d);
    s.create_key("bot", &["*"]);
    s.add("openai", None, json!({ "apiKey": openai_key() }));
    let data = d.data();
    assert_eq!(mode_of(&data), 0o700, "data dir");
    for f in ["vault.db", "admin.token", "server.json", "owner.lock"] {
        assert_eq!(mode_of(&data.join(f)), 0o600, "{f}");
    }
    for f in ["-wal", "-shm"] {
        let p = with_suffix(&d.vault(), f);
        if p.exists() {
            assert_eq!(mode_of(&p), 0o600, "vault.db{f}");
        }
    }
    // Nothing else in the data dir is readable by others.
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode_of(&p) & 0o077, 0, "{}", p.display());
    }
    assert!(s.stop().success());
    assert_eq!(mode_of(&data.join("vault.db")), 0o600);
}

#[test]
fn sigterm_shuts_down_cleanly_and_the_cli_says_no_owner_is_running() {
    let d = Dirs::new();
    let s = Server::start(&d);
    assert!(d.data().join("server.json").exists());
    assert!(d.data().join("admin.token").exists());
    assert!(s.admin_get("/admin/status")["server"]["pid"].is_u64());
    let status = s.stop();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!d.data().join("server.json").exists());
    assert!(!d.data().join("admin.token").exists());

    let out = cli_in(&d.data(), &d.config(), &["status"], None);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("no Akhrot owner is running"), "{err}");
    assert!(err.contains("akhrot serve"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

/// The ready line means "serving": a SIGTERM sent as soon as it is printed must already be a
/// clean shutdown (exit 0, owner files removed), not the default signal action. (The harness's
/// `stop` spawns `kill`, which is usually slow enough to hide a race; bash signals at once.)
#[test]
fn sigterm_right_after_the_ready_line_is_a_clean_shutdown() {
    const SCRIPT: &str = r#"
bin=$1; data=$2; config=$3
coproc S { exec "$bin" --data-dir "$data" --config-dir "$config" serve --port 0 2>"$data.stderr"; }
pid=$S_PID
IFS= read -r line <&"${S[0]}"
kill -TERM "$pid"
wait "$pid"
echo "$?"
"#;
    let d = Dirs::new();
    Server::start(&d).stop(); // the first run, out of the way
    for i in 0..3 {
        let out = std::process::Command::new("bash")
            .args(["-c", SCRIPT, "race"])
            .arg(bin())
            .arg(d.data())
            .arg(d.config())
            .output()
            .unwrap();
        let rc = stdout(&out).trim().to_owned();
        let log =
            std::fs::read_to_string(format!("{}.stderr", d.data().display())).unwrap_or_default();
        assert_eq!(
            rc,
            "0",
            "run #{i}: SIGTERM right after the ready line ended the owner with shell status {rc} \
             (143 = killed by the signal's default action); stderr:\n{log}{}",
            stderr(&out)
        );
        assert!(!d.data().join("server.json").exists(), "run #{i}");
        assert!(!d.data().join("admin.token").exists(), "run #{i}");
    }
}

#[test]
fn a_revoked_key_is_refused_at_once_and_after_restart() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let gone = s.create_key("gone", &["*"]);
    let kept = s.create_key("kept", &["*"]);
    let openai = openai_key();
    s.add("openai", None, json!({ "apiKey": openai }));
    assert_eq!(token(&s, &gone, "openai", None), openai);

    let (status, v) = s.request("DELETE", "/admin/keys/gone", Some(&s.admin_token()), None);
    assert_eq!(status, 200, "{v}");
    assert!(v["data"]["revokedAt"].is_i64(), "{v}");
    let check = |s: &Server| {
        let (status, v) = fetch(s, &gone, "openai", None);
        assert_eq!((status, code(&v)), (401, "UNAUTHORIZED"), "{v}");
        assert!(!v.to_string().contains(&openai));
        let (status, v) = s.get("/ai/context/summary", Some(&gone));
        assert_eq!((status, code(&v)), (401, "UNAUTHORIZED"), "{v}");
        let (status, v) = s.get("/ai/context/openai", Some(&gone));
        assert_eq!((status, code(&v)), (401, "UNAUTHORIZED"), "{v}");
        assert_eq!(token(s, &kept, "openai", None), openai);
    };
    check(&s);
    assert!(s.stop().success());
    let s = Server::start(&d);
    check(&s);
    let keys = s.admin_get("/admin/keys");
    assert!(key_record(&keys, "gone")["revokedAt"].is_i64(), "{keys}");
    assert!(key_record(&keys, "kept")["revokedAt"].is_null(), "{keys}");
    assert_eq!(s.admin_get("/admin/status")["agents"]["active"], 1);
}
