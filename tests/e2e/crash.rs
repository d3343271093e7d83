//! Crash safety of refresh with rotating refresh tokens: SIGKILL the owner at random moments
//! while refreshes are in flight, restart it, and check the connection still refreshes.
//!
//! A lost connection is classified with the authorization server's own counters: if the server
//! had not completed a refresh during the kill window, losing the refresh token is our bug
//! (must never happen). If it had, and its answer died with the process, the loss is inherent
//! to rotation (the new refresh token existed only in that answer): counted and reported.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::json;

fn rounds() -> u64 {
    std::env::var("AKHROT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// xorshift, seeded from the clock (printed, so a failure can be replayed).
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn connect(s: &Server, key: &str, login: &str) {
    let (status, v) = s.post("/oauth/sessions", Some(key), &json!({"provider": "idp"}));
    assert_eq!(status, 200, "{v}");
    let url = v["data"]["url"].as_str().unwrap().to_owned();
    let cb = Browser::new().authorize(&url, login, false, &format!("{}/oauth/callback", s.base));
    let (status, _) = s.get(cb.strip_prefix(&s.base).unwrap(), None);
    assert_eq!(status, 200);
}

/// A fetch that tolerates the server dying under it.
fn fetch_tolerant(port: u16, key: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let _ = agent
        .post(format!("http://127.0.0.1:{port}/tokens/fetch"))
        .header("Authorization", format!("Bearer {key}"))
        .send_json(json!({"provider": "idp"}));
}

#[test]
fn sigkill_during_rotating_refreshes_never_loses_a_token_the_server_did_not_rotate() {
    let oidc = Oidc::start(&["--rotate", "--access-ttl", "2"]);
    let d = Dirs::new();
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", "client_secret_basic"));
    let s = Server::start(&d);
    let key = s.create_key("agent", &["*"]);
    s.admin_post(
        "/admin/clients",
        &json!({"provider": "idp", "clientId": "basic-client", "clientSecret": "basic-secret"}),
    );
    connect(&s, &key, "crash");
    let mut server = Some(s);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let (mut survived, mut inherent, mut ours) = (0u64, 0u64, Vec::new());
    let mut rotated_rounds = 0u64;
    for round in 0..rounds() {
        let s = server.take().unwrap();
        // Let the access token expire, so the next fetches refresh.
        std::thread::sleep(Duration::from_millis(2100));
        oidc.control(&format!("delay-token?ms={}", rng.next(40)));
        let before = oidc.stat("tokenSuccess");
        let (port, k) = (s.port, key.clone());
        let fetchers: Vec<_> = (0..4)
            .map(|_| {
                let k = k.clone();
                std::thread::spawn(move || fetch_tolerant(port, &k))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.next(60)));
        s.kill();
        for f in fetchers {
            let _ = f.join();
        }
        oidc.control("delay-token?ms=0");
        // Let a request the server was still holding finish there.
        std::thread::sleep(Duration::from_millis(100));
        let rotated_in_window = oidc.stat("tokenSuccess") > before;
        rotated_rounds += u64::from(rotated_in_window);
        // After the restart: the token committed before the kill if there was one, else a
        // refresh with the refresh token on disk.
        let s = Server::start(&d);
        let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "idp"}));
        if status == 200 {
            let t = v["data"]["accessToken"].as_str().unwrap();
            assert!(
                oidc.userinfo(t).is_some(),
                "round {round}: the token handed out is live"
            );
            survived += 1;
        } else if rotated_in_window {
            assert_eq!(code(&v), "TOKEN_EXPIRED", "round {round}: {v}");
            inherent += 1;
            connect(&s, &key, "crash");
        } else {
            ours.push(format!("round {round}: {status} {v}"));
            connect(&s, &key, "crash");
        }
        server = Some(s);
    }
    eprintln!(
        "crash rounds: {} (seed {seed}): a refresh completed at the server in the kill window in {rotated_rounds}; \
         survived {survived}, inherent losses (server rotated, answer died with the process) {inherent}, our losses {}",
        rounds(),
        ours.len()
    );
    assert!(
        ours.is_empty(),
        "refresh tokens lost without the server rotating them: {ours:#?}"
    );
    assert!(survived > 0);
    let start = Instant::now();
    drop(server);
    assert!(start.elapsed() < Duration::from_secs(15));
}
