//! Crash safety of refresh with rotating refresh tokens: SIGKILL the owner at random moments
//! while refreshes are in flight against a real authorization server (node-oidc-provider with
//! `--rotate`), restart it, and check the connection still refreshes.
//!
//! The server states `expires_in: 0` in its answers (`/__test/stated-expires-in`), so every
//! fetch refreshes for real (rotation included) with no sleeping through an expiry; a round
//! takes a few hundred milliseconds and 1,000 rounds fit in minutes:
//!
//! ```sh
//! AKHROT_CRASH_ROUNDS=1000 scripts/with-keyring cargo test -p akhrot-e2e --test crash --release -- --nocapture
//! ```
//!
//! Each lost connection is classified with the authorization server's own record of the refresh
//! tokens it rotated (`/__test/refreshes`): the refresh token presented after the restart was
//! refused; if the server had rotated exactly that token during the round's kill window, the new
//! one existed only in an answer that died with the process (inherent to rotation: counted). If
//! it had not, the loss is ours (must never happen). Every reuse of a rotated refresh token the
//! server saw must be the one post-restart attempt of an inherent loss: any other reuse is ours.
//! The broker logs, for each refresh, the window from the token answer's last byte to its
//! durable commit (`token answer committed … window_us= commit_us=`): reported as p50/p99/max.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

