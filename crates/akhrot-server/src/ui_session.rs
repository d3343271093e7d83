//! The web UI's sign-in links and signed-in browsers ([`UiAuth`]), kept in [`crate::AppState`]:
//! the `ui` routes hand out and redeem links, and the admin guard (`AdminAuth`) checks the
//! session cookie.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// How long a sign-in link works if nobody opens it.
pub const LINK_TTL: Duration = Duration::from_secs(60 * 60);
/// A UI session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 60 * 60);
/// At most this many signed-in browsers; the least recently used is signed out first.
const MAX_SESSIONS: usize = 32;
/// At most this many unspent links.
const MAX_LINKS: usize = 32;

/// The header every cookie-authenticated UI request carries.
pub const UI_HEADER: &str = "x-akhrot-ui";

type Digest32 = [u8; 32];

fn digest(s: &str) -> Digest32 {
    Sha256::digest(s.as_bytes()).into()
}

fn random_hex() -> String {
    akhrot_core::text::random_hex(32)
}

/// Unspent sign-in codes and signed-in browsers, by the SHA-256 of their secret (the secrets
/// themselves are never kept).
pub struct UiAuth {
    pub cookie_name: String,
    links: Mutex<HashMap<Digest32, Instant>>,
    sessions: Mutex<HashMap<Digest32, Instant>>,
}

impl UiAuth {
    pub fn new(port: u16) -> Self {
        Self {
            // Cookies ignore ports: owners on other ports of 127.0.0.1 must not see each other's.
            cookie_name: format!("akhrot_ui_{port}"),
            links: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A new one-time sign-in code.
    pub fn new_code(&self) -> String {
        let code = random_hex();
        let now = Instant::now();
        let mut links = lock(&self.links);
        links.retain(|_, made| now.duration_since(*made) < LINK_TTL);
        evict_oldest(&mut links, MAX_LINKS);
        links.insert(digest(&code), now);
        code
    }

    /// Spends a code: `Some(session secret)` once, `None` ever after (or when it never was).
    pub fn redeem(&self, code: &str) -> Option<String> {
        let made = lock(&self.links).remove(&digest(code))?;
        if made.elapsed() >= LINK_TTL {
            return None;
        }
        let session = random_hex();
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, seen| now.duration_since(*seen) < SESSION_IDLE);
        evict_oldest(&mut sessions, MAX_SESSIONS);
        sessions.insert(digest(&session), now);
        Some(session)
    }

    /// Whether the request's cookie names a live session (and keeps it alive).
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some(secret) = self.cookie(headers) else {
            return false;
        };
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(&digest(secret)) {
            Some(seen) if seen.elapsed() < SESSION_IDLE => {
                *seen = Instant::now();
                true
            }
            Some(_) => {
                sessions.remove(&digest(secret));
                false
            }
            None => false,
        }
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let Some(secret) = self.cookie(headers) {
            lock(&self.sessions).remove(&digest(secret));
        }
    }

    fn cookie<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.cookie_name)
            .map(|(_, v)| v)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn evict_oldest(map: &mut HashMap<Digest32, Instant>, max: usize) {
    while map.len() >= max {
        let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) else {
            break;
        };
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {name}={value}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_code_is_spent_once_and_makes_one_session() {
        let ui = UiAuth::new(1234);
        let code = ui.new_code();
        let session = ui.redeem(&code).expect("first use works");
        assert!(ui.redeem(&code).is_none(), "second use fails");
        assert!(ui.redeem(&random_hex()).is_none(), "unknown code fails");
        assert!(ui.check(&with_cookie("akhrot_ui_1234", &session)));
        assert!(
            !ui.check(&with_cookie("akhrot_ui_9999", &session)),
            "other port's cookie"
        );
        assert!(!ui.check(&with_cookie("akhrot_ui_1234", &random_hex())));
        ui.end(&with_cookie("akhrot_ui_1234", &session));
        assert!(
            !ui.check(&with_cookie("akhrot_ui_1234", &session)),
            "signed out"
        );
    }

    #[test]
    fn links_and_sessions_are_bounded() {
        let ui = UiAuth::new(1);
        let codes: Vec<String> = (0..MAX_LINKS + 5).map(|_| ui.new_code()).collect();
        assert!(lock(&ui.links).len() <= MAX_LINKS);
        assert!(
            ui.redeem(codes.last().unwrap()).is_some(),
            "newest survives"
        );
        for _ in 0..MAX_SESSIONS + 5 {
            let c = ui.new_code();
            ui.redeem(&c).unwrap();
        }
        assert!(lock(&ui.sessions).len() <= MAX_SESSIONS);
    }
}