fn rounds() -> u64 {
    std::env::var("AKHROT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

/// xorshift, seeded from the clock (printed, so a failure can be replayed with AKHROT_CRASH_SEED).
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// A fetch that tolerates the server dying under it.
fn fetch_tolerant(port: u16, key: &str) {
    let _ = http_agent(Some(Duration::from_secs(10)))
        .post(format!("http://127.0.0.1:{port}/tokens/fetch"))
        .header("Authorization", format!("Bearer {key}"))
        .send_json(json!({"provider": "idp"}));
}

/// The authorization server's refresh records after `since`, and its latest sequence number.
fn refreshes(oidc: &Oidc, since: u64) -> (u64, Vec<Value>) {
    let mut r = http_agent(None)
        .get(format!("{}/__test/refreshes?since={since}", oidc.issuer))
        .call()
        .unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    (
        v["seq"].as_u64().unwrap(),
        v["refreshes"].as_array().unwrap().clone(),
    )
}

/// Waits until the authorization server has answered every token request it received (one
/// the killed owner had sent is still processed there, and may rotate).
fn wait_idle(oidc: &Oidc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while oidc.stat("tokenInFlight") > 0 {
        assert!(
            Instant::now() < deadline,
            "token requests still in flight: {}",
            oidc.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A `key=value` field of a log line (tracing's format; ANSI colour codes removed).
fn field(line: &str, name: &str) -> Option<u64> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn describe(name: &str, mut v: Vec<u64>) -> String {
    v.sort_unstable();
    format!(
        "{name} p50 {} µs, p99 {} µs, max {} µs",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0)
    )
}

#[test]
fn sigkill_during_rotating_refreshes_never_loses_a_token_the_server_did_not_rotate() {
    let oidc = Oidc::start(&["--rotate", "--access-ttl", "600"]);
    // Every answer says "expired already": each fetch refreshes, with rotation.
    oidc.control("stated-expires-in?s=0");
    let d = Dirs::new();
    write_provider_file(&d, "idp", &oidc.provider_toml("idp", "client_secret_basic"));
    let s = Server::start(&d);
    let key = s.create_key("agent", &["*"]);
    s.add_basic_client();
    assert_eq!(s.oauth_connect(&key, "idp", "crash").1, 200);
    let mut logs = vec![s.log()];
    let mut server = Some(s);
    let seed = std::env::var("AKHROT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    let mut rng = Rng(seed);
    let (mut survived, mut inherent, mut ours) = (0u64, 0u64, Vec::new());
    let (mut rotated_in_windows, mut reuses, mut unexplained_reuses) = (0u64, 0u64, Vec::new());
    let started = Instant::now();
    for round in 0..rounds() {
        let s = server.take().unwrap();
        oidc.control(&format!("delay-token?ms={}", rng.next(40)));
        let (seq_before, _) = refreshes(&oidc, u64::MAX);
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
        // A request the server was still holding finishes there (and may rotate).
        wait_idle(&oidc);
        let (seq_killed, in_window) = refreshes(&oidc, seq_before);
        let rotated: Vec<&str> = in_window
            .iter()
            .filter(|r| r["outcome"] == "rotated")
            .map(|r| r["presented"].as_str().unwrap())
            .collect();
        rotated_in_windows += rotated.len() as u64;
        // After the restart: every fetch refreshes, with the refresh token committed last.
        let s = Server::start(&d);
        logs.push(s.log());
        let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "idp"}));
        let (_, after) = refreshes(&oidc, seq_killed);
        // 0: survived, 1: inherent loss, 2: our loss.
        let outcome = if status == 200 {
            let t = v["data"]["accessToken"].as_str().unwrap();
            assert!(
                oidc.userinfo(t).is_some(),
                "round {round}: the token handed out is live"
            );
            survived += 1;
            0
        } else {
            assert_eq!(code(&v), "TOKEN_EXPIRED", "round {round}: {v}");
            // The refresh token we had on disk, as the server saw it after the restart.
            let presented = after
                .first()
                .and_then(|r| r["presented"].as_str())
                .unwrap_or("none");
            if rotated.contains(&presented) {
                inherent += 1;
                1
            } else {
                ours.push(format!(
                    "round {round}: {status} {v}; after the restart the server saw {after:?}; \
                     in the kill window it rotated {rotated:?}"
                ));
                2
            }
        };
        let round_reuses: Vec<&Value> = in_window
            .iter()
            .chain(after.iter())
            .filter(|r| r["outcome"] == "reuse")
            .collect();
        reuses += round_reuses.len() as u64;
        // An inherent loss shows the server exactly one reuse: our post-restart attempt with
        // the token it had rotated away. Any other reuse is ours.
        if outcome != 2 && round_reuses.len() != usize::from(outcome == 1) {
            unexplained_reuses.push(format!("round {round}: {round_reuses:?}"));
        }
        let lost = outcome != 0;
        if lost {
            // The person reconnects (an agent's session could never replace the connection).
            assert_eq!(s.oauth_connect_as_person("idp", None, "crash").1, 200);
        }
        if (round + 1) % 100 == 0 {
            eprintln!(
                "crash: {} rounds in {:.0?}: survived {survived}, inherent {inherent}, ours {}",
                round + 1,
                started.elapsed(),
                ours.len()
            );
        }
        server = Some(s);
    }
    let elapsed = started.elapsed();
    drop(server);

    let (mut windows, mut commits, mut beyond) = (Vec::new(), Vec::new(), Vec::new());
    for log in &logs {
        for line in log.text().lines() {
            if line.contains("token answer committed") && line.contains("refresh") {
                let (Some(w), Some(c)) = (field(line, "window_us"), field(line, "commit_us"))
                else {
                    panic!("unparsable commit line: {line}");
                };
                windows.push(w);
                commits.push(c);
                beyond.push(w.saturating_sub(c));
            }
        }
    }
    let stats = oidc.stats();
    eprintln!(
        "crash rounds: {} in {:.0?} (seed {seed}): survived {survived}, inherent losses (server rotated, answer died \
         with the process) {inherent}, our losses {}; refresh tokens rotated by the server in kill windows {rotated_in_windows}, \
         rotations in all {}, reused refresh tokens seen by the server {reuses} (each inherent loss shows one: our \
         post-restart attempt), unexplained reuses {}",
        rounds(),
        elapsed,
        ours.len(),
        stats["refreshRotated"],
        unexplained_reuses.len()
    );
    eprintln!(
        "answer-to-commit window over {} refreshes: {}; {}; {}",
        windows.len(),
        describe("window", windows.clone()),
        describe("commit", commits),
        describe("beyond the commit", beyond)
    );
    assert!(
        ours.is_empty(),
        "refresh tokens lost without the server rotating them: {ours:#?}"
    );
    assert!(
        unexplained_reuses.is_empty(),
        "refresh tokens reused other than after an inherent loss: {unexplained_reuses:#?}"
    );
    assert_eq!(
        stats["refreshReuse"].as_u64().unwrap(),
        reuses,
        "every reuse the server saw was in a round"
    );
    assert!(survived > 0);
    assert!(
        !windows.is_empty(),
        "the broker logged no answer-to-commit window"
    );
}
